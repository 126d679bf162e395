"""`exemplar simulate` speaks the projects' vocabulary: --batch-size and --cycles.

--batch and --rounds stay as hidden, deprecated aliases so old commands still run.
"""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from exemplar.cli.main import app

FIGURES = ("strategy", "seed", "round", "n_labels", "accuracy", "macro_f1", "batch_classes")
BASE = ["simulate", "--dataset", "wine", "--strategies", "margin,random", "--seeds", "1"]


def _figures(out: Path) -> list[tuple[str, ...]]:
    with (out / "results.csv").open() as fh:
        return [tuple(row[k] for k in FIGURES) for row in csv.DictReader(fh)]


def test_new_flags_and_deprecated_aliases_give_the_same_figures(tmp_path: Path) -> None:
    runner = CliRunner()
    new = runner.invoke(
        app,
        [*BASE, "--batch-size", "5", "--cycles", "2", "--jobs", "1", "--out", str(tmp_path / "n")],
    )
    assert new.exit_code == 0, new.output
    old = runner.invoke(
        app, [*BASE, "--batch", "5", "--rounds", "2", "--jobs", "1", "--out", str(tmp_path / "o")]
    )
    assert old.exit_code == 0, old.output
    assert "--batch is deprecated; use --batch-size" in old.output
    assert _figures(tmp_path / "n") == _figures(tmp_path / "o")
    assert [r[3] for r in _figures(tmp_path / "n")] == ["20", "25", "30"] * 2
    helptext = runner.invoke(app, ["simulate", "--help"]).output
    assert "--batch-size" in helptext and "--cycles" in helptext and "--rounds" not in helptext


def test_conflicting_alias_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, [*BASE, "--batch-size", "5", "--batch", "7", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code != 0
    assert "--batch is the old name of --batch-size" in result.output
    assert "Traceback" not in result.output
