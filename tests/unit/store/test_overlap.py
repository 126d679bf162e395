"""Overlap N: slots per item, one slot per annotator, consensus, disputes, review, undo.

Every test runs on SQLite (a temporary file) and on PostgreSQL (a fresh database per test;
skipped when the server is unreachable), like tests/unit/store/test_queue.py.
"""

from __future__ import annotations

import random
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from exemplar.errors import NothingToReviewError, QueueError, ReviewError
from exemplar.store.consensus import REVIEW_STRATEGY, disputed_votes, review_item
from exemplar.store.db import Database, open_database, sqlite_url
from exemplar.store.labels import current_labels
from exemplar.store.queue import (
    LeasedItem,
    enqueue,
    lease,
    pending_for_cycle,
    queue_counts,
    skip,
    submit,
    undo_last,
)
from exemplar.store.schema import Cycle, CycleState, Item, Label, QueueEntry, utcnow

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

CLASSES = ("cat", "dog")
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=utcnow().tzinfo)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
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


def _fill(db: Database, n: int, overlap: int) -> tuple[int, list[int]]:
    """A cycle in state ``label`` with ``n`` items queued ``overlap`` times; (cycle, item ids)."""
    with db.session() as s:
        cycle = Cycle(number=1, seed=0, strategy="entropy", batch_size=n, state=CycleState.LABEL)
        s.add(cycle)
        items = [Item(uid=f"u{i}", row=i, uri=f"mem://{i}", kind="features") for i in range(n)]
        s.add_all(items)
        s.flush()
        entries = [(item.id, "entropy", float(n - k)) for k, item in enumerate(items)]
        assert enqueue(s, cycle.id, entries, overlap=overlap) == n * overlap
        return cycle.id, [item.id for item in items]


def _lease(db: Database, who: str, at: datetime = T0, seconds: float = 60) -> LeasedItem:
    got = lease(db, who, lease_seconds=seconds, now=at)
    assert got is not None
    return got


def _history(db: Database, item_id: int) -> list[tuple[str | None, str | None, str, str | None]]:
    with db.read() as s:
        rows = s.scalars(select(Label).where(Label.item_id == item_id).order_by(Label.id))
        return [(r.annotator, r.label, r.status, r.strategy) for r in rows]


def _current(db: Database, item_id: int, *, verified_only: bool = False) -> tuple[str | None, str]:
    with db.read() as s:
        found = [c for c in current_labels(s, verified_only=verified_only) if c.item_id == item_id]
    return (found[0].label, found[0].status) if found else (None, "none")


