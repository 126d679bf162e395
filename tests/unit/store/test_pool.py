"""The pool, stale-entry and budget SQL of ``exemplar.store.pool``, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select, update

from exemplar.project import Project
from exemplar.store.labels import add_label
from exemplar.store.pool import (
    NO_BUDGET,
    STALE_PREFIX,
    PoolIndex,
    budget_room,
    budget_spent,
    drop_stale_entries,
    free_pool,
    pool_items,
    still_free,
)
from exemplar.store.queue import enqueue, lease
from exemplar.store.schema import Item, QueueEntry, Split
from loop_helpers import make_project


def _ids(project: Project) -> list[int]:
    with project.db.read() as s:
        return list(s.scalars(select(Item.id).order_by(Item.row)))


def _label(project: Project, item_id: int) -> None:
    with project.db.session() as s:
        add_label(s, item_id, "3", classes=project.classes, source="human", annotator="a")


def test_free_pool_leaves_out_labeled_and_queued_items(tmp_path: Path, database_url: str) -> None:
    with make_project(tmp_path / "p", database_url=database_url, oracle="human", n=20) as p:
        ids = _ids(p)
        _label(p, ids[0])
        with p.db.session() as s:
            enqueue(s, None, [(ids[1], "margin", 0.5)])  # an open entry of a cycle-less batch
            enqueue(s, None, [(ids[2], f"{STALE_PREFIX}margin", 0.4)])  # droppable stale
        with p.db.read() as s:
            rows, item_ids = pool_items(s)
            assert rows.tolist() == list(range(20)) and item_ids.tolist() == ids
            free_rows, free_ids = free_pool(s, rows, item_ids, n_rows=15)
        # A droppable stale entry does not take its item out of the pool; rows >= 15 are out.
        assert free_ids.tolist() == [ids[2], *ids[3:15]]
        assert np.all(np.diff(free_rows) > 0)


def test_stale_entries_are_dropped_unless_leased(tmp_path: Path, database_url: str) -> None:
    with make_project(tmp_path / "p", database_url=database_url, oracle="human", n=20) as p:
        ids = _ids(p)
        with p.db.session() as s:
            enqueue(s, None, [(i, f"{STALE_PREFIX}margin", None) for i in ids[:4]])
        held = lease(p.db, "ann", lease_seconds=60)
        assert held is not None
        with p.db.session() as s:
            assert drop_stale_entries(s) == 3
        with p.db.read() as s:
            assert list(s.scalars(select(QueueEntry.item_id))) == [held.item_id]
        _label(p, ids[5])  # the held item and a labeled one are no longer free
        entries = [(i, "margin", 0.1) for i in (held.item_id, ids[5], ids[6])]
        with p.db.read() as s:
            assert still_free(s, entries) == [(ids[6], "margin", 0.1)]


def test_budget_counts_items_once_and_only_pool_and_train_labels(
    tmp_path: Path, database_url: str
) -> None:
    with make_project(tmp_path / "p", database_url=database_url, oracle="human", n=20) as p:
        ids = _ids(p)
        with p.db.session() as s:
            s.execute(update(Item).where(Item.id == ids[19]).values(split=Split.TEST))
        _label(p, ids[19])  # a test-split label: not paid from the labeling budget
        _label(p, ids[0])
        _label(p, ids[0])  # a relabel: still one item
        with p.db.session() as s:
            enqueue(s, None, [(ids[0], "margin", None)])  # labeled and queued: one item
            enqueue(s, None, [(ids[1], "margin", None)], overlap=3)  # three slots, one item
            enqueue(s, None, [(ids[2], f"{STALE_PREFIX}margin", None)])
        with p.db.read() as s:
            assert budget_spent(s) == 3
            assert budget_spent(s, keep_droppable=False) == 2  # the stale entry makes way
            assert budget_room(s, 10, lock=False) == 7
            assert budget_room(s, 2, lock=False) == 0  # never negative
            assert budget_room(s, float("inf")) == NO_BUDGET
            assert budget_room(s, None) == NO_BUDGET  # [stopping] sets no label_budget


def test_pool_index_is_cached_per_committed_count(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", oracle="human", n=20) as p:
        index = PoolIndex(p.db)
        rows, _ = index.items(20)
        assert index.items(20)[0] is rows  # cached
        assert index.items(21)[0] is not rows  # re-read when the item count changes
        free_rows, _ = index.free(10, 20)
        assert free_rows.tolist() == list(range(10))


def test_two_enqueuers_never_spend_the_same_room(tmp_path: Path, database_url: str) -> None:
    """Two transactions that check the room and enqueue at once: the second waits for the
    first (PostgreSQL: the advisory lock; SQLite: the writer turn) and sees its entries."""
    with make_project(tmp_path / "p", database_url=database_url, oracle="human", n=40) as p:
        ids = _ids(p)
        first_has_room = threading.Event()
        added: dict[str, int] = {}

        def first() -> None:
            with p.db.session() as s:
                room = budget_room(s, 10)
                first_has_room.set()
                time.sleep(0.5)  # hold the transaction open while the second one starts
                added["first"] = enqueue(s, None, [(i, "a", None) for i in ids[:room]])

        def second() -> None:
            assert first_has_room.wait(10)
            with p.db.session() as s:
                room = budget_room(s, 10)
                added["second"] = enqueue(s, None, [(i, "b", None) for i in ids[20 : 20 + room]])

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert added == {"first": 10, "second": 0}
        with p.db.read() as s:
            assert budget_spent(s) == 10
