"""Oracles are objects: one ``collect`` method, one factory, one SimulatedOracle."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.errors import ProjectError
from exemplar.loop import FileOracle, HumanOracle, SimulatedOracle, make_oracle
from exemplar.loop.engine import LoopEngine
from exemplar.loop.oracle import ORACLE_ANNOTATOR, noisy_label
from exemplar.simulate import runner
from exemplar.store.schema import Cycle, Item, Label
from loop_helpers import make_project


def test_factory_picks_the_oracle_from_the_config(tmp_path: Path) -> None:
    with make_project(tmp_path / "s", n=60, budget=30) as p:
        oracle = make_oracle(p, p.config.oracle)
        assert isinstance(oracle, SimulatedOracle) and oracle.context is p
        assert isinstance(LoopEngine(p).oracle, SimulatedOracle)
    with make_project(tmp_path / "h", n=60, budget=30, oracle="human") as p:
        assert isinstance(make_oracle(p, p.config.oracle), HumanOracle)
    with make_project(
        tmp_path / "f", n=60, budget=30, oracle="file", oracle_extra={"path": "labels.csv"}
    ) as p:
        oracle = make_oracle(p, p.config.oracle)
        assert isinstance(oracle, FileOracle) and oracle.path == p.root / "labels.csv"


def test_the_simulator_uses_the_project_oracle_class() -> None:
    assert runner.SimulatedOracle is SimulatedOracle


def test_noise_depends_on_seed_and_item_only() -> None:
    y = np.repeat(np.arange(5), 200)
    a = SimulatedOracle(y, noise_rate=0.3, random_state=7)
    b = SimulatedOracle(y, noise_rate=0.3, random_state=7)
    order = np.random.default_rng(0).permutation(y.size)
    forward = a.query(np.arange(y.size))
    shuffled = np.empty_like(forward)
    shuffled[order] = b.query(order)
    assert np.array_equal(forward, shuffled)  # same labels whatever the query order
    flipped = forward != y
    assert 0.25 < flipped.mean() < 0.35
    rng = np.random.default_rng([7, 3])
    assert a.reveal(3, 0) == noisy_label(0, list(range(5)), 0.3, rng)


def test_array_oracle_has_no_queue_and_queue_oracle_no_array(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no project queue"):
        SimulatedOracle(np.zeros(3)).collect(None, [])  # type: ignore[arg-type]
    with make_project(tmp_path / "p", n=60, budget=30) as p:
        oracle = make_oracle(p, p.config.oracle)
        assert isinstance(oracle, SimulatedOracle)
        with pytest.raises(ProjectError, match="no ground-truth array"):
            oracle.query(np.array([0]))


def test_project_noise_and_cost_come_from_the_same_oracle(tmp_path: Path) -> None:
    with make_project(
        tmp_path / "p",
        n=200,
        budget=40,
        oracle_extra={"noise_rate": 0.5, "cost_per_label": 2.0},
    ) as p:
        p.run()
        with p.db.read() as s:
            rows = s.execute(
                select(Label.item_id, Label.label, Item.ground_truth, Label.annotator).join(
                    Item, Item.id == Label.item_id
                )
            ).all()
            costs = [c.metrics.get("oracle_cost", 0.0) for c in s.scalars(select(Cycle))]
        reference = SimulatedOracle(
            noise_rate=0.5, random_state=p.config.project.seed, classes=p.classes
        )
        assert len(rows) == 40 and {r[3] for r in rows} == {ORACLE_ANNOTATOR}
        assert [r[1] for r in rows] == [reference.reveal(r[0], r[2]) for r in rows]
        assert any(r[1] != r[2] for r in rows)  # noise flipped some labels
        assert sum(costs) == pytest.approx(2.0 * 40)


def test_human_and_file_oracles_say_what_they_wait_for(tmp_path: Path) -> None:
    with make_project(tmp_path / "h", n=60, budget=30, oracle="human") as p:
        outcome = p.run()
        assert "waits for 20 label(s)" in outcome.message
        assert "exemplar label" in outcome.message
    with make_project(
        tmp_path / "f", n=60, budget=30, oracle="file", oracle_extra={"path": "labels.csv"}
    ) as p:
        outcome = p.run()
        assert outcome.status == "waiting"
        assert "waits for 20 label(s): add them to labels.csv" in outcome.message