def test_enqueue_adds_one_slot_per_annotator_with_one_rank(db: Database) -> None:
    cycle_id, items = _fill(db, 3, overlap=2)
    with db.read() as s:
        rows = s.execute(
            select(QueueEntry.item_id, QueueEntry.slot, QueueEntry.rank).order_by(QueueEntry.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        (items[0], 0, 0),
        (items[0], 1, 0),
        (items[1], 0, 1),
        (items[1], 1, 1),
        (items[2], 0, 2),
        (items[2], 1, 2),
    ]
    with db.session() as s:  # enqueueing the batch again adds nothing
        assert enqueue(s, cycle_id, [(i, "entropy", 0.0) for i in items], overlap=2) == 0
        with pytest.raises(QueueError, match="at least 1"):
            enqueue(s, cycle_id, [(items[0], None, None)], overlap=0)
    assert pending_for_cycle(db, cycle_id) == 6


def test_one_annotator_never_gets_two_slots_of_an_item(db: Database) -> None:
    cycle_id, items = _fill(db, 3, overlap=2)
    first = _lease(db, "alice", T0)
    # Her prefetch passes over the other slot of the item she holds.
    more = lease(db, "alice", lease_seconds=60, now=T0, besides=first.entry_id)
    assert more is not None and more.item_id == items[1]
    # Bob gets the second slot of the best item, not a slot alice holds.
    bob = _lease(db, "bob", T0)
    assert (bob.item_id, bob.entry_id != first.entry_id) == (items[0], True)
    seen: list[int] = []
    for who in ("alice", "alice", "alice", "alice"):
        got = lease(db, who, lease_seconds=60, now=T0)
        if got is None:
            break
        seen.append(got.item_id)
        submit(db, got.entry_id, who, "cat", classes=CLASSES, now=T0)
    # Alice labels each item once (the other slots wait for other annotators).
    assert sorted(seen) == sorted(items) and len(set(seen)) == 3
    assert lease(db, "alice", lease_seconds=60, now=T0) is None
    assert _lease(db, "carol", T0).item_id == items[1]  # items[0]'s second slot is bob's
    assert pending_for_cycle(db, cycle_id) == 3


def test_agreement_is_the_current_label_and_open_votes_do_not_train(db: Database) -> None:
    _, items = _fill(db, 1, overlap=2)
    a = _lease(db, "alice")
    b = _lease(db, "bob")
    vote = submit(db, a.entry_id, "alice", "cat", classes=CLASSES)
    assert vote.status == "proposed"  # waiting for bob: not a training label yet
    assert _current(db, items[0], verified_only=True) == (None, "none")
    with db.session() as s, pytest.raises(ReviewError, match="still being labeled"):
        review_item(s, items[0], "rev", "accept", None, classes=CLASSES)
    second = submit(db, b.entry_id, "bob", "cat", classes=CLASSES)
    assert second.status == "verified"
    assert _current(db, items[0], verified_only=True) == ("cat", "verified")
    assert _history(db, items[0]) == [
        ("alice", "cat", "proposed", "entropy"),
        ("bob", "cat", "verified", "entropy"),
    ]
    assert queue_counts(db)["done"] == 2


def test_disagreement_is_disputed_until_a_reviewer_decides(db: Database) -> None:
    cycle_id, items = _fill(db, 2, overlap=2)
    a = _lease(db, "alice")
    b = _lease(db, "bob")
    assert a.item_id == b.item_id == items[0]
    submit(db, a.entry_id, "alice", "cat", classes=CLASSES)
    submit(db, b.entry_id, "bob", "dog", classes=CLASSES)
    assert _current(db, items[0]) == (None, "disputed")
    assert _current(db, items[0], verified_only=True) == (None, "none")  # not trained on
    with db.read() as s:
        dispute = s.scalars(select(Label).where(Label.status == "disputed")).one()
        votes = disputed_votes(s, [dispute])[items[0]]
    assert [(v.annotator, v.label, v.verdict) for v in votes] == [
        ("alice", "cat", "verified"),
        ("bob", "dog", "verified"),
    ]
    assert (dispute.cycle_id, dispute.annotator, dispute.label) == (cycle_id, None, None)
    # The loop's batch is not held up by the dispute: only the other item is open.
    assert pending_for_cycle(db, cycle_id) == 2
    with db.session() as s, pytest.raises(ReviewError, match="alice: cat, bob: dog"):
        review_item(s, items[0], "rev", "accept", None, classes=CLASSES)
    with db.session() as s:
        decided = review_item(s, items[0], "rev", "accept", "dog", classes=CLASSES)
    assert (decided.annotator, decided.strategy, decided.status) == ("rev", "review", "verified")
    assert decided.created_at is not None
    assert _current(db, items[0], verified_only=True) == ("dog", "verified")
    assert _history(db, items[0]) == [
        ("alice", "cat", "proposed", "entropy"),
        ("bob", "dog", "proposed", "entropy"),
        (None, None, "disputed", "entropy"),
        ("rev", "dog", "verified", REVIEW_STRATEGY),
    ]


def test_review_decisions_on_disputes_and_bad_input(db: Database) -> None:
    _, items = _fill(db, 3, overlap=2)
    for item in items:  # every item disputed: alice says cat, bob dog
        a, b = _lease(db, "alice"), _lease(db, "bob")
        assert a.item_id == b.item_id == item
        submit(db, a.entry_id, "alice", "cat", classes=CLASSES)
        submit(db, b.entry_id, "bob", "dog", classes=CLASSES)
    before = [_history(db, item) for item in items]
    with db.session() as s:
        with pytest.raises(NothingToReviewError, match="no item"):
            review_item(s, 999_999, "rev", "accept", None, classes=CLASSES)
        with pytest.raises(ReviewError, match="needs a label"):
            review_item(s, items[0], "rev", "correct", None, classes=CLASSES)
        with pytest.raises(ReviewError, match="accept one of its labels"):
            review_item(s, items[0], "rev", "accept", "bird", classes=CLASSES)
    assert [_history(db, item) for item in items] == before  # bad input wrote nothing
    with db.session() as s:
        review_item(s, items[0], "rev", "correct", "cat", classes=CLASSES)
        review_item(s, items[1], "rev", "reject", None, classes=CLASSES)
    assert _current(db, items[0], verified_only=True) == ("cat", "verified")
    assert _current(db, items[1]) == (None, "rejected")
    assert _current(db, items[2]) == (None, "disputed")


def test_rejections_are_votes_too(db: Database) -> None:
    _, items = _fill(db, 2, overlap=2)
    for item, bob_says in ((items[0], "rejected"), (items[1], "verified")):
        a, b = _lease(db, "alice"), _lease(db, "bob")
        assert a.item_id == b.item_id == item
        first = submit(db, a.entry_id, "alice", "cat", classes=CLASSES, status="rejected")
        assert first.status == "rejected"
        submit(db, b.entry_id, "bob", "cat", classes=CLASSES, status=bob_says)
    # Both rejected the proposal "cat": agreed, so the item's label is that rejection.
    assert _current(db, items[0]) == ("cat", "rejected")
    # One rejected "cat", the other labeled it "cat": that is a disagreement.
    assert _current(db, items[1]) == (None, "disputed")


def test_three_annotators_settle_once_all_three_voted(db: Database) -> None:
    _, items = _fill(db, 1, overlap=3)
    held = [_lease(db, who) for who in ("a", "b", "c")]
    assert len({h.entry_id for h in held}) == 3
    assert lease(db, "d", lease_seconds=60, now=T0) is None  # every slot is taken
    submit(db, held[0].entry_id, "a", "dog", classes=CLASSES)
    submit(db, held[1].entry_id, "b", "dog", classes=CLASSES)
    assert _current(db, items[0], verified_only=True) == (None, "none")
    submit(db, held[2].entry_id, "c", "dog", classes=CLASSES)
    assert _current(db, items[0], verified_only=True) == ("dog", "verified")


def test_expired_slot_returns_and_skipped_slot_comes_back(db: Database) -> None:
    _, items = _fill(db, 2, overlap=2)
    a = _lease(db, "alice", T0, seconds=10)
    _lease(db, "bob", T0)  # the other slot of items[0]
    later = T0 + timedelta(seconds=11)
    carol = _lease(db, "carol", later)
    assert carol.entry_id == a.entry_id and carol.attempts == 2  # the expired slot returned
    # Alice lost her slot of items[0]; she never labeled it, so a slot of it may come back
    # to her, but both are held now: she gets items[1].
    alice = _lease(db, "alice", later)
    assert alice.item_id == items[1]
    skip(db, alice.entry_id, "alice", now=later)
    assert queue_counts(db, now=later)["skipped"] == 1
    # Skipped, not dropped: the other slot of items[1] is barred to alice (the skipped
    # one is hers), so her skipped slot comes back to her; dave gets the other one.
    again = _lease(db, "alice", later)
    assert again.entry_id == alice.entry_id
    dave = _lease(db, "dave", later)
    assert dave.item_id == items[1] and dave.entry_id != alice.entry_id
    submit(db, again.entry_id, "alice", "cat", classes=CLASSES)
    submit(db, dave.entry_id, "dave", "cat", classes=CLASSES)
    assert _current(db, items[1], verified_only=True) == ("cat", "verified")


def test_undo_takes_back_only_the_callers_vote(db: Database) -> None:
    _, items = _fill(db, 1, overlap=2)
    a, b = _lease(db, "alice"), _lease(db, "bob")
    submit(db, a.entry_id, "alice", "cat", classes=CLASSES)
    submit(db, b.entry_id, "bob", "dog", classes=CLASSES)
    assert _current(db, items[0]) == (None, "disputed")
    # Alice's vote is older than bob's and the dispute, and still hers to take back.
    undone = undo_last(db, "alice", lease_seconds=60)
    assert undone is not None and undone.entry_id == a.entry_id
    assert _current(db, items[0]) == (None, "rejected")  # the undo marker: no label
    again = _lease(db, "alice")
    assert again.entry_id == a.entry_id
    submit(db, again.entry_id, "alice", "dog", classes=CLASSES)  # now agreeing with bob
    assert _current(db, items[0], verified_only=True) == ("dog", "verified")
    votes = [(w, lab, st) for w, lab, st, _ in _history(db, items[0]) if w in ("alice", "bob")]
    assert votes == [
        ("alice", "cat", "proposed"),
        ("bob", "dog", "proposed"),
        ("alice", None, "rejected"),
        ("alice", "dog", "verified"),
    ]
    # Bob's undo reopens only his slot; the agreement is gone until he votes again.
    undone = undo_last(db, "bob", lease_seconds=60)
    assert undone is not None and undone.entry_id == b.entry_id
    assert _current(db, items[0], verified_only=True) == (None, "none")
    with db.read() as s:
        statuses = {i: st for i, st in s.execute(select(QueueEntry.id, QueueEntry.status))}
    assert statuses == {a.entry_id: "done", b.entry_id: "leased"}


def test_undo_is_refused_after_a_review(db: Database) -> None:
    _, items = _fill(db, 1, overlap=2)
    a, b = _lease(db, "alice"), _lease(db, "bob")
    submit(db, a.entry_id, "alice", "cat", classes=CLASSES)
    submit(db, b.entry_id, "bob", "dog", classes=CLASSES)
    with db.session() as s:
        review_item(s, items[0], "rev", "accept", "cat", classes=CLASSES)
    assert undo_last(db, "alice", lease_seconds=60) is None
    assert undo_last(db, "bob", lease_seconds=60) is None
    assert _current(db, items[0], verified_only=True) == ("cat", "verified")


def test_concurrent_last_votes_settle_each_item_exactly_once(db: Database, db_url: str) -> None:
    n = 12
    _, items = _fill(db, n, overlap=2)
    handles = [open_database(db_url), open_database(db_url)]
    errors: list[BaseException] = []

    def vote(h: Database, barrier: threading.Barrier, who: str, entry: int, label: str) -> None:
        try:
            barrier.wait(timeout=30)
            submit(h, entry, who, label, classes=CLASSES)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for _ in range(n):  # both votes of an item race; they always disagree
        a = lease(db, "alice", lease_seconds=600)
        b = lease(db, "bob", lease_seconds=600)
        assert a is not None and b is not None and a.item_id == b.item_id
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=vote, args=(handles[0], barrier, "alice", a.entry_id, "cat")),
            threading.Thread(target=vote, args=(handles[1], barrier, "bob", b.entry_id, "dog")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    for h in handles:
        h.dispose()
    assert not errors, errors
    with db.read() as s:
        disputes = Counter(s.scalars(select(Label.item_id).where(Label.status == "disputed")))
    assert disputes == Counter(items)  # exactly one dispute per item, none missed


def test_concurrent_annotators_never_share_a_slot_or_an_item(db: Database, db_url: str) -> None:
    n, overlap, workers = 30, 3, 5
    cycle_id, items = _fill(db, n, overlap=overlap)
    got: list[tuple[str, int, int]] = []  # annotator, entry, item
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(w: int) -> None:
        who = f"ann{w}"
        rng = random.Random(w)
        h = open_database(db_url)
        try:
            while (leased := lease(h, who, lease_seconds=600)) is not None:
                with lock:
                    got.append((who, leased.entry_id, leased.item_id))
                label = CLASSES[leased.item_id % 2] if rng.random() < 0.8 else "cat"
                submit(h, leased.entry_id, who, label, classes=CLASSES)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            h.dispose()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    # Every slot was served once, and no annotator got two slots of one item.
    assert len(got) == n * overlap == len({entry for _, entry, _ in got})
    assert len({(who, item) for who, _, item in got}) == len(got)
    assert pending_for_cycle(db, cycle_id) == 0
    with db.read() as s:
        rows = list(s.scalars(select(Label).order_by(Label.id)))
        current = {c.item_id: (c.label, c.status) for c in current_labels(s, verified_only=False)}
    votes: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        if row.annotator is not None:
            votes[row.item_id].append(str(row.label))
    assert all(len(v) == overlap for v in votes.values()) and len(votes) == n
    for item in items:  # the outcome follows from the votes, and is written once
        expected = (
            (votes[item][0], "verified") if len(set(votes[item])) == 1 else (None, "disputed")
        )
        assert current[item] == expected
    assert sum(1 for r in rows if r.status == "disputed") == sum(
        1 for item in items if len(set(votes[item])) > 1
    )


def test_counting_current_labels_in_the_database_matches_listing_them(db: Database) -> None:
    """``count_current_labels`` counts what ``current_labels`` lists: an agreed item, a
    disputed one (not verified) and an open vote (proposed), with and without
    ``verified_only``."""
    from exemplar.store.labels import count_current_labels

    _fill(db, 3, overlap=2)
    for label_a, label_b in (("cat", "cat"), ("cat", "dog")):
        a = _lease(db, "alice")
        b = _lease(db, "bob")
        submit(db, a.entry_id, "alice", label_a, classes=CLASSES)
        submit(db, b.entry_id, "bob", label_b, classes=CLASSES)
    submit(db, _lease(db, "alice").entry_id, "alice", "cat", classes=CLASSES)
    with db.read() as s:
        for verified_only in (True, False):
            listed = current_labels(s, verified_only=verified_only)
            assert count_current_labels(s, verified_only=verified_only) == len(listed)
        assert count_current_labels(s) == 1
        assert count_current_labels(s, verified_only=False) == 3
