"""``exemplar select-file``: a batch from embeddings on disk, same as the Python API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.predictions import Predictions
from exemplar.strategies import get_strategy

runner = CliRunner()


def _pool(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(500, 6)).astype(np.float32)
    logits = rng.normal(size=(500, 3))
    proba = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)
    np.save(tmp_path / "proba.npy", proba)
    (tmp_path / "labeled.txt").write_text("0\n1\n2\n3\n")
    return emb, proba


def test_select_file_picks_what_the_strategy_picks(tmp_path: Path) -> None:
    emb, proba = _pool(tmp_path)
    out = tmp_path / "picks.txt"
    args = ["select-file", str(tmp_path / "emb.npy"), "--proba", str(tmp_path / "proba.npy")]
    args += ["--labeled", str(tmp_path / "labeled.txt"), "--batch-size", "7", "--seed", "3"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    picks = [int(v) for v in out.read_text().split()]
    expected = get_strategy("default").query(
        Predictions(proba=proba, embeddings=emb),
        labeled=np.arange(4),
        batch_size=7,
        random_state=3,
    )
    assert picks == expected.tolist()
    result = runner.invoke(
        app,
        [
            "select-file",
            str(tmp_path / "emb.npy"),
            "--strategy",
            "probcover",
            "--param",
            "max_candidates=100",
            "--batch-size",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    expected = get_strategy("probcover", max_candidates=100).query(
        Predictions(embeddings=emb), batch_size=3, random_state=0
    )
    assert [int(v) for v in result.output.split()] == expected.tolist()


def test_select_file_reports_bad_inputs_in_one_line(tmp_path: Path) -> None:
    _pool(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros((10, 3), np.float32))
    result = runner.invoke(
        app, ["select-file", str(tmp_path / "emb.npy"), "--proba", str(tmp_path / "short.npy")]
    )
    assert result.exit_code != 0
    assert "probabilities must have shape (500, n_classes)" in result.output
    np.save(tmp_path / "f64.npy", np.zeros((10, 3)))
    result = runner.invoke(app, ["select-file", str(tmp_path / "f64.npy")])
    assert result.exit_code != 0 and "must be float32" in result.output
    (tmp_path / "bad.txt").write_text("one\n")
    result = runner.invoke(
        app, ["select-file", str(tmp_path / "emb.npy"), "--labeled", str(tmp_path / "bad.txt")]
    )
    assert result.exit_code != 0 and "one integer row number per line" in result.output
