"""The loop with ``[oracle] relabel = "activelab"`` and ``overlap = 2``: new items get one
annotator, and ActiveLab spends part of each batch on a second vote for labeled items, as
one more slot of the item's round, which its first annotator is never offered. On SQLite
and PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from exemplar.errors import ConfigError
from exemplar.project import Project
from exemplar.store.schema import Cycle, Item, Label, LabelStatus, QueueEntry
from loop_helpers import make_project


def _truth(project: Project, item_id: int) -> str:
    with project.db.read() as s:
        value = s.get_one(Item, item_id).ground_truth
    assert value is not None
    return value


def test_activelab_queues_second_votes_beside_new_items(tmp_path: Path, database_url: str) -> None:
    with make_project(
        tmp_path / "p",
        database_url=database_url,
        oracle="human",
        n=300,
        budget=200,
        selection={"batch_size": 20, "initial_size": 150, "strategy": "margin"},
        oracle_extra={"overlap": 2, "relabel": "activelab"},
    ) as project:
        assert project.run().status == "waiting"
        assert project.status()["queue"]["pending"] == 150  # one slot per new item
        wrong: set[int] = set()
        k = 0
        while (leased := project.next_item("alice")) is not None:
            truth = _truth(project, leased.item_id)
            k += 1
            label = truth
            if k % 3 == 0:  # alice is wrong on a third of the items
                label = project.classes[(project.classes.index(truth) + 1) % 10]
                wrong.add(leased.item_id)
            project.submit_label(leased.entry_id, "alice", label)
        assert project.run().status == "waiting"
        with project.db.read() as s:
            first, second = s.scalars(select(Cycle).order_by(Cycle.number)).all()[:2]
            record = second.metrics["relabel"]
            relabels = s.scalars(select(QueueEntry).where(QueueEntry.strategy == "activelab")).all()
            new = s.scalars(select(QueueEntry).where(QueueEntry.cycle_id == second.id)).all()
        assert record["out_of_sample"] is True and set(record["annotator_accuracy"]) == {"alice"}
        assert record["asked"] == len(relabels) > 0
        assert record["asked"] + record["new"] == 20 and len(new) == record["new"]
        assert {e.slot for e in new} == {0}  # new items: one annotator each
        for e in relabels:  # a second slot of the round alice labeled the item in
            assert e.cycle_id == first.id and e.slot == 1 and e.status == "pending"
        # Alice is never offered an item she labeled: she gets the new items only, and
        # the second votes are left to bob.
        offered = set()
        while (leased := project.next_item("alice")) is not None:
            offered.add(leased.item_id)
            project.submit_label(leased.entry_id, "alice", _truth(project, leased.item_id))
        assert offered == {e.item_id for e in new}
        got = set()
        while (leased := project.next_item("bob")) is not None:
            got.add(leased.item_id)
            project.submit_label(leased.entry_id, "bob", _truth(project, leased.item_id))
        relabeled = {e.item_id for e in relabels}
        assert got == relabeled
        with project.db.read() as s:
            disputed = set(
                s.scalars(
                    select(Label.item_id).where(
                        Label.status == LabelStatus.DISPUTED.value,
                        Label.item_id.in_(relabeled),
                    )
                )
            )
        # Bob's true label settles the round: agreement keeps it, disagreement (alice
        # was wrong) sends the item to review.
        assert disputed == relabeled & wrong
        # The loop goes on: the next cycle trains without the disputed items.
        outcome = project.run()
        assert outcome.status in ("waiting", "stopped"), outcome
        with project.db.read() as s:
            assert s.scalars(select(Cycle).order_by(Cycle.number.desc())).first().number == 2


def test_activelab_needs_room_for_a_second_vote(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="overlap of at least 2"):
        make_project(tmp_path / "p", oracle="human", oracle_extra={"relabel": "activelab"})


def test_a_checkpoint_class_missing_from_the_project_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relabel slots with a model that knows a class the project no longer lists: the
    column is dropped and recorded, the cycle still selects (once a bare KeyError)."""
    import exemplar.loop.engine as engine_module

    real = engine_module.checkpoint_classes

    def renamed(path: Path, recipe: str) -> list[str]:
        return ["ghost" if str(c) == "0" else str(c) for c in real(path, recipe)]

    monkeypatch.setattr(engine_module, "checkpoint_classes", renamed)
    with make_project(
        tmp_path / "p",
        oracle="human",
        n=200,
        budget=120,
        selection={"batch_size": 20, "initial_size": 60, "strategy": "margin"},
        oracle_extra={"overlap": 2, "relabel": "activelab"},
    ) as project:
        assert project.run().status == "waiting"
        while (leased := project.next_item("alice")) is not None:
            project.submit_label(leased.entry_id, "alice", _truth(project, leased.item_id))
        assert project.run().status == "waiting"
        with project.db.read() as s:
            second = s.scalars(select(Cycle).order_by(Cycle.number)).all()[1]
            record = second.metrics["relabel"]
    assert record["dropped_classes"] == ["ghost"]
    assert record["asked"] + record["new"] == 20
