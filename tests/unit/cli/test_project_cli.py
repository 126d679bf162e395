"""The project commands end to end through the CLI: init → import → run → status → export."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.cli.main import app
from loop_helpers import digits_npz

runner = CliRunner()
ENV = {"COLUMNS": "200"}


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_import_run_status_export(tmp_path: Path) -> None:
    root = str(tmp_path / "proj")
    data = str(digits_npz(tmp_path / "d.npz", 400))
    _ok(
        "init",
        root,
        "--classes",
        ",".join(str(i) for i in range(10)),
        "--oracle",
        "simulated",
        "--budget",
        "40",
    )
    assert "added 400 item(s)" in _ok("import", data, "-p", root, "--labels-as", "ground_truth")
    again = _ok("import", data, "-p", root, "--labels-as", "ground_truth")
    assert "added 0 item(s)" in again and "400 duplicate(s) not added again" in again
    assert "stopped" in _ok("run", "-p", root)
    status = json.loads(_ok("status", "-p", root, "--json"))
    assert status["labels"]["verified"] == 40 and status["stopped"]
    table = _ok("status", "-p", root)
    assert "labels per class" in table and "history" in table
    out = tmp_path / "labels.csv"
    assert "wrote 40 label row(s)" in _ok("export", str(out), "-p", root)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 40 and {"strategy", "score", "annotator", "cycle"} <= set(rows[0])


def test_label_command_in_the_terminal(tmp_path: Path) -> None:
    root = str(tmp_path / "proj")
    _ok("init", root, "--classes", "0,1,2,3,4,5,6,7,8,9", "--budget", "25")
    _ok(
        "import",
        str(digits_npz(tmp_path / "d.npz", 200)),
        "-p",
        root,
        "--labels-as",
        "ground_truth",
    )
    assert "waits for 20 label(s)" in _ok("run", "-p", root)
    result = runner.invoke(
        app, ["label", "-p", root, "--annotator", "ann"], input="1\ns\n3\nq\n", env=ENV
    )
    assert result.exit_code == 0, result.output
    assert "labeled 2 item(s)" in result.output
    status = json.loads(_ok("status", "-p", root, "--json"))
    assert status["labels"]["verified"] == 2
    queue = status["queue"]
    assert queue["skipped"] == 1 and queue["pending"] + queue["leased"] + queue["skipped"] == 18


def test_project_errors_are_one_line(tmp_path: Path) -> None:
    for args, message in [
        (["run", "-p", str(tmp_path / "nope")], "not an exemplar project"),
        (["init", str(tmp_path / "p"), "--classes", "a"], "classes"),
        (
            ["init", str(tmp_path / "q"), "--classes", "a,b", "--strategy", "nope"],
            "unknown strategy",
        ),
    ]:
        result = runner.invoke(app, args, env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
