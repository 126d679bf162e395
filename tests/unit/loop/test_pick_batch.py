"""One selection rule (``pick_batch``) for projects and the simulator; the cycle records it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import exemplar.loop.engine as engine_module
from exemplar.data import load_dataset
from exemplar.loop import pick_batch, score_pool, select_batch
from exemplar.loop.selection import CONTROL_STRATEGY
from exemplar.models import make_model
from exemplar.project import Project
from exemplar.project.config import CONFIG_NAME, save_config
from exemplar.simulate import SimulationConfig, run_simulation, runner
from exemplar.store.schema import Cycle, QueueEntry
from exemplar.strategies import get_strategy
from loop_helpers import make_project


@pytest.fixture(scope="module")
def scored() -> dict[str, Any]:
    X, y = load_digits(return_X_y=True)
    labeled = np.arange(0, 60, 2)
    unlabeled = np.setdiff1d(np.arange(600), labeled)
    model = make_model("logreg", 0).fit(X[labeled], y[labeled])
    return {"X": X[:600], "y": y, "labeled": labeled, "unlabeled": unlabeled, "model": model}


@pytest.mark.parametrize("name", ["margin", "default", "random", "badge"])
def test_pick_batch_picks_what_select_batch_picks(scored: dict[str, Any], name: str) -> None:
    strategy = get_strategy(name)
    s = scored
    expected = select_batch(
        s["model"],
        s["X"],
        strategy,
        s["unlabeled"],
        s["labeled"],
        12,
        y_labeled=s["y"][s["labeled"]],
        random_state=np.random.default_rng([3, 1]),
    )
    out = score_pool(s["model"], s["X"], strategy, unlabeled=s["unlabeled"])
    picks = pick_batch(
        out.predictions if strategy.requires else None,
        strategy,
        s["unlabeled"],
        s["labeled"],
        s["y"][s["labeled"]],
        batch_size=12,
        seed=[3, 1],
        reduced=out.reduced,
    )
    assert [p.row for p in picks] == expected.indices.tolist()
    assert [p.score for p in picks] == pytest.approx(expected.scores.tolist())
    assert {p.strategy for p in picks} == {expected.strategy}


def test_cold_start_control_arm_and_budget_cap(scored: dict[str, Any]) -> None:
    s = scored
    strategy = get_strategy("margin")
    args = (None, strategy, s["unlabeled"], s["labeled"][:0], s["y"][:0])
    cold = pick_batch(*args, batch_size=5, seed=1, cold_start=True, initial_size=20)
    assert len(cold) == 20 and {p.strategy for p in cold} == {"random"}
    assert len({p.row for p in cold}) == 20
    out = score_pool(s["model"], s["X"], strategy, unlabeled=s["unlabeled"])
    picks = pick_batch(
        out.predictions,
        strategy,
        s["unlabeled"],
        s["labeled"],
        s["y"][s["labeled"]],
        batch_size=10,
        seed=1,
        control_fraction=0.3,
    )
    names = [p.strategy for p in picks]
    assert names == ["margin"] * 7 + [CONTROL_STRATEGY] * 3
    assert len({p.row for p in picks}) == 10
    assert all(p.score is None for p in picks if p.strategy == CONTROL_STRATEGY)
    capped = pick_batch(
        out.predictions,
        strategy,
        s["unlabeled"],
        s["labeled"],
        s["y"][s["labeled"]],
        batch_size=10,
        seed=1,
        budget_left=4,
    )
    assert len(capped) == 4


def test_project_and_simulator_both_select_through_pick_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = engine_module.pick_batch

    def spy(where: str) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls.append(where)
            return original(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(engine_module, "pick_batch", spy("project"))
    monkeypatch.setattr(runner, "pick_batch", spy("simulator"))
    with make_project(tmp_path / "p", n=200, budget=40) as p:
        p.run()
    config = SimulationConfig(
        dataset="digits", strategies=("margin",), seeds=1, batch_size=10, cycles=2, jobs=1
    )
    run_simulation(config, load_dataset("digits"))
    assert calls.count("project") == 3 and calls.count("simulator") == 2


def test_a_cycle_selects_with_its_recorded_batch_size_and_strategy(tmp_path: Path) -> None:
    """Editing exemplar.toml after a cycle was created changes later cycles only."""
    with make_project(tmp_path / "p", n=300, budget=200) as p:
        p.run(max_cycles=1)  # cycle 0 (cold start) done; cycle 1 recorded with batch 10
        with p.db.read() as s:
            cycle1 = s.scalars(select(Cycle).where(Cycle.number == 1)).one()
        assert cycle1.state == "train" and cycle1.batch_size == 10
        recorded = cycle1.strategy
        config = p.config.model_copy(deep=True)
        config.selection.batch_size = 3
        config.selection.strategy = "random"
        save_config(config, p.root / CONFIG_NAME)
    with Project.open(tmp_path / "p") as p:
        assert p.config.selection.batch_size == 3
        p.run(max_cycles=1)
        with p.db.read() as s:
            cycles = {c.number: c for c in s.scalars(select(Cycle))}
            entries = list(s.scalars(select(QueueEntry).where(QueueEntry.cycle_id == cycles[1].id)))
    assert len(entries) == 10  # the recorded batch, not the edited config's 3
    assert {e.strategy for e in entries} == {recorded} != {"random"}
    assert cycles[2].batch_size == 3 and cycles[2].strategy == "random"
