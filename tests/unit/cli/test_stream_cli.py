"""``exemplar stream feed|decisions``: a file streamed into a project, decisions listed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_wine
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.project import Project


def test_feed_a_csv_then_list_decisions(tmp_path: Path) -> None:
    X, y = load_wine(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    csv = tmp_path / "wine.csv"
    header = ",".join([f"f{i}" for i in range(X.shape[1])] + ["label"])
    lines = [",".join([*map(str, X[i]), str(y[i])]) for i in order]
    csv.write_text(header + "\n" + "\n".join(lines) + "\n")
    root = tmp_path / "p"
    Project.init(
        root,
        ["0", "1", "2"],
        oracle={"kind": "simulated"},
        stream={
            "enabled": True,
            "manager": "balanced_incremental",
            "budget": 0.25,
            "retrain_every": 3,
        },
    ).close()
    runner = CliRunner()
    fed = runner.invoke(app, ["stream", "feed", str(csv), "-p", str(root)])
    assert fed.exit_code == 0, fed.output
    assert "streamed 178 items" in fed.output
    listed = runner.invoke(
        app, ["stream", "decisions", "-p", str(root), "--json", "--limit", "500"]
    )
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [r["seq"] for r in rows] == list(range(1, 179))
    asked = sum(r["asked"] for r in rows)
    assert 0.15 * 178 <= asked <= 0.25 * 178 + 1
    with Project.open(root) as project:
        status = project.status()
    assert status["labels"]["verified"] == asked  # the simulated oracle answered at once
    again = runner.invoke(app, ["stream", "feed", str(csv), "-p", str(root)])
    assert "(178 already stored)" in again.output


def test_feed_refuses_a_missing_file(tmp_path: Path) -> None:
    root = tmp_path / "p"
    Project.init(root, ["a", "b"], stream={"enabled": True}).close()
    result = CliRunner().invoke(
        app, ["stream", "feed", str(tmp_path / "nope.csv"), "-p", str(root)]
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_feed_refuses_a_project_that_is_not_a_stream_project(tmp_path: Path) -> None:
    root = tmp_path / "p"
    Project.init(root, ["a", "b"]).close()
    csv = tmp_path / "rows.csv"
    csv.write_text("x,label\n1.0,a\n")
    result = CliRunner().invoke(app, ["stream", "feed", str(csv), "-p", str(root)])
    assert result.exit_code != 0
    assert "enabled = true" in result.output
