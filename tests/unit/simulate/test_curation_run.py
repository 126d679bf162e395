"""The simulated curation run: curated vs plain active learning vs random (issue #12)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.data import Dataset, load_dataset
from exemplar.errors import ConfigError
from exemplar.simulate.curation import (
    ARMS,
    CurationSimulationConfig,
    CurationSimulationResult,
    inject_duplicates,
    run_curation_simulation,
    summarize_curation,
    write_curation_outputs,
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    full = load_dataset("digits")
    rows = np.random.default_rng(0).permutation(full.n_items)[:600]
    return Dataset(name="digits600", X=full.X[rows], y=np.asarray(full.y)[rows])


@pytest.fixture(scope="module")
def result(digits: Dataset) -> CurationSimulationResult:
    config = CurationSimulationConfig(
        dataset=digits.name, seeds=2, initial=40, batch_size=20, cycles=3, duplicates=0.5
    )
    return run_curation_simulation(config, digits)


def _final(result: CurationSimulationResult, arm: str, column: str) -> np.ndarray:
    rows = [r for r in result.rows if r["arm"] == arm and r["round"] == result.config.cycles]
    return np.asarray([r[column] for r in sorted(rows, key=lambda r: r["seed"])], dtype=float)


def test_arms_are_paired_and_spend_the_same_labels(result: CurationSimulationResult) -> None:
    cfg = result.config
    assert len(result.rows) == len(ARMS) * cfg.seeds * (cfg.cycles + 1)
    start = {(r["arm"], r["seed"]): r for r in result.rows if r["round"] == 0}
    for seed in range(cfg.seeds):
        # Round 0 is the same initial set (same oracle answers) for every arm.
        assert len({start[(a, seed)]["accuracy"] for a in ARMS}) == 1
        assert len({start[(a, seed)]["wrong_share"] for a in ARMS}) == 1
    for arm in ARMS:
        spent = _final(result, arm, "labels_spent")
        assert (spent == cfg.initial + cfg.batch_size * cfg.cycles).all()


def test_curated_set_is_smaller_and_cleaner_than_active(result: CurationSimulationResult) -> None:
    curated, active = _final(result, "curated", "n_train"), _final(result, "active", "n_train")
    assert (curated < active).all()
    assert (_final(result, "active", "n_train") == _final(result, "active", "labels_spent")).all()
    assert (_final(result, "curated", "removed_total") == active - curated).all()
    assert _final(result, "curated", "reviews_total").min() > 0
    assert (
        _final(result, "curated", "wrong_share").mean()
        <= _final(result, "active", "wrong_share").mean()
    )
    for arm in ("active", "random"):
        assert _final(result, arm, "reviews_total").sum() == 0


def test_injected_copies_are_jittered_near_duplicates() -> None:
    X = np.random.default_rng(1).normal(size=(200, 8))
    y = np.arange(200) % 4
    X2, y2, src = inject_duplicates(X, y, 0.3, seed=3)
    assert X2.shape == (260, 8) and src.shape == (60,)
    assert (y2[200:] == y[src]).all()
    gap = np.linalg.norm(X2[200:] - X[src], axis=1)
    assert 0 < gap.max() < 0.5 * np.median(np.linalg.norm(X[1:] - X[:-1], axis=1))
    assert np.array_equal(inject_duplicates(X, y, 0.3, seed=3)[0], X2)


def test_summary_and_report_files(result: CurationSimulationResult, tmp_path: Path) -> None:
    summary = summarize_curation(result)
    ratio = summary["size_ratio_curated_active"]["mean"]
    assert 0 < ratio < 1
    diff = summary["paired"]["curated_minus_active"]["accuracy"]
    acc = _final(result, "curated", "accuracy") - _final(result, "active", "accuracy")
    assert diff["mean"] == pytest.approx(acc.mean())
    assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"]
    paths = write_curation_outputs(result, summary, tmp_path)
    page = paths["report"].read_text()
    for plot in ("plot-n_train", "plot-accuracy"):
        assert f'<figure id="{plot}"><img' in page
    assert page.count("data:image/png;base64,") == 3
    assert json.loads(paths["summary"].read_text())["verdict"] == summary["verdict"]
    with paths["results"].open() as fh:
        assert len(list(csv.DictReader(fh))) == len(result.rows)


def test_config_errors(digits: Dataset) -> None:
    with pytest.raises(ConfigError, match="random sampling is its own arm"):
        run_curation_simulation(
            CurationSimulationConfig(dataset="d", strategy="random", cycles=1), digits
        )
    with pytest.raises(ConfigError, match="--noise"):
        run_curation_simulation(CurationSimulationConfig(dataset="d", noise=1.5), digits)


def test_cli_curate_writes_the_report_and_refuses_detection(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["simulate", "--dataset", "wine", "--curate", "--seeds", "2", "--cycles", "2"]
    done = runner.invoke(
        app, [*args, "--batch-size", "5", "--jobs", "1", "--noise", "0.2", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["noise"] == 0.2 and summary["config"]["duplicates"] == 0.3
    assert summary["strategy"] == "uncertain_diverse"
    assert "curated" in done.output and (out / "report.html").exists()
    refused = runner.invoke(app, [*args, "--task", "detection", "--out", str(tmp_path / "d")])
    assert refused.exit_code != 0
    assert "--curate runs on classification only" in refused.output
    assert "Traceback" not in refused.output


def test_review_only_ablation_keeps_every_label(digits: Dataset) -> None:
    config = CurationSimulationConfig(
        dataset=digits.name, seeds=1, initial=40, batch_size=20, cycles=2, prune=False
    )
    result = run_curation_simulation(config, digits)
    curated = [r for r in result.rows if r["arm"] == "curated"]
    assert all(r["n_train"] == r["labels_spent"] and r["removed_total"] == 0 for r in curated)
    assert curated[-1]["reviews_total"] == 2 * config.review_budget
    assert curated[-1]["fixed_total"] > 0
    assert _final(result, "curated", "wrong_share")[0] < _final(result, "active", "wrong_share")[0]
