"""A project whose model is a PyTorch network: MC-dropout samples drive BALD in the loop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.errors import ConfigError
from exemplar.project import Project
from loop_helpers import CLASSES, make_project, snapshot

DEEP = {
    "model": {"candidates": [{"recipe": "mlp", "params": {"epochs": 15, "n_samples": 8}}]},
    "selection": {"strategy": "bald", "batch_size": 10, "initial_size": 20},
}


def test_deep_model_runs_the_loop_with_torch_checkpoints(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=40, n=300, **DEEP) as project:
        assert project.run().status == "stopped"
        snap = snapshot(project)
        checkpoints = sorted(p.suffix for p in project.models_dir.iterdir())
    labels = snap["labels"]
    assert len(labels) == 40
    assert {lab[5] for lab in labels if lab[4] and lab[4] > 0} == {"bald"}
    assert checkpoints and set(checkpoints) == {".pt"}  # state dicts, not pickles


def test_deep_project_resumes_to_the_same_run(tmp_path: Path) -> None:
    with (
        make_project(tmp_path / "a", budget=40, n=300, **DEEP) as a,
        make_project(tmp_path / "b", budget=40, n=300, **DEEP) as b,
    ):
        assert a.run(max_cycles=2).status == "max_cycles"
        a.run()
        b.run()
        assert snapshot(a) == snapshot(b)


def test_bad_deep_settings_are_refused_at_init(tmp_path: Path) -> None:
    bad = {"candidates": [{"recipe": "cnn", "params": {"bogus": 1}}]}
    with pytest.raises(ConfigError, match="unknown parameter.*bogus"):
        Project.init(tmp_path / "x", CLASSES, model=bad)
    text = {"candidates": [{"recipe": "minilm-logreg"}]}
    with pytest.raises(ConfigError, match='text_encoder = "minilm"'):
        Project.init(tmp_path / "y", CLASSES, model=text)
