"""PostgreSQL's hot path: the async queue (psycopg's async API) and the one-round-trip statements.

The async queue must keep every invariant of :mod:`exemplar.store.queue` (it runs the same
statements): rank order, one holder per entry, no lost label, the late-submit rules and
idempotent retries. A failed statement must not leave a pooled connection in a transaction
or in autocommit mode, and the hot statements must be prepared on the server.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text

from exemplar.errors import LeaseLostError, QueueError, StoreError
from exemplar.store.db import Database, open_database, sqlite_url
from exemplar.store.labels import UnknownClassError
from exemplar.store.pg_async import AsyncQueue
from exemplar.store.queue import PG_LEASE, PG_LEASE_PREFETCH, enqueue, lease, lease_params, submit
from exemplar.store.schema import Cycle, Item, Label, QueueEntry, utcnow

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

CLASSES = ("cat", "dog")
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=utcnow().tzinfo)


@pytest.fixture
def db() -> Iterator[Database]:
    for url in fresh_pg_database():
        database = open_database(url)
        try:
            yield database
        finally:
            database.dispose()


def _fill(db: Database, n: int, *, overlap: int = 1) -> tuple[int, list[int]]:
    """A cycle with ``n`` items queued best first; (cycle id, entry ids by rank, slot)."""
    with db.session() as s:
        cycle = Cycle(number=1, seed=0, strategy="entropy", batch_size=n)
        s.add(cycle)
        items = [Item(uid=f"u{i}", row=i, uri=f"mem://{i}", kind="features") for i in range(n)]
        s.add_all(items)
        s.flush()
        order = [(items[i].id, "entropy", float(i)) for i in reversed(range(n))]
        enqueue(s, cycle.id, order, overlap=overlap)
        cycle_id = cycle.id
    with db.read() as s:
        ids = list(s.scalars(select(QueueEntry.id).order_by(QueueEntry.rank, QueueEntry.slot)))
    return cycle_id, ids


def _labels(db: Database) -> list[Label]:
    with db.read() as s:
        return list(s.scalars(select(Label).order_by(Label.id)))


def _run(db: Database, body: Any, **pool: int) -> Any:
    """Run ``body(queue)`` (a coroutine function) on a fresh event loop and async queue."""

    async def main() -> Any:
        async with AsyncQueue(db, **pool) as queue:
            return await body(queue)

    return asyncio.run(main())


def test_async_lease_and_submit_keep_rank_order_and_provenance(db: Database) -> None:
    cycle_id, ids = _fill(db, 3)

    async def body(q: AsyncQueue) -> None:
        first = await q.lease("alice", lease_seconds=60, now=T0)
        assert first is not None and first.entry_id == ids[0] and first.attempts == 1
        assert (first.cycle_id, first.strategy, first.score, first.rank) == (
            cycle_id,
            "entropy",
            2.0,
            0,
        )
        assert first.lease_expires == T0 + timedelta(seconds=60)
        again = await q.lease("alice", lease_seconds=60, now=T0 + timedelta(seconds=1))
        assert again is not None and again.entry_id == ids[0] and again.attempts == 1
        more = await q.lease("alice", lease_seconds=60, now=T0, besides=ids[0])
        assert more is not None and more.entry_id == ids[1]
        bob = await q.lease("bob", lease_seconds=60, now=T0)
        assert bob is not None and bob.entry_id == ids[2]
        assert await q.lease("carol", lease_seconds=60, now=T0) is None
        lab = await q.submit(ids[0], "alice", "cat", classes=CLASSES, idempotency_key="k-1")
        assert (lab.item_id, lab.label, lab.annotator, lab.cycle_id, lab.strategy) == (
            first.item_id,
            "cat",
            "alice",
            cycle_id,
            "entropy",
        )
        assert (lab.score, lab.status, lab.source, lab.idempotency_key) == (
            2.0,
            "verified",
            "human",
            "k-1",
        )

    _run(db, body)
    stored = _labels(db)
    assert len(stored) == 1 and stored[0].id is not None
    with db.read() as s:
        entry = s.get_one(QueueEntry, ids[0])
        assert (entry.status, entry.lease_expires) == ("done", None)


def test_async_submit_errors_retries_and_lost_leases_match_the_sync_queue(db: Database) -> None:
    _, ids = _fill(db, 3)

    async def body(q: AsyncQueue) -> None:
        await q.lease("alice", lease_seconds=10, now=T0)
        # alice's lease expired and bob took the item: her late label is refused.
        await q.lease("bob", lease_seconds=60, now=T0 + timedelta(seconds=11))
        with pytest.raises(LeaseLostError, match="held by .bob."):
            await q.submit(ids[0], "alice", "cat", classes=CLASSES, idempotency_key="k-a")
        one = await q.submit(ids[0], "bob", "dog", classes=CLASSES, idempotency_key="k-b")
        two = await q.submit(ids[0], "bob", "dog", classes=CLASSES, idempotency_key="k-b")
        assert one.id == two.id  # a retry gets the first label back
        with pytest.raises(QueueError, match="already submitted"):
            await q.submit(ids[0], "bob", "dog", classes=CLASSES)
        await q.lease("bob", lease_seconds=60, now=T0 + timedelta(seconds=12))
        with pytest.raises(QueueError, match="another item"):
            await q.submit(ids[1], "bob", "dog", classes=CLASSES, idempotency_key="k-b")
        with pytest.raises(UnknownClassError):
            await q.submit(ids[1], "bob", "bird", classes=CLASSES)
        with pytest.raises(QueueError, match="not leased"):
            await q.submit(ids[2], "bob", "dog", classes=CLASSES)
        with pytest.raises(QueueError, match="no queue entry"):
            await q.submit(10**9, "bob", "dog", classes=CLASSES)
        with pytest.raises(QueueError, match="lease_seconds"):
            await q.lease("bob", lease_seconds=0)

    _run(db, body)
    assert [(lab.annotator, lab.label) for lab in _labels(db)] == [("bob", "dog")]


def test_async_submit_of_an_overlap_slot_records_a_vote(db: Database) -> None:
    _fill(db, 1, overlap=2)

    async def body(q: AsyncQueue) -> None:
        a = await q.lease("alice", lease_seconds=60)
        b = await q.lease("bob", lease_seconds=60)
        assert a is not None and b is not None and a.item_id == b.item_id
        vote = await q.submit(a.entry_id, "alice", "cat", classes=CLASSES)
        assert vote.status == "proposed"  # waiting for bob's vote (consensus.record_vote)
        second = await q.submit(b.entry_id, "bob", "cat", classes=CLASSES)
        assert second.status == "verified"

    _run(db, body)
    # The same rows the sync queue writes (test_overlap.py).
    assert [(lab.annotator, lab.label, lab.status) for lab in _labels(db)] == [
        ("alice", "cat", "proposed"),
        ("bob", "cat", "verified"),
    ]
    with db.read() as s:
        assert set(s.scalars(select(QueueEntry.status))) == {"done"}


def test_concurrent_async_annotators_never_share_an_item_and_lose_no_label(
    db: Database,
) -> None:
    n_items, n_annotators = 60, 12
    _fill(db, n_items)
    acked: dict[int, tuple[int, str]] = {}
    holders: dict[int, set[str]] = {}

    async def annotator(q: AsyncQueue, who: str) -> None:
        rng = random.Random(who)
        while True:
            got = await q.lease(who, lease_seconds=600)
            if got is None:
                return
            holders.setdefault(got.entry_id, set()).add(who)
            await asyncio.sleep(rng.random() / 500)
            lab = await q.submit(
                got.entry_id,
                who,
                rng.choice(CLASSES),
                classes=CLASSES,
                idempotency_key=f"{who}-{got.entry_id}",
            )
            acked[lab.id] = (lab.item_id, who)

    async def body(q: AsyncQueue) -> None:
        await asyncio.gather(*(annotator(q, f"ann{i}") for i in range(n_annotators)))

    _run(db, body, min_size=2, max_size=4)
    stored = {lab.id: (lab.item_id, lab.annotator) for lab in _labels(db)}
    assert stored == acked  # nothing lost, nothing extra
    assert len({item for item, _ in acked.values()}) == n_items  # every item once
    assert all(len(who) == 1 for who in holders.values())  # never two holders


def test_hot_statements_are_prepared_on_the_server(db: Database) -> None:
    _fill(db, 4)

    async def body(q: AsyncQueue) -> list[str]:
        for who in ("alice", "bob"):
            got = await q.lease(who, lease_seconds=60)
            assert got is not None
            await q.submit(got.entry_id, who, "cat", classes=CLASSES)
        async with q._pool.connection() as conn:  # the pool's one connection
            cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
            return [row[0] for row in await cur.fetchall()]

    prepared = _run(db, body, min_size=1, max_size=1)
    assert any("pg_advisory_xact_lock" in sql for sql in prepared)
    assert any("INSERT INTO labels" in sql for sql in prepared)
    assert any("FOR UPDATE OF c SKIP LOCKED" in sql for sql in prepared)  # the claim


def test_a_failed_async_lease_rolls_back_and_the_connection_serves_the_next(
    db: Database,
) -> None:
    _, ids = _fill(db, 2)

    async def body(q: AsyncQueue) -> None:
        with pytest.raises(StoreError, match="queue database error"):
            await q.lease("x" * 300, lease_seconds=60)  # too long for the column: fails in SQL
        got = await q.lease("alice", lease_seconds=60)
        assert got is not None and got.entry_id == ids[0] and got.attempts == 1
        await q.submit(got.entry_id, "alice", "dog", classes=CLASSES)

    _run(db, body, min_size=1, max_size=1)
    assert [lab.label for lab in _labels(db)] == ["dog"]


def test_a_failed_sync_lease_returns_its_connection_clean(db: Database) -> None:
    _, ids = _fill(db, 2)
    with pytest.raises(StoreError, match="queue database error"):
        lease(db, "x" * 300, lease_seconds=60)
    # The pooled connection is back in transaction mode, not in an aborted transaction.
    raw = db.engine.raw_connection()
    try:
        conn = raw.dbapi_connection
        assert conn is not None and conn.autocommit is False
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        raw.close()
    got = lease(db, "alice", lease_seconds=60)
    assert got is not None and got.entry_id == ids[0]
    with db.session() as s:  # an ORM transaction on the pool still works
        assert s.execute(text("SELECT 1")).scalar() == 1
    assert submit(db, ids[0], "alice", "cat", classes=CLASSES).label == "cat"


def test_the_async_queue_is_for_postgresql_only(tmp_path: Path) -> None:
    sqlite = open_database(sqlite_url(tmp_path / "p.db"))
    try:
        with pytest.raises(StoreError, match="needs PostgreSQL"):
            AsyncQueue(sqlite)
    finally:
        sqlite.dispose()


def test_the_lease_probes_indexes_and_never_reads_the_whole_queue(db: Database) -> None:
    # With a plain NOT EXISTS, PostgreSQL read all 15,000 entries once per lease (1.3 ms of
    # a 1.5 ms lease) to find the caller's rows; the lease must use index probes only.
    _fill(db, 15_000)
    lease(db, "bob", lease_seconds=60)
    conn = db.engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.execute("ANALYZE queue")
        params = lease_params(db.engine.dialect, "alice", 60, None, 1)
        for sql in (*PG_LEASE, PG_LEASE_PREFETCH[-1]):
            cur.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cur.fetchall())
            assert "Seq Scan on queue" not in plan, plan
        conn.rollback()
    finally:
        conn.close()
