"""Detection projects through the CLI: init --task detection, import --format, run, status,
export --format, and the class-label commands refusing clearly (issue #11)."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))

from test_detection_project import write_cells

from exemplar.cli.main import app
from exemplar.formats import read_annotations

pytest.importorskip("torch")

runner = CliRunner()
ENV = {"COLUMNS": "200"}


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=ENV)
    return result.exit_code, result.output


def _ok(*args: str) -> str:
    code, out = _run(*args)
    assert code == 0, out
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    _ok(
        "init",
        str(root),
        "--task",
        "detection",
        "--classes",
        "nucleus,micronucleus",
        "--image-side",
        "64",
        "--oracle",
        "simulated",
        "--budget",
        "10",
    )
    return root


def test_init_writes_the_detection_defaults(project: Path) -> None:
    config = tomllib.loads((project / "exemplar.toml").read_text())
    assert config["project"]["task"] == "detection"
    assert config["model"]["candidates"][0]["recipe"] == "centernet"
    assert config["model"]["criterion"] == "map50"
    assert config["kpi"]["metric"] == "map50"
    assert config["selection"]["strategy"] == "localization_stability"
    assert config["data"]["image_side"] == 64


def test_import_run_status_export(project: Path, tmp_path: Path) -> None:
    coco = write_cells(tmp_path / "cells", 14)
    doc = json.loads(coco.read_text())
    doc["annotations"][0]["category_id"] = 99
    coco.write_text(json.dumps(doc))
    out = _ok(
        "import", str(coco), "-p", str(project), "--labels-as", "ground_truth", "--format", "coco"
    )
    assert "added 14 item(s)" in out and f"{len(doc['annotations']) - 1} object(s)" in out
    assert "1 with a class the project lacks" in out and "unknown category id 99" in out
    _ok("run", "-p", str(project))
    status = json.loads(_ok("status", "--json", "-p", str(project)))
    assert status["task"] == "detection" and status["metric"] == "map50"
    assert status["labels"]["per_class_counts"] == "objects"
    assert sum(status["labels"]["per_class"].values()) > 0
    assert "objects per class" in _ok("status", "-p", str(project))
    out = _ok("export", str(tmp_path / "yolo"), "--format", "yolo", "-p", str(project))
    assert "as yolo" in out
    back = read_annotations(tmp_path / "yolo", "yolo")
    assert len(back.images) == status["labels"]["verified"]


def test_class_label_commands_refuse_an_object_project(project: Path, tmp_path: Path) -> None:
    code, out = _run("label", "-p", str(project))
    assert code == 2 and "labels objects" in out and "Objects API" in out
    labels = tmp_path / "labels.csv"
    labels.write_text("uid,label\nabc,nucleus\n")
    code, out = _run("import-labels", str(labels), "-p", str(project))
    assert code == 2 and "exemplar import" in out


def test_a_classification_project_refuses_object_formats(tmp_path: Path) -> None:
    root = tmp_path / "cls"
    _ok("init", str(root), "--classes", "a,b")
    code, out = _run("export", str(tmp_path / "x"), "--format", "coco", "-p", str(root))
    assert code == 2 and "exports objects" in out


def test_a_file_oracle_is_refused_for_objects() -> None:
    from exemplar.errors import ConfigError
    from exemplar.loop.config import validate_config

    raw = {
        "project": {"name": "f", "task": "detection", "classes": ["cell"]},
        "oracle": {"kind": "file", "path": "labels.csv"},
    }
    with pytest.raises(ConfigError, match='kind = "file" reads one class per item'):
        validate_config(raw)


def test_an_external_trainer_gets_a_strategy_it_can_feed() -> None:
    """The default object strategy reads augmented views, which an external tool does not
    predict: a project with an external trainer starts from box_entropy, and asking for a
    views strategy is refused with what to use instead."""
    from exemplar.errors import ConfigError
    from exemplar.loop.config import EXTERNAL_OBJECT_STRATEGY, validate_config

    external = {"recipe": "external", "params": {"train": "t {weights}", "predict": "p"}}
    raw = {
        "project": {"name": "e", "task": "detection", "classes": ["cell"]},
        "model": {"candidates": [external]},
    }
    assert validate_config(raw).selection.strategy == EXTERNAL_OBJECT_STRATEGY
    raw["selection"] = {"strategy": "localization_stability"}
    with pytest.raises(ConfigError, match="augmented views"):
        validate_config(raw)
