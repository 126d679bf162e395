"""The labeling queue: ranking, leases, expiry, submit safety, skip, and concurrency.

Every test runs on SQLite (a temporary file) and on PostgreSQL (a fresh database per test
on ``postgresql+psycopg://postgres@127.0.0.1:5432``; skipped when the server is unreachable).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import select

from exemplar.errors import LeaseLostError, QueueError
from exemplar.store.db import Database, open_database, sqlite_url
from exemplar.store.labels import UnknownClassError
from exemplar.store.queue import (
    LeasedItem,
    enqueue,
    expire_leases,
    lease,
    pending_for_cycle,
    queue_counts,
    release,
    skip,
    submit,
)
from exemplar.store.schema import Cycle, Item, Label, QueueEntry, utcnow

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

CLASSES = ("cat", "dog")
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=utcnow().tzinfo)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "project.db")
        return
    yield from fresh_pg_database()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.dispose()


def _fill(db: Database, n: int) -> tuple[int, list[int]]:
    """Create a cycle and ``n`` items queued best first; return (cycle id, entry ids by rank)."""
    with db.session() as s:
        cycle = Cycle(number=1, seed=0, strategy="entropy", batch_size=n)
        s.add(cycle)
        items = [Item(uid=f"u{i}", row=i, uri=f"mem://{i}", kind="features") for i in range(n)]
        s.add_all(items)
        s.flush()
        # Given best first: item n-1 has the highest score and must be served first.
        order = [(items[i].id, "entropy", float(i)) for i in reversed(range(n))]
        assert enqueue(s, cycle.id, order) == n
        cycle_id = cycle.id
    with db.session() as s:
        ids = list(s.scalars(select(QueueEntry.id).order_by(QueueEntry.rank)))
    return cycle_id, ids


def _labels(db: Database) -> list[Label]:
    with db.session() as s:
        return list(s.scalars(select(Label).order_by(Label.id)))


def _entry(db: Database, entry_id: int) -> QueueEntry:
    with db.session() as s:
        entry = s.get(QueueEntry, entry_id)
        assert entry is not None
        return entry


def _lease(db: Database, who: str, at: datetime, seconds: float = 60) -> LeasedItem:
    got = lease(db, who, lease_seconds=seconds, now=at)
    assert got is not None
    return got


def test_entries_are_served_in_rank_order_with_provenance(db: Database) -> None:
    cycle_id, ids = _fill(db, 4)
    served = []
    for i in range(4):
        got = _lease(db, f"ann{i}", T0)
        assert got.attempts == 1 and got.cycle_id == cycle_id and got.strategy == "entropy"
        served.append(got)
    assert [g.entry_id for g in served] == ids
    assert [g.rank for g in served] == [0, 1, 2, 3]
    assert [g.score for g in served] == [3.0, 2.0, 1.0, 0.0]
    assert lease(db, "ann9", lease_seconds=60, now=T0) is None
    assert pending_for_cycle(db, cycle_id) == 4
    lab = submit(db, served[0].entry_id, "ann0", "cat", classes=CLASSES, now=T0)
    assert (lab.cycle_id, lab.strategy, lab.score, lab.annotator, lab.source) == (
        cycle_id,
        "entropy",
        3.0,
        "ann0",
        "human",
    )
    assert lab.item_id == served[0].item_id
    assert pending_for_cycle(db, cycle_id) == 3
    assert queue_counts(db, now=T0) == {"pending": 0, "leased": 3, "done": 1, "skipped": 0}


def test_enqueue_is_idempotent_per_item_and_cycle(db: Database) -> None:
    cycle_id, ids = _fill(db, 3)
    with db.session() as s:
        item_ids = list(s.scalars(select(QueueEntry.item_id).order_by(QueueEntry.rank)))
        assert enqueue(s, cycle_id, [(i, "entropy", 0.0) for i in reversed(item_ids)]) == 0
        # The same items without a cycle are new entries; repeats within one call collapse.
        assert enqueue(s, None, [(item_ids[0], None, None), (item_ids[0], None, None)]) == 1
        assert enqueue(s, None, [(item_ids[0], None, None)]) == 0
    with db.session() as s:
        ranks = list(s.execute(select(QueueEntry.id, QueueEntry.rank).order_by(QueueEntry.id)))
    assert [tuple(r) for r in ranks[:3]] == [(ids[0], 0), (ids[1], 1), (ids[2], 2)]
    assert queue_counts(db)["pending"] == 4


def test_a_lease_carries_the_items_display_fields(db: Database) -> None:
    _, ids = _fill(db, 3)
    leased = _lease(db, "alice", T0)
    with db.read() as s:
        item = s.get_one(Item, leased.item_id)
        fields = (item.row, item.kind, item.text)
    assert leased.entry_id == ids[0]
    assert (leased.item_row, leased.item_kind, leased.item_text) == fields


def test_same_annotator_gets_the_same_live_lease(db: Database) -> None:
    _, ids = _fill(db, 3)
    first = _lease(db, "alice", T0, seconds=60)
    again = _lease(db, "alice", T0 + timedelta(seconds=30), seconds=60)
    assert again.entry_id == first.entry_id == ids[0]
    assert again.attempts == 1  # a reload is not a new attempt
    assert again.lease_expires == T0 + timedelta(seconds=90)  # ... but it extends the lease
    assert _lease(db, "bob", T0).entry_id == ids[1]
    assert queue_counts(db, now=T0)["leased"] == 2


def test_a_prefetch_holds_at_most_one_more_entry_even_when_concurrent(
    db: Database, db_url: str
) -> None:
    _fill(db, 6)
    first = lease(db, "alice", lease_seconds=60)
    assert first is not None
    handles = [open_database(db_url) for _ in range(4)]
    barrier = threading.Barrier(len(handles))
    got: list[int | None] = []
    lock = threading.Lock()

    def prefetch(h: Database) -> None:
        barrier.wait(timeout=30)
        more = lease(h, "alice", lease_seconds=60, besides=first.entry_id)
        with lock:
            got.append(None if more is None else more.entry_id)

    threads = [threading.Thread(target=prefetch, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for h in handles:
        h.dispose()
    # Every concurrent prefetch got the same second entry: alice holds exactly two.
    assert len(got) == 4 and len(set(got)) == 1 and got[0] not in (None, first.entry_id)
    with db.read() as s:
        held = s.scalars(
            select(QueueEntry.id).where(
                QueueEntry.status == "leased", QueueEntry.annotator == "alice"
            )
        ).all()
    assert sorted(held) == sorted([first.entry_id, got[0]])


def test_expired_lease_returns_the_item_to_another_annotator(db: Database) -> None:
    _, ids = _fill(db, 2)
    first = _lease(db, "alice", T0, seconds=10)
    assert first.entry_id == ids[0]
    # Still live: bob gets the next one.
    assert _lease(db, "bob", T0 + timedelta(seconds=5)).entry_id == ids[1]
    assert queue_counts(db, now=T0 + timedelta(seconds=11))["pending"] == 1
    taken = _lease(db, "carol", T0 + timedelta(seconds=11))
    assert taken.entry_id == ids[0] and taken.attempts == 2 and taken.annotator == "carol"


def test_submit_after_losing_the_lease_raises_and_writes_nothing(db: Database) -> None:
    _, ids = _fill(db, 1)
    _lease(db, "alice", T0, seconds=10)
    _lease(db, "bob", T0 + timedelta(seconds=11))
    with pytest.raises(LeaseLostError, match="held by .bob."):
        submit(db, ids[0], "alice", "cat", classes=CLASSES, idempotency_key="k-alice")
    assert _labels(db) == []
    entry = _entry(db, ids[0])
    assert (entry.status, entry.annotator) == ("leased", "bob")
    submit(db, ids[0], "bob", "dog", classes=CLASSES)
    # Once bob has labeled it, alice's retry still fails and writes nothing.
    with pytest.raises(LeaseLostError):
        submit(db, ids[0], "alice", "cat", classes=CLASSES, idempotency_key="k-alice")
    assert [(lab.annotator, lab.label) for lab in _labels(db)] == [("bob", "dog")]


def test_submit_with_an_expired_but_untaken_lease_is_accepted(db: Database) -> None:
    _, ids = _fill(db, 2)
    _lease(db, "alice", T0, seconds=10)
    late = T0 + timedelta(seconds=100)
    assert submit(db, ids[0], "alice", "cat", classes=CLASSES, now=late).label == "cat"
    assert _entry(db, ids[0]).status == "done"
    # Also after the expiry was processed (entry back to pending, nobody took it).
    _lease(db, "alice", late, seconds=10)
    assert expire_leases(db, now=late + timedelta(seconds=20)) == 1
    assert submit(db, ids[1], "alice", "dog", classes=CLASSES).label == "dog"
    assert queue_counts(db) == {"pending": 0, "leased": 0, "done": 2, "skipped": 0}


def test_submit_retried_with_the_same_key_writes_one_label(db: Database) -> None:
    _, ids = _fill(db, 2)
    _lease(db, "alice", T0)
    one = submit(db, ids[0], "alice", "cat", classes=CLASSES, idempotency_key="req-1")
    two = submit(db, ids[0], "alice", "cat", classes=CLASSES, idempotency_key="req-1")
    assert one.id == two.id
    assert len(_labels(db)) == 1
    # Without a key, a second submit of a done entry is an error, not a second label.
    with pytest.raises(QueueError, match="already submitted"):
        submit(db, ids[0], "alice", "cat", classes=CLASSES)
    # A key reused for another item is refused.
    _lease(db, "alice", T0)
    with pytest.raises(QueueError, match="another item"):
        submit(db, ids[1], "alice", "cat", classes=CLASSES, idempotency_key="req-1")
    assert len(_labels(db)) == 1


def test_skipped_items_go_last_and_come_back(db: Database) -> None:
    cycle_id, ids = _fill(db, 3)
    assert _lease(db, "alice", T0).entry_id == ids[0]
    skip(db, ids[0], "alice")
    assert queue_counts(db, now=T0)["skipped"] == 1
    assert pending_for_cycle(db, cycle_id) == 3  # skipped, not dropped
    order = []
    for _ in range(3):
        got = _lease(db, "alice", T0)
        order.append(got.entry_id)
        submit(db, got.entry_id, "alice", "cat", classes=CLASSES)
    assert order == [ids[1], ids[2], ids[0]]
    assert _entry(db, ids[0]).attempts == 2
    assert lease(db, "alice", lease_seconds=60, now=T0) is None
    assert pending_for_cycle(db, cycle_id) == 0


def test_skip_and_release_check_the_holder(db: Database) -> None:
    _, ids = _fill(db, 2)
    _lease(db, "alice", T0)
    with pytest.raises(LeaseLostError):
        skip(db, ids[0], "bob")
    with pytest.raises(QueueError, match="not leased"):
        skip(db, ids[1], "bob")
    with pytest.raises(QueueError, match="no queue entry"):
        release(db, 10_000, "alice")
    assert release(db, ids[0], "bob") is False
    assert release(db, ids[0], "alice") is True
    assert release(db, ids[0], "alice") is False
    # Released items keep their rank: the next lease gets the same entry back.
    assert _lease(db, "bob", T0).entry_id == ids[0]


def test_unknown_class_is_rejected_and_nothing_is_written(db: Database) -> None:
    _, ids = _fill(db, 1)
    _lease(db, "alice", T0)
    with pytest.raises(UnknownClassError, match="bird"):
        submit(db, ids[0], "alice", "bird", classes=CLASSES, idempotency_key="k")
    assert _labels(db) == []
    entry = _entry(db, ids[0])
    assert (entry.status, entry.annotator) == ("leased", "alice")
    # The key was not consumed: the corrected submit with it succeeds.
    assert submit(db, ids[0], "alice", "dog", classes=CLASSES, idempotency_key="k").label == "dog"


def test_unknown_entry_and_never_leased_entry_are_errors(db: Database) -> None:
    _, ids = _fill(db, 1)
    with pytest.raises(QueueError, match="no queue entry"):
        submit(db, 999_999, "alice", "cat", classes=CLASSES)
    with pytest.raises(QueueError, match="not leased"):
        submit(db, ids[0], "alice", "cat", classes=CLASSES)
    with pytest.raises(QueueError, match="positive"):
        lease(db, "alice", lease_seconds=0)
    assert _labels(db) == []


def _run_workers(
    n_workers: int,
    make_db: Callable[[], Database],
    *,
    own_handles: bool,
    lease_seconds: float,
    slow_rate: float,
) -> tuple[list[tuple[int, str, datetime, datetime]], list[tuple[int, str, int]], int]:
    """Workers lease+submit until the queue is empty; some stall past their lease."""
    holds: list[tuple[int, str, datetime, datetime]] = []  # entry, who, held from, held until
    submitted: list[tuple[int, str, int]] = []  # entry, who, label id
    lost = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(w: int) -> None:
        who = f"ann{w}"
        rng = random.Random(w)
        wdb = make_db()
        try:
            while True:
                got = lease(wdb, who, lease_seconds=lease_seconds)
                if got is None:
                    return
                held_from = utcnow()  # the lease is certainly held from here
                if rng.random() < slow_rate:
                    time.sleep(lease_seconds * 1.5)
                try:
                    lab = submit(
                        wdb,
                        got.entry_id,
                        who,
                        CLASSES[got.item_id % 2],
                        classes=CLASSES,
                        idempotency_key=f"{who}:{got.entry_id}:{got.attempts}",
                    )
                except LeaseLostError:
                    with lock:
                        lost[0] += 1
                        holds.append((got.entry_id, who, held_from, got.lease_expires))
                    continue
                done_at = utcnow()
                with lock:
                    holds.append((got.entry_id, who, held_from, min(done_at, got.lease_expires)))
                    submitted.append((got.entry_id, who, lab.id))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            if own_handles:
                wdb.dispose()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "workers did not finish"
    if errors:
        raise errors[0]
    return holds, submitted, lost[0]


@pytest.mark.parametrize("shared_engine", [False, True], ids=["own-handle", "shared-engine"])
def test_concurrent_annotators_never_share_an_item_and_lose_no_label(
    db: Database, db_url: str, shared_engine: bool
) -> None:
    n = 240
    _, ids = _fill(db, n)
    make_db = (lambda: db) if shared_engine else (lambda: open_database(db_url))
    holds, submitted, lost = _run_workers(
        8, make_db, own_handles=not shared_engine, lease_seconds=0.5, slow_rate=0.03
    )

    # Every entry labeled exactly once, and every acknowledged label is stored.
    labels = _labels(db)
    assert len(labels) == len(submitted) == n
    assert {lab.id for lab in labels} == {label_id for _, _, label_id in submitted}
    per_item: dict[int, int] = defaultdict(int)
    for lab in labels:
        per_item[lab.item_id] += 1
    assert set(per_item.values()) == {1} and len(per_item) == n
    assert sorted(entry for entry, _, _ in submitted) == sorted(ids)
    assert queue_counts(db) == {"pending": 0, "leased": 0, "done": n, "skipped": 0}
    assert lost == len(holds) - n  # every lost lease was retried by someone else

    # No entry was ever held by two annotators at the same time.
    by_entry: dict[int, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for entry, who, start, end in holds:
        by_entry[entry].append((start, end, who))
    for entry, spans in by_entry.items():
        spans.sort()
        for (s1, e1, w1), (s2, _, w2) in pairwise(spans):
            assert s2 >= e1 or w1 == w2, f"entry {entry}: {w1} and {w2} overlap"


def test_concurrent_reloads_of_one_annotator_get_one_item(db: Database, db_url: str) -> None:
    _fill(db, 10)
    handles = [open_database(db_url) for _ in range(6)]
    barrier = threading.Barrier(len(handles))
    got: list[int] = []

    def reload(h: Database) -> None:
        barrier.wait()
        item = lease(h, "alice", lease_seconds=60)
        assert item is not None
        got.append(item.entry_id)

    threads = [threading.Thread(target=reload, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for h in handles:
        h.dispose()
    assert len(got) == len(handles) and len(set(got)) == 1
    assert queue_counts(db)["leased"] == 1


def test_a_lone_requeued_skip_is_parked_until_k_entries_come(db: Database) -> None:
    """``skip(requeue_after=k)`` with nothing else waiting: not served straight back, not
    freed by lease expiry, and pending again once ``unpark`` saw k new feed positions."""
    from exemplar.store.queue import unpark

    with db.session() as s:
        items = [Item(uid=f"s{i}", row=i, uri=f"mem://s{i}", kind="features") for i in range(3)]
        s.add_all(items)
        s.flush()
        ids = [it.id for it in items]
        enqueue(s, None, [(ids[0], "stream", 1.0)], first_rank=0)
    got = _lease(db, "ann", T0)
    skip(db, got.entry_id, "ann", requeue_after=2, now=T0)
    assert lease(db, "ann", lease_seconds=60, now=T0) is None
    assert expire_leases(db, now=T0 + timedelta(days=365)) == 0
    assert lease(db, "other", lease_seconds=60, now=T0 + timedelta(days=365)) is None
    for position, item_id in ((1, ids[1]), (2, ids[2])):
        with db.session() as s:
            enqueue(s, None, [(item_id, "stream", 1.0)], first_rank=position)
            woke = unpark(s, None, "stream", position)
        assert woke == (1 if position == 2 else 0)
    served = []
    for _ in range(3):
        item = _lease(db, "ann", T0)
        served.append(item.item_id)
        submit(db, item.entry_id, "ann", "cat", classes=CLASSES, now=T0)
    assert served == [ids[1], ids[2], ids[0]]


def test_a_parked_skip_with_park_seconds_returns_when_the_feed_stops(db: Database) -> None:
    """``park_seconds``: a lone skipped stream entry is not served straight back, but once
    the park has expired any annotator gets it, though no new entry ever came."""
    with db.session() as s:
        item = Item(uid="p0", row=0, uri="mem://p0", kind="features")
        s.add(item)
        s.flush()
        enqueue(s, None, [(item.id, "stream", 1.0)], first_rank=0)
    got = _lease(db, "ann", T0)
    skip(db, got.entry_id, "ann", requeue_after=3, park_seconds=600, now=T0)
    assert lease(db, "ann", lease_seconds=60, now=T0 + timedelta(seconds=599)) is None
    back = lease(db, "other", lease_seconds=60, now=T0 + timedelta(seconds=601))
    assert back is not None and back.item_id == item.id
