"""The loop with ``[oracle] overlap = 2``: a batch is done once every item is agreed or
disputed, disputed items are not trained on until a reviewer resolves them, and they are
never selected again. Runs on SQLite and PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from exemplar.loop.engine import LoopEngine
from exemplar.loop.refill import refill_queue
from exemplar.project import Project
from exemplar.store.consensus import review_item
from exemplar.store.pool import STALE_PREFIX, drop_stale_entries
from exemplar.store.queue import lease
from exemplar.store.schema import Cycle, Item, Label, ModelVersion, QueueEntry
from loop_helpers import make_project

DISPUTED = 3


def _truth(project: Project, item_id: int) -> str:
    with project.db.read() as s:
        value = s.get_one(Item, item_id).ground_truth
    assert value is not None
    return value


def _label_everything(project: Project, who: str, wrong: set[int] | None = None) -> list[int]:
    """``who`` labels every slot it may take (ground truth, or a wrong class for ``wrong``)."""
    seen = []
    while (leased := project.next_item(who)) is not None:
        truth = _truth(project, leased.item_id)
        label = truth
        if wrong is not None and leased.item_id in wrong:
            label = project.classes[(project.classes.index(truth) + 1) % len(project.classes)]
        project.submit_label(leased.entry_id, who, label)
        seen.append(leased.item_id)
    return seen


def test_disputes_do_not_stall_the_loop_and_train_only_once_resolved(
    tmp_path: Path, database_url: str
) -> None:
    with make_project(
        tmp_path / "p",
        database_url=database_url,
        oracle="human",
        n=200,
        budget=60,
        oracle_extra={"overlap": 2},
    ) as project:
        first = project.run()
        assert first.status == "waiting"
        assert project.status()["queue"]["pending"] == 40  # 20 items, 2 slots each
        alice = _label_everything(project, "alice")
        assert len(alice) == len(set(alice)) == 20  # one slot of each item, never two
        assert project.run().status == "waiting"  # half the slots are still open
        assert "waits for 20 label(s)" in project.run().message
        disputed = set(alice[:DISPUTED])
        bob = _label_everything(project, "bob", wrong=disputed)
        assert sorted(bob) == sorted(alice)
        status = project.status()
        assert status["labels"]["disputed"] == DISPUTED
        assert status["labels"]["verified"] == 20 - DISPUTED
        # Every item is agreed or disputed: the batch is done and the loop moves on.
        outcome = project.run()
        assert outcome.status == "waiting" and outcome.cycle == 1
        with project.db.read() as s:
            cycle1 = s.scalars(select(Cycle).where(Cycle.number == 1)).one()
            version = s.get_one(ModelVersion, cycle1.model_version_id)
            batch = set(
                s.scalars(select(QueueEntry.item_id).where(QueueEntry.cycle_id == cycle1.id))
            )
            slots = list(s.scalars(select(QueueEntry.slot).where(QueueEntry.cycle_id == cycle1.id)))
        assert version.n_labels == 20 - DISPUTED  # disputed items were not trained on
        assert batch.isdisjoint(disputed)  # ... and are not selected again
        assert sorted(slots) == [0] * 10 + [1] * 10
        # A reviewer resolves one dispute: it joins the training labels.
        item = min(disputed)
        with project.db.session() as s:
            review_item(s, item, "rev", "correct", _truth(project, item), classes=project.classes)
        labeled = LoopEngine(project)._labeled()
        assert labeled.y.size == 20 - DISPUTED + 1 and item in set(labeled.item_ids.tolist())


def test_stale_slots_of_a_started_item_are_kept(tmp_path: Path) -> None:
    with make_project(
        tmp_path / "p", oracle="human", n=100, oracle_extra={"overlap": 2}
    ) as project:
        assert refill_queue(project).added == 20  # 10 items, 2 slots, no cycle
        held = lease(project.db, "alice", lease_seconds=60)
        assert held is not None
        with project.db.session() as s:
            dropped = drop_stale_entries(s)
        with project.db.read() as s:
            left = list(s.scalars(select(QueueEntry.item_id)))
            strategies = set(s.scalars(select(QueueEntry.strategy)))
        # Every untouched item's slots go; the started item keeps both of its slots.
        assert dropped == 18 and sorted(left) == [held.item_id, held.item_id]
        assert all(name.startswith(STALE_PREFIX) for name in strategies)
        with project.db.read() as s:
            assert s.scalars(select(Label)).first() is None
