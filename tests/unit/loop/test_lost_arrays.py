"""A lost ``arrays/`` folder (issue 10, defect 5): the loop scores again from the checkpoint.

Before, every later ``run`` failed with "missing array file" although the checkpoint in
``models/`` was still there. Now the engine scores the pool again from the checkpoint and
the run ends exactly like an uninterrupted one; when the checkpoint or the feature file is
gone too, the error says how to recover.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from exemplar.errors import ProjectError
from exemplar.loop import engine as engine_module
from exemplar.project import Project
from exemplar.store.schema import Cycle
from loop_helpers import make_project, snapshot


class _Interrupted(Exception):
    """Raised at a chosen crash point: the run stops between two recorded steps."""


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    def crash_point(name: str) -> None:
        if name == point:
            raise _Interrupted(name)

    monkeypatch.setattr(engine_module, "crash_point", crash_point)


def _project(root: Path, strategy: str) -> Project:
    selection = {"batch_size": 10, "initial_size": 20, "strategy": strategy}
    return make_project(root, n=300, budget=50, selection=selection)


def _stopped_after_losing_arrays(
    root: Path, strategy: str, point: str, monkeypatch: pytest.MonkeyPatch, *lost: str
) -> Project:
    """Run until ``point``, delete ``arrays/`` (and the ``lost`` paths), return the project."""
    project = _project(root, strategy)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, point)
        with pytest.raises(_Interrupted):
            project.run()
    arrays = project.arrays.root / "arrays"
    assert any(arrays.glob("proba-*.npy"))
    shutil.rmtree(arrays)
    for name in lost:
        path = project.root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return project


@pytest.mark.parametrize(
    ("strategy", "point"),
    [
        ("uncertain_diverse", "enter:select:2"),  # proba and embeddings
        ("uncertain_diverse", "enter:stop_check:2"),  # the stopping check reads proba
        # A sample strategy (reduced utilities) on a scikit-learn committee, refit from the
        # labels when scored: the same as scoring did where the labels have not changed since
        # (the cycle that trained the model; cycle 2 here reuses cycle 1's model).
        ("bald", "enter:select:1"),
    ],
)
def test_lost_arrays_are_scored_again_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str, point: str
) -> None:
    with _project(tmp_path / "whole", strategy) as whole:
        assert whole.run().status == "stopped"
        expected = snapshot(whole)
    events: list[str] = []
    with _stopped_after_losing_arrays(tmp_path / "lost", strategy, point, monkeypatch) as p:
        outcome = p.run(on_event=events.append)
        assert outcome.status == "stopped", outcome
        assert snapshot(p) == expected  # the same picks, labels, models and decisions
        number = int(point.rsplit(":", 1)[1])
        with p.db.read() as s:
            cycle = s.scalars(select(Cycle).where(Cycle.number == number)).one()
        assert "rescore" in cycle.timings
    assert any("scoring the pool again from checkpoint" in e for e in events)


def test_lost_arrays_and_checkpoint_say_how_to_recover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        _stopped_after_losing_arrays(
            tmp_path / "p", "uncertain_diverse", "enter:select:2", monkeypatch, "models"
        ) as project,
        pytest.raises(ProjectError) as caught,
    ):
        project.run()
    message = str(caught.value)
    assert "checkpoint" in message and "are missing" in message
    assert "from a backup" in message
    assert "exemplar export labels.csv" in message and "exemplar import-labels" in message


def test_lost_arrays_and_features_say_to_reimport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        _stopped_after_losing_arrays(
            tmp_path / "p", "uncertain_diverse", "enter:select:2", monkeypatch, "features.f32"
        ) as project,
        pytest.raises(ProjectError) as caught,
    ):
        project.run()
    message = str(caught.value)
    assert "features.f32" in message and "re-import the data" in message


def test_intact_arrays_are_not_scored_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    with _project(tmp_path / "p", "uncertain_diverse") as project:
        original = engine_module.LoopEngine._score_version

        def counting(self: engine_module.LoopEngine, *args: Any) -> None:
            calls.append(args)
            original(self, *args)

        monkeypatch.setattr(engine_module.LoopEngine, "_score_version", counting)
        assert project.run().status == "stopped"
        with project.db.read() as s:
            n_models = len({c.model_version_id for c in s.scalars(select(Cycle))} - {None})
    assert len(calls) == n_models  # once per model, in its score step
