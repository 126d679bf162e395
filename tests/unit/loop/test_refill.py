"""The queue refill service: the registered strategy on stored scores, its fallback, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.loop.refill import FALLBACK_STRATEGY, refill_queue
from exemplar.project import Project
from exemplar.store.pool import STALE_PREFIX
from exemplar.store.schema import Item, ModelVersion, QueueEntry
from loop_helpers import make_project

runner = CliRunner()


def _label_queue(project: Project) -> None:
    while (leased := project.next_item("ann")) is not None:
        with project.db.read() as s:
            truth = s.get_one(Item, leased.item_id).ground_truth
        assert truth is not None
        project.submit_label(leased.entry_id, "ann", truth)


def _with_a_model(root: Path, strategy: str) -> Project:
    """A human-oracle project whose cycle 1 model is scored and whose batches are labeled."""
    project = make_project(
        root,
        oracle="human",
        n=300,
        budget=200,
        selection={"batch_size": 10, "initial_size": 20, "strategy": strategy},
    )
    assert project.run().status == "waiting"
    _label_queue(project)
    assert project.run().status == "waiting"  # cycle 1: trained, scored, batch queued
    _label_queue(project)
    return project


def _stale(project: Project) -> list[tuple[int, str, float | None]]:
    with project.db.read() as s:
        return [
            (row, strategy, score)
            for row, strategy, score in s.execute(
                select(Item.row, QueueEntry.strategy, QueueEntry.score)
                .join(Item, Item.id == QueueEntry.item_id)
                .where(QueueEntry.cycle_id.is_(None))
                .order_by(QueueEntry.rank)
            )
        ]


def test_a_proba_strategy_ranks_the_refill_itself(tmp_path: Path) -> None:
    with _with_a_model(tmp_path / "p", "entropy") as project:
        refill = refill_queue(project, size=15)
        assert refill.added == 15 and refill.strategy == f"{STALE_PREFIX}entropy"
        stale = _stale(project)
        with project.db.read() as s:
            version = s.scalars(select(ModelVersion).where(ModelVersion.selected)).one()
        proba = np.asarray(project.arrays.load(f"proba-{version.version}"), dtype=np.float64)
        entropy = -(proba * np.log(np.clip(proba, 1e-12, None))).sum(axis=1)
        rows = np.asarray([row for row, *_ in stale])
        pool = np.setdiff1d(np.arange(proba.shape[0]), _taken_rows(project))
        expected = pool[np.argsort(-entropy[pool], kind="stable")[:15]]
        assert set(rows.tolist()) == set(expected.tolist())  # the 15 highest entropies
        scores = [score for *_, score in stale]
        assert scores == sorted(scores, reverse=True)  # best first


def _taken_rows(project: Project) -> np.ndarray:
    """Rows of the loop's batches (labeled or queued; the refill's entries have no cycle)."""
    with project.db.read() as s:
        return np.asarray(
            sorted(
                s.scalars(
                    select(Item.row)
                    .join(QueueEntry, QueueEntry.item_id == Item.id)
                    .where(QueueEntry.cycle_id.is_not(None))
                )
            ),
            dtype=np.int64,
        )


def test_a_strategy_whose_arrays_are_not_stored_falls_back_to_margin(tmp_path: Path) -> None:
    # BALD reads stochastic samples; scoring keeps only their reduction, not the samples.
    with _with_a_model(tmp_path / "p", "bald") as project:
        refill = refill_queue(project, size=5)
        assert refill.strategy == f"{STALE_PREFIX}{FALLBACK_STRATEGY}" and refill.added == 5
        rows = [row for row, *_ in _stale(project)]
        with project.db.read() as s:
            version = s.scalars(select(ModelVersion).where(ModelVersion.selected)).one()
        proba = np.sort(np.asarray(project.arrays.load(f"proba-{version.version}")), axis=1)
        margin = proba[:, -1] - proba[:, -2]
        taken = _taken_rows(project)
        pool = np.setdiff1d(np.arange(margin.size), taken)
        assert set(rows) == set(pool[np.argsort(margin[pool], kind="stable")[:5]].tolist())


def test_refill_command(tmp_path: Path) -> None:
    root = tmp_path / "p"
    with make_project(root, oracle="human", n=200, budget=60) as project:
        assert project.run().status == "waiting"
    result = runner.invoke(app, ["refill", "-p", str(root)])
    assert result.exit_code == 0, result.output
    assert "20 queue entries are open; nothing to refill" in result.output
    with Project.open(root) as project:
        _label_queue(project)
    result = runner.invoke(app, ["refill", "-p", str(root), "--size", "5"])
    assert result.exit_code == 0, result.output
    assert "queued 5 entries (stale:random)" in result.output
    with Project.open(root) as project:
        assert [strategy for _, strategy, _ in _stale(project)] == ["stale:random"] * 5


def test_a_stopped_project_is_not_refilled(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=30, n=200) as project:
        assert project.run().status == "stopped"  # simulated oracle: the budget is spent
        refill = refill_queue(project)
    assert refill.added == 0 and "has stopped" in refill.reason
