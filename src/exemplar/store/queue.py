"""The labeling queue: ranked entries leased to one annotator at a time (DESIGN.md §4).

Invariants this module keeps, on SQLite and PostgreSQL alike:

* Two annotators never hold the same entry at once, and one annotator never gets two slots
  of one item (overlap, :mod:`exemplar.store.consensus`). Claiming an entry is one atomic
  ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING``: on SQLite every write
  transaction starts with ``BEGIN IMMEDIATE`` (writers are serialised), on PostgreSQL the
  inner select is ``FOR UPDATE SKIP LOCKED`` (concurrent claimers skip each other's rows).
* An expired lease returns the item to the queue: the next :func:`lease` may claim it,
  at its rank, like a pending entry (:func:`expire_leases` sets such entries back to
  ``pending`` for housekeeping).
* An acknowledged label is never lost: :func:`submit` writes the label (through
  :func:`exemplar.store.labels.add_label`, with provenance) and marks the entry done in one
  transaction. A late submit whose lease expired is still accepted while nobody else has
  taken the item; it fails with :class:`~exemplar.errors.LeaseLostError` (writing nothing)
  once another annotator has it. A retried submit with the same idempotency key returns the
  label written the first time.

An item queued with overlap N has N entries (``slot`` 0..N-1) of one rank; its labeling is
complete when all N are done, and :func:`submit` records each label as a vote
(:func:`exemplar.store.consensus.record_vote`). With one slot, a label is written as is.

Statuses: ``pending`` (waiting, by rank), ``leased`` (held until ``lease_expires``),
``skipped`` (waiting, served after every pending entry), ``done`` (labeled). The
``annotator`` column keeps the last holder after a lease expires or is given back, so that
holder's late submit can be told apart from another annotator's.

The hot paths run their queue statements as plain SQL on the DB-API connection: a
:func:`lease` is one statement on SQLite, and :func:`submit` adds two to the label write.
SQLAlchemy's per-statement overhead would otherwise be most of their cost;
``python -m bench.queue_ops`` measures them. Everything else uses Core. On PostgreSQL,
where each round trip to the server counts, a lease is one round trip (two statements in
one pipeline, one implicit transaction: :data:`PG_LEASE`) and a submit one statement
(:data:`PG_SUBMIT`); :mod:`exemplar.store.pg_async` runs the same two on psycopg's async
API for the labeling server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Table, case, func, select, update
from sqlalchemy.orm import Session

from exemplar.errors import LeaseLostError, QueueError, StoreError
from exemplar.store.consensus import REVIEW_STRATEGY, lock_item, record_vote, round_filter
from exemplar.store.db import Database, bind_time, pyformat, read_time
from exemplar.store.labels import add_label, validate_class
from exemplar.store.schema import (
    Cycle,
    CycleState,
    Label,
    LabelSource,
    LabelStatus,
    QueueEntry,
    QueueStatus,
    utcnow,
)

__all__ = [
    "MAX_LABEL_SECONDS",
    "LeaseLostError",
    "LeasedItem",
    "QueueError",
    "UndoneLabel",
    "add_vote_slots",
    "check_label_seconds",
    "enqueue",
    "expire_leases",
    "label_seconds",
    "lease",
    "pending_for_cycle",
    "queue_counts",
    "release",
    "skip",
    "submit",
    "undo_last",
    "unpark",
]

_Q = cast(Table, QueueEntry.__table__)
_PENDING = QueueStatus.PENDING.value
_LEASED = QueueStatus.LEASED.value
_DONE = QueueStatus.DONE.value
_SKIPPED = QueueStatus.SKIPPED.value
#: Longest time recorded for one label (24 h); a longer one is not a measurement.
MAX_LABEL_SECONDS = 86_400


def label_seconds(leased_at: datetime, now: datetime) -> float | None:
    """Seconds from an entry's lease to its submit, or None when outside ``(0, 24 h]``.

    What a label records when the client sends no timer of its own. It is an upper bound
    when a client leases the next item ahead (the labeling page's prefetch), so the page
    sends its own timer.
    """
    waited = (now - leased_at).total_seconds()
    return waited if 0 < waited <= MAX_LABEL_SECONDS else None


def check_label_seconds(seconds: float | None) -> None:
    """A client's labeling time must be a number of seconds in ``(0, 24 h]``."""
    if seconds is not None and not (0 < seconds <= MAX_LABEL_SECONDS):  # NaN fails too
        raise QueueError(
            f"seconds must be over 0 and at most {MAX_LABEL_SECONDS} (24 h), got {seconds}"
        )


@dataclass(frozen=True)
class LeasedItem:
    """A queue entry held by one annotator until ``lease_expires`` (timezone-aware UTC).

    It carries the item's ``row``, ``kind`` and ``text`` too, read in the same statement:
    the labeling page shows them next.
    """

    entry_id: int
    item_id: int
    cycle_id: int | None
    strategy: str | None
    score: float | None
    rank: int
    annotator: str
    lease_expires: datetime
    attempts: int
    item_row: int
    item_kind: str
    item_text: str | None


def _utc(value: datetime | None) -> datetime:
    """``value`` (or now) as an aware UTC datetime; naive values (SQLite) are taken as UTC."""
    if value is None:
        return utcnow()
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def enqueue(
    session: Session,
    cycle_id: int | None,
    entries: Sequence[tuple[int, str | None, float | None]],
    *,
    overlap: int = 1,
    first_rank: int = 0,
) -> int:
    """Add ``(item_id, strategy, score)`` entries, best first, in the caller's transaction.

    An entry's rank is ``first_rank`` plus its position in ``entries`` (0 is served
    first; a stream appends at its feed position). Each item gets
    ``overlap`` entries (slots 0..overlap-1, same rank), one per annotator wanted. Items
    already queued for ``cycle_id`` (or repeated within ``entries``) are left as they are,
    so enqueueing a batch twice is harmless.

    Returns
    -------
    int
        The number of entries (slots) added.
    """
    if overlap < 1:
        raise QueueError(f"overlap must be at least 1, got {overlap}")
    conn = session.connection()
    dialect = conn.dialect
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        sql = "SELECT item_id FROM queue WHERE cycle_id " + (
            "IS NULL" if cycle_id is None else "= :cycle_id"
        )
        cur.execute(sql if dialect.name == "sqlite" else pyformat(sql), {"cycle_id": cycle_id})
        existing = {row[0] for row in cur.fetchall()}
    finally:
        cur.close()
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for rank, (item_id, strategy, score) in enumerate(entries):
        if item_id in existing:
            continue
        existing.add(item_id)
        rows.extend(
            {
                "item_id": int(item_id),
                "cycle_id": cycle_id,
                "slot": slot,
                "strategy": strategy,
                "score": None if score is None else float(score),
                "rank": first_rank + rank,
            }
            for slot in range(overlap)
        )
    if not rows:
        return 0
    # One prepared statement for every row on the driver's cursor: a refill of 2,000
    # entries took 31-43 ms through SQLAlchemy's insert, inside the writer turn that the
    # labeling server's requests wait for. A concurrent enqueue of the same (item, cycle,
    # slot) is absorbed by the unique constraint.
    stamp = bind_time(dialect, now)
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.executemany(_ENQUEUE_SQL[dialect.name], [{**r, "now": stamp} for r in rows])
    finally:
        cur.close()
    return len(rows)


def add_vote_slots(
    session: Session, entries: Sequence[tuple[int, int | None, str | None, float | None, int]]
) -> int:
    """Ask one more vote of labeled items: a new slot in each item's queue round.

    ``entries`` are ``(item_id, cycle_id, strategy, score, rank)``: the slot joins the round
    ``(item_id, cycle_id)`` the item was labeled in, numbered after its slots, so nobody
    who holds or labeled a slot of that round is offered it (one annotator never labels an
    item twice), and its vote settles the item with the round's others
    (:func:`exemplar.store.consensus.record_vote`: agreement keeps the label, a
    disagreement sends the item to review). In the caller's transaction; returns the
    number of slots added.
    """
    conn = session.connection()
    dialect = conn.dialect
    now = bind_time(dialect, utcnow())
    rows = []
    for item_id, cycle_id, strategy, score, rank in entries:
        taken = session.scalar(
            select(func.max(_Q.c.slot)).where(round_filter(_Q, item_id, cycle_id))
        )
        rows.append(
            {
                "item_id": int(item_id),
                "cycle_id": cycle_id,
                "slot": 0 if taken is None else int(taken) + 1,
                "strategy": strategy,
                "score": None if score is None else float(score),
                "rank": int(rank),
                "now": now,
            }
        )
    if rows:
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.executemany(_ENQUEUE_SQL[dialect.name], rows)
        finally:
            cur.close()
    return len(rows)


def lease(
    db: Database,
    annotator: str,
    *,
    lease_seconds: float,
    now: datetime | None = None,
    besides: int | None = None,
) -> LeasedItem | None:
    """Claim the best-ranked waiting entry for ``annotator`` until ``now + lease_seconds``.

    If ``annotator`` already holds a live lease, that entry is returned again with its
    lease extended (a page reload does not grab a second item, and does not count as an
    attempt). Otherwise the entry with the lowest rank among the pending ones and those
    whose lease expired is claimed, or, when there is none, the earliest skipped one,
    passing over slots of items ``annotator`` holds or held another slot of. Claiming
    increments ``attempts``. With ``besides=<entry id>`` (a client prefetching the next
    item while it shows that one), the caller's live lease other than ``besides`` is
    returned (extended), else one more entry is claimed, so a caller holds at most two;
    the check and the claim are one statement in one transaction (two concurrent
    prefetches of one annotator cannot claim two more).

    Returns
    -------
    LeasedItem or None
        None when nothing is waiting.
    """
    dialect = db.engine.dialect
    params = lease_params(dialect, annotator, lease_seconds, now, besides)
    # Raw DB-API statements: this is the hot path, and SQLAlchemy's per-statement
    # overhead would be most of its cost (see bench/queue_ops.py).
    if dialect.name == "postgresql":
        statements = PG_LEASE_PREFETCH if besides is not None else PG_LEASE
        try:
            with _pg_autocommit(db) as conn:
                with conn.pipeline():  # one round trip, one implicit transaction
                    conn.execute(statements[0], params)
                    cur = conn.execute(statements[1], params)
                row = cur.fetchone()
        except dialect.loaded_dbapi.Error as exc:
            raise StoreError(f"queue database error: {exc}") from exc
    else:
        with db.write_turn(), _raw_transaction(db) as cur:
            cur.execute(_SQLITE_LEASE if besides is None else _SQLITE_LEASE_BESIDES, params)
            row = cur.fetchone()
    return None if row is None else leased_item(dialect, row)


def lease_params(
    dialect: Dialect,
    annotator: str,
    lease_seconds: float,
    now: datetime | None,
    besides: int | None,
) -> dict[str, Any]:
    """The parameters of the lease statements (checked: ``lease_seconds`` must be positive)."""
    if lease_seconds <= 0:
        raise QueueError(f"lease_seconds must be positive, got {lease_seconds}")
    now = _utc(now)
    return {
        "annotator": annotator,
        "now": bind_time(dialect, now),
        "expires": bind_time(dialect, now + timedelta(seconds=lease_seconds)),
        "besides": besides,
    }


def leased_item(dialect: Dialect, row: Sequence[Any]) -> LeasedItem:
    """The :class:`LeasedItem` of a row returned by the lease statement."""
    return LeasedItem(
        entry_id=row[0],
        item_id=row[1],
        cycle_id=row[2],
        strategy=row[3],
        score=row[4],
        rank=row[5],
        annotator=row[6],
        lease_expires=read_time(dialect, row[7]),
        attempts=row[8],
        item_row=row[9],
        item_kind=row[10],
        item_text=row[11],
    )


def submit(
    db: Database,
    entry_id: int,
    annotator: str,
    label: str | None,
    *,
    classes: Sequence[str],
    idempotency_key: str | None = None,
    status: LabelStatus | str = LabelStatus.VERIFIED,
    source: LabelSource | str = LabelSource.HUMAN,
    now: datetime | None = None,
    seconds: float | None = None,
) -> Label:
    """Write ``annotator``'s label for queue entry ``entry_id`` and mark the entry done.

    One transaction: the label (with the entry's cycle, strategy and score as provenance)
    and the entry's ``done`` status are written together or not at all. The submit is
    accepted while ``annotator`` is the entry's holder, even when the lease has expired, as
    long as nobody else has taken the item since (no work is lost). A retry with the same
    ``idempotency_key`` returns the label written the first time. With overlap (the item
    has several slots) the label is one vote: see
    :func:`exemplar.store.consensus.record_vote` for how it is written and settled.
    ``seconds`` is the time the annotator spent on the item (the labeling app's timer);
    without it, the time from the entry's lease to this submit is recorded
    (:func:`label_seconds`).

    Raises
    ------
    LeaseLostError
        Another annotator has taken (or already labeled) the entry. Nothing is written.
    QueueError
        The entry does not exist, was never leased to ``annotator``, is already done, or
        ``idempotency_key`` was used for another item. Nothing is written.
    UnknownClassError
        ``label`` is not one of ``classes``. Nothing is written.
    """
    now = _utc(now)
    check_label_seconds(seconds)
    if label is not None:
        validate_class(label, classes)  # fail before taking the write lock
    try:
        with db.write_turn():
            if db.dialect == "postgresql" and label is not None:
                params = pg_submit_params(
                    entry_id, annotator, label, idempotency_key, status, source, now, seconds
                )
                with _pg_autocommit(db) as conn:
                    row = conn.execute(PG_SUBMIT, params).fetchone()
                if row is not None:
                    return submitted_label(row, params)
            return _submit(
                db,
                entry_id,
                annotator,
                label,
                classes,
                idempotency_key,
                status,
                source,
                now,
                seconds=seconds,
            )
    except db.engine.dialect.loaded_dbapi.Error as exc:
        raise StoreError(f"queue database error: {exc}") from exc


def submit_in_transaction(
    db: Database,
    entry_id: int,
    annotator: str,
    label: str | None,
    *,
    classes: Sequence[str],
    idempotency_key: str | None = None,
    status: LabelStatus | str = LabelStatus.VERIFIED,
    source: LabelSource | str = LabelSource.HUMAN,
    now: datetime | None = None,
    on_write: Callable[[Connection, Label], None] | None = None,
    seconds: float | None = None,
) -> Label:
    """:func:`submit` without PostgreSQL's one-statement path: every case, in one transaction.

    The async hot path (:mod:`exemplar.store.pg_async`) calls it when its one statement
    wrote nothing (a retry, an overlap vote, or an error to report). ``on_write`` is called
    with the transaction's connection and the label once the label is written and before
    the entry is marked done (not on a retry that returns the first label): what it writes
    commits with the label, and what it raises rolls the whole submit back
    (:func:`exemplar.store.annotations.submit_objects` writes an item's objects so).
    """
    check_label_seconds(seconds)
    if label is not None:
        validate_class(label, classes)
    try:
        with db.write_turn():
            return _submit(
                db,
                entry_id,
                annotator,
                label,
                classes,
                idempotency_key,
                status,
                source,
                _utc(now),
                on_write,
                seconds,
            )
    except db.engine.dialect.loaded_dbapi.Error as exc:
        raise StoreError(f"queue database error: {exc}") from exc


def pg_submit_params(
    entry_id: int,
    annotator: str,
    label: str,
    idempotency_key: str | None,
    status: LabelStatus | str,
    source: LabelSource | str,
    now: datetime | None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """The parameters of :data:`PG_SUBMIT` (``label`` already checked against the classes)."""
    return {
        "seconds": seconds,
        "entry_id": entry_id,
        "annotator": annotator,
        "label": label,
        "status": str(status),
        "source": str(source),
        "idempotency_key": idempotency_key,
        "created_at": utcnow(),
        "now": _utc(now),
    }


def submitted_label(row: Sequence[Any], params: dict[str, Any]) -> Label:
    """The :class:`Label` written by :data:`PG_SUBMIT` (its returned row and parameters)."""
    label_id, item_id, cycle_id, strategy, score, seconds = row
    return Label(
        id=int(label_id),
        item_id=item_id,
        label=params["label"],
        status=params["status"],
        source=params["source"],
        annotator=params["annotator"],
        cycle_id=cycle_id,
        strategy=strategy,
        score=score,
        idempotency_key=params["idempotency_key"],
        created_at=params["created_at"],
        seconds=seconds,
    )


def _submit(
    db: Database,
    entry_id: int,
    annotator: str,
    label: str | None,
    classes: Sequence[str],
    idempotency_key: str | None,
    status: LabelStatus | str,
    source: LabelSource | str,
    now: datetime,
    on_write: Callable[[Connection, Label], None] | None = None,
    seconds: float | None = None,
) -> Label:
    # A Core transaction, not an ORM session: this runs inside the queue's write turn,
    # and the session's unit-of-work bookkeeping cost more than the two writes.
    with db.engine.begin() as session:
        dialect = session.dialect
        cur = session.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(_ENTRY_FOR_UPDATE[dialect.name], {"entry_id": entry_id})
            entry = cur.fetchone()
            if entry is None:
                raise QueueError(f"no queue entry {entry_id}")
            item_id, cycle_id, strategy, score, entry_status, holder, n_slots, leased_at = entry
            if entry_status == _DONE or holder != annotator:
                if idempotency_key is not None:
                    # A retry of a submit that went through: hand back the first label.
                    found = (
                        session.execute(
                            select(Label.__table__).where(
                                Label.__table__.c.idempotency_key == idempotency_key
                            )
                        )
                        .mappings()
                        .first()
                    )
                    if found is not None and found["item_id"] == item_id:
                        return Label(**found)
                if holder is None:
                    raise QueueError(f"queue entry {entry_id} is not leased to {annotator!r}")
                if holder != annotator:
                    raise LeaseLostError(
                        f"queue entry {entry_id} is now held by {holder!r}, not {annotator!r} "
                        "(the lease expired and the item was reassigned); the label was not saved"
                    )
                raise QueueError(f"queue entry {entry_id} was already submitted by {annotator!r}")
            if seconds is None and entry_status == _LEASED:  # the lease to this submit
                seconds = label_seconds(read_time(dialect, leased_at), now)
            if n_slots > 1:  # overlap: one vote among several annotators' (consensus.py)
                written = record_vote(
                    session,
                    entry_id=entry_id,
                    item_id=item_id,
                    cycle_id=cycle_id,
                    annotator=annotator,
                    label=label,
                    status=str(status),
                    classes=classes,
                    source=str(source),
                    strategy=strategy,
                    score=score,
                    idempotency_key=idempotency_key,
                    seconds=seconds,
                )
            else:
                written = add_label(
                    session,
                    item_id,
                    label,
                    classes=classes,
                    source=source,
                    status=status,
                    annotator=annotator,
                    cycle_id=cycle_id,
                    strategy=strategy,
                    score=score,
                    idempotency_key=idempotency_key,
                    seconds=seconds,
                )
            if written.item_id != item_id:
                raise QueueError(
                    f"idempotency key {idempotency_key!r} was already used for another item"
                )
            if on_write is not None:
                on_write(session, written)
            cur.execute(
                _ENTRY_DONE[dialect.name], {"entry_id": entry_id, "now": bind_time(dialect, now)}
            )
        finally:
            cur.close()
    return written


def skip(
    db: Database,
    entry_id: int,
    annotator: str,
    *,
    now: datetime | None = None,
    requeue_after: int | None = None,
    park_seconds: float | None = None,
) -> None:
    """Give the entry back as ``skipped``: it is served again after every pending entry.

    Skipped entries are not dropped; among themselves they come back in the order they
    were skipped. With ``requeue_after=k`` (a never-ending stream feed, where pending
    entries keep arriving and "after every pending entry" would be never) the entry goes
    back to ``pending`` instead, ranked to be served after ``k`` other entries of its
    cycle and strategy: the next ``k`` waiting ones, or ones still to be queued at the
    following feed positions (ranks are feed positions there). When no other entry waits,
    the entry is *parked* (status ``leased`` to nobody) until :func:`unpark` wakes it after
    ``k`` new entries, so a lone skipped item is not served straight back. With
    ``park_seconds`` the park also ends when that time has passed (the lease expires and
    any annotator may take the entry), so a feed that stops still serves it; without, only
    :func:`unpark` wakes it.

    Raises
    ------
    LeaseLostError
        Another annotator holds the entry.
    QueueError
        The entry does not exist, was never leased to ``annotator``, or is done.
    """
    now = _utc(now)
    with db.write_turn(), db.engine.begin() as conn:
        status = _held_status(conn, entry_id, annotator)
        if requeue_after is not None:
            _requeue(conn, entry_id, requeue_after, now, park_seconds)
            return
        if status == _SKIPPED:
            return
        last = conn.execute(
            select(
                select(func.max(_Q.c.rank)).where(_Q.c.status == _PENDING).scalar_subquery(),
                select(func.max(_Q.c.rank)).where(_Q.c.status == _SKIPPED).scalar_subquery(),
            )
        ).one()
        rank = max((r for r in last if r is not None), default=-1) + 1
        conn.execute(
            update(_Q)
            .where(_Q.c.id == entry_id)
            .values(status=_SKIPPED, rank=rank, lease_expires=None, updated_at=now)
        )


def _requeue(
    conn: Connection, entry_id: int, after: int, now: datetime, park_seconds: float | None
) -> None:
    """Set the entry pending, ranked ``after`` feed positions past the next waiting one."""
    if after < 1:
        raise QueueError(f"requeue_after must be at least 1, got {after}")
    entry = conn.execute(select(_Q.c.cycle_id, _Q.c.strategy).where(_Q.c.id == entry_id)).one()
    same = (
        (_Q.c.cycle_id.is_(None) if entry.cycle_id is None else _Q.c.cycle_id == entry.cycle_id)
        & (_Q.c.strategy.is_(None) if entry.strategy is None else _Q.c.strategy == entry.strategy)
        & (_Q.c.id != entry_id)
    )
    base = conn.scalar(select(func.min(_Q.c.rank)).where(same, _Q.c.status == _PENDING))
    values: dict[str, Any] = {"status": _PENDING, "lease_expires": None, "updated_at": now}
    if base is None:
        # Nothing else waits: park the entry (leased to nobody) so it is not served straight
        # back; :func:`unpark` wakes it once ``after`` new entries came, or its park expires.
        base = conn.scalar(select(func.count()).where(same | (_Q.c.id == entry_id), _Q.c.slot == 0))
        expires = None if park_seconds is None else now + timedelta(seconds=park_seconds)
        values.update(status=_LEASED, annotator=None, lease_expires=expires)
    # Ties are served by id: entries queued after this one (higher ids) come after it.
    conn.execute(update(_Q).where(_Q.c.id == entry_id).values(rank=int(base) + after, **values))


def unpark(session: Session, cycle_id: int | None, strategy: str | None, position: int) -> int:
    """Return parked skipped entries (see :func:`skip` with ``requeue_after``) to ``pending``
    once an entry was queued at feed ``position`` just before their rank; returns how many.

    In the caller's transaction (the stream's, right after it queued an asked item).
    """
    same_cycle = _Q.c.cycle_id.is_(None) if cycle_id is None else _Q.c.cycle_id == cycle_id
    same_strategy = _Q.c.strategy.is_(None) if strategy is None else _Q.c.strategy == strategy
    result = session.execute(
        update(_Q)
        .where(
            same_cycle,
            same_strategy,
            _Q.c.status == _LEASED,
            _Q.c.annotator.is_(None),
            _Q.c.rank <= position + 1,
        )
        .values(status=_PENDING, lease_expires=None, updated_at=utcnow())
    )
    return int(cast(Any, result).rowcount or 0)


def release(db: Database, entry_id: int, annotator: str, *, now: datetime | None = None) -> bool:
    """Give a lease back: the entry returns to ``pending`` at its rank.

    Returns
    -------
    bool
        True if ``annotator`` held the entry (live or expired lease) and it was released,
        False if there was nothing of theirs to release (another annotator holds it, it is
        already waiting, or done).

    Raises
    ------
    QueueError
        The entry does not exist.
    """
    now = _utc(now)
    with db.write_turn(), db.engine.begin() as conn:
        result = conn.execute(
            update(_Q)
            .where(_Q.c.id == entry_id, _Q.c.status == _LEASED, _Q.c.annotator == annotator)
            .values(status=_PENDING, lease_expires=None, updated_at=now)
        )
        if result.rowcount == 1:
            return True
        if conn.scalar(select(_Q.c.id).where(_Q.c.id == entry_id)) is None:
            raise QueueError(f"no queue entry {entry_id}")
        return False


@dataclass(frozen=True)
class UndoneLabel:
    """What :func:`undo_last` did: which label it superseded and which entry it reopened."""

    entry_id: int
    item_id: int
    undone_label_id: int
    marker_label_id: int


def undo_last(
    db: Database,
    annotator: str,
    *,
    lease_seconds: float,
    now: datetime | None = None,
) -> UndoneLabel | None:
    """Take back ``annotator``'s newest human label that is still in force.

    History stays append-only: the label is superseded by a new row of status ``rejected``
    with no class (an *undo marker*), so the item has no current label any more, and its
    queue entry is leased to ``annotator`` again (their other live leases go back to
    ``pending``), so their next :func:`lease` returns that item. Repeated calls walk back
    through older labels. With overlap, each annotator undoes their own vote (the other
    annotators' votes stay); an item agreed or disputed through it has no current label
    until the vote is given again. Only labels whose cycle is still waiting for labels (state
    ``label``) can be undone: once the loop has trained on a label, it stays.

    Returns
    -------
    UndoneLabel or None
        None when there is nothing (left) to undo.
    """
    if lease_seconds <= 0:
        raise QueueError(f"lease_seconds must be positive, got {lease_seconds}")
    now = _utc(now)
    with db.write_turn(), db.session() as s:
        candidates = s.scalars(
            select(Label)
            .where(Label.annotator == annotator, Label.source == LabelSource.HUMAN.value)
            .order_by(Label.id.desc())
            .limit(200)
        )
        for row in list(candidates):
            if row.status == LabelStatus.REJECTED.value and row.label is None:
                continue  # an undo marker
            if (row.strategy or "").startswith("curation:"):
                continue  # a curation verdict (store/curation.py), undone there, not here
            slots = list(s.scalars(select(QueueEntry).where(_round(row.item_id, row.cycle_id))))
            entry = next((e for e in slots if e.annotator == annotator), None)
            if entry is not None and len(slots) > 1:
                # Overlap: hold the slot, then the item, as submit does (consensus.py).
                s.execute(select(_Q.c.id).where(_Q.c.id == entry.id).with_for_update())
                lock_item(s.connection(), row.item_id)
                s.refresh(entry)
            if _superseded(s, row, annotator, {e.annotator for e in slots}):
                continue  # undone, relabeled or reviewed since
            if entry is None or entry.status != _DONE or entry.annotator != annotator:
                return None
            if row.cycle_id is not None:
                cycle = s.get(Cycle, row.cycle_id)
                if cycle is None or cycle.state != CycleState.LABEL.value:
                    return None
            marker_id = (
                s.connection()
                .execute(
                    _INSERT_MARKER,
                    {
                        "item_id": row.item_id,
                        "label": None,
                        "status": LabelStatus.REJECTED.value,
                        "source": LabelSource.HUMAN.value,
                        "annotator": annotator,
                        "cycle_id": row.cycle_id,
                        "strategy": row.strategy,
                        "score": row.score,
                        "idempotency_key": None,
                        "created_at": now,
                    },
                )
                .scalar_one()
            )
            s.execute(
                update(_Q)
                .where(_Q.c.status == _LEASED, _Q.c.annotator == annotator, _Q.c.id != entry.id)
                .values(status=_PENDING, lease_expires=None, updated_at=now)
            )
            s.execute(
                update(_Q)
                .where(_Q.c.id == entry.id)
                .values(
                    status=_LEASED,
                    lease_expires=now + timedelta(seconds=lease_seconds),
                    updated_at=now,
                )
            )
            return UndoneLabel(entry.id, row.item_id, row.id, int(marker_id))
    return None


_INSERT_MARKER = cast(Table, Label.__table__).insert().returning(cast(Table, Label.__table__).c.id)


def _round(item_id: int, cycle_id: int | None) -> Any:
    """The queue slots of an item in a cycle."""
    return round_filter(_Q, item_id, cycle_id)


def _superseded(s: Session, row: Label, annotator: str, slot_annotators: set[str | None]) -> bool:
    """Whether a newer row of the item overrides ``row`` (``annotator``'s label).

    With overlap, the other slots' votes and the round's ``disputed`` row do not: each
    annotator undoes their own vote. Anything else newer (their own undo or relabel, a
    review, an import) does.
    """
    later = s.execute(
        select(Label.annotator, Label.status, Label.cycle_id, Label.strategy).where(
            Label.item_id == row.item_id, Label.id > row.id
        )
    ).all()
    for who, status, cycle_id, strategy in later:
        same_round = cycle_id == row.cycle_id and strategy != REVIEW_STRATEGY
        vote = who != annotator and who in slot_annotators
        dispute = who is None and status == LabelStatus.DISPUTED.value
        if not (same_round and (vote or dispute)):
            return True
    return False


def expire_leases(db: Database, now: datetime | None = None) -> int:
    """Return every entry whose lease expired at or before ``now`` to ``pending``.

    Not needed for correctness: :func:`lease` claims expired entries by itself, and
    :func:`queue_counts` counts them as pending. Use it for housekeeping.

    Returns
    -------
    int
        The number of entries returned to the queue.
    """
    with db.write_turn(), db.engine.begin() as conn:
        return _expire(conn, _utc(now))


def queue_counts(db: Database, now: datetime | None = None) -> dict[str, int]:
    """The number of entries per status: ``pending``, ``leased``, ``done``, ``skipped``.

    A lease that has expired counts as pending (the item is back in the queue).
    """
    now = _utc(now)
    effective = case(
        (
            (_Q.c.status == _LEASED) & (_Q.c.lease_expires <= now),
            _PENDING,
        ),
        else_=_Q.c.status,
    )
    counts = {status.value: 0 for status in QueueStatus}
    with db.read() as session:
        for status, n in session.execute(select(effective, func.count()).group_by(effective)):
            counts[str(status)] = counts.get(str(status), 0) + int(n)
    return counts


def pending_for_cycle(db: Database, cycle_id: int) -> int:
    """The number of the cycle's entries not yet labeled (pending, leased or skipped)."""
    with db.read() as session:
        n = session.scalar(
            select(func.count()).where(_Q.c.cycle_id == cycle_id, _Q.c.status != _DONE)
        )
    return int(n or 0)


def _expire(conn: Connection, now: datetime) -> int:
    """Return expired leases to ``pending`` (keeping the last holder in ``annotator``)."""
    expired = select(_Q.c.id).where(_Q.c.status == _LEASED, _Q.c.lease_expires <= now)
    if conn.dialect.name == "postgresql":
        # Never wait for a row another transaction is claiming or submitting.
        expired = expired.with_for_update(skip_locked=True)
    result = conn.execute(
        update(_Q)
        .where(_Q.c.id.in_(expired.scalar_subquery()), _Q.c.status == _LEASED)
        .values(status=_PENDING, lease_expires=None, updated_at=now)
    )
    return int(result.rowcount)


def _held_status(conn: Connection, entry_id: int, annotator: str) -> str:
    """The entry's status if ``annotator`` holds it (or held it last and nobody took it)."""
    row = conn.execute(
        select(_Q.c.status, _Q.c.annotator).where(_Q.c.id == entry_id).with_for_update()
    ).first()
    if row is None:
        raise QueueError(f"no queue entry {entry_id}")
    if row.annotator != annotator:
        if row.annotator is None:
            raise QueueError(f"queue entry {entry_id} is not leased to {annotator!r}")
        raise LeaseLostError(
            f"queue entry {entry_id} is held by {row.annotator!r}, not {annotator!r}"
        )
    if row.status == _DONE:
        raise QueueError(f"queue entry {entry_id} is already labeled")
    return str(row.status)


@contextmanager
def _pg_autocommit(db: Database) -> Iterator[Any]:
    """A pooled psycopg connection in autocommit mode (PostgreSQL's hot path).

    One statement is then its own transaction, committed in the same round trip, and the
    statements of a pipeline are one implicit transaction, committed at its sync: one round
    trip (psycopg's own transaction handling syncs the pipeline after ``BEGIN`` and again
    at the end: three round trips). The connection goes back to the pool as it came (not
    in autocommit mode, no transaction open). Driver errors propagate.
    """
    raw = db.engine.raw_connection()
    try:
        conn = raw.dbapi_connection
        assert conn is not None
        conn.autocommit = True
        try:
            yield conn
        finally:
            if not conn.closed:
                conn.autocommit = False
    except BaseException:
        if raw.dbapi_connection is not None and raw.dbapi_connection.closed:
            raw.invalidate()
        raise
    finally:
        raw.close()


@contextmanager
def _raw_transaction(db: Database) -> Iterator[Any]:
    """A DB-API cursor in one transaction (``BEGIN IMMEDIATE`` on SQLite, as db.py does).

    Driver errors (such as SQLite's "database is locked" after the busy timeout) are raised
    as :class:`~exemplar.errors.StoreError`.
    """
    raw = db.engine.raw_connection()
    try:
        conn = raw.dbapi_connection
        assert conn is not None
        cur = conn.cursor()
        try:
            if db.engine.dialect.name == "sqlite":
                cur.execute("BEGIN IMMEDIATE")
            yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()
    except db.engine.dialect.loaded_dbapi.Error as exc:
        raise StoreError(f"queue database error: {exc}") from exc
    finally:
        raw.close()


_RETURN_LEASE = (
    "RETURNING id, item_id, cycle_id, strategy, score, rank, annotator, lease_expires, attempts, "
    + ", ".join(
        f"(SELECT {column} FROM items WHERE items.id = queue.item_id)"
        for column in ("row", "kind", "text")
    )
)
_SET_LEASE = f"""
SET status = '{_LEASED}',
    attempts = CASE WHEN status = '{_LEASED}' AND annotator = :annotator
                         AND lease_expires > :now
                    THEN attempts ELSE attempts + 1 END,
    annotator = :annotator,
    lease_expires = :expires,
    updated_at = :now
"""
_OWN_LIVE_LEASE = f"""
SELECT id FROM queue
WHERE status = '{_LEASED}' AND annotator = :annotator AND lease_expires > :now
ORDER BY rank, id LIMIT 1
"""
# A candidate ``c`` is not a slot of an item whose other slot the caller holds or labeled
# (an index probe on uq_queue_item_cycle_slot; ``{same}`` is the None-safe equality).
_NOT_MINE = """NOT EXISTS (SELECT 1 FROM queue AS o
                WHERE o.item_id = c.item_id AND o.cycle_id {same} c.cycle_id
                  AND o.id <> c.id AND o.annotator = :annotator{fence})"""
_NOT_MINE_SQLITE = _NOT_MINE.format(same="IS", fence="")
# PostgreSQL turns a plain NOT EXISTS into an anti-join, and for the pending branch chose to
# read the whole queue once for the caller's rows (no index on annotator): 1.3 ms of a
# 1.5 ms lease over 15,000 entries. OFFSET 0 keeps it a subplan probed per candidate.
_NOT_MINE_PG = _NOT_MINE.format(same="IS NOT DISTINCT FROM", fence=" OFFSET 0")

# SQLite: one statement (writers are serialised by BEGIN IMMEDIATE). The caller's own live
# lease first; else the lowest rank among pending entries and expired leases (each branch
# is an ordered walk of ix_queue_status_rank); else the earliest skipped entry.
_SQLITE_LEASE = f"""
UPDATE queue {_SET_LEASE}
WHERE id = COALESCE(
    ({_OWN_LIVE_LEASE}),
    (SELECT id FROM (
        SELECT * FROM (SELECT id, rank FROM queue AS c
                       WHERE status = '{_PENDING}' AND {_NOT_MINE_SQLITE}
                       ORDER BY rank, id LIMIT 1)
        UNION ALL
        SELECT * FROM (SELECT id, rank FROM queue AS c
                       WHERE status = '{_LEASED}' AND lease_expires <= :now
                         AND {_NOT_MINE_SQLITE}
                       ORDER BY rank, id LIMIT 1)
     ) ORDER BY rank, id LIMIT 1),
    (SELECT id FROM queue AS c WHERE status = '{_SKIPPED}' AND {_NOT_MINE_SQLITE}
     ORDER BY rank, id LIMIT 1)
)
{_RETURN_LEASE}
"""

# PostgreSQL: one lease call at a time per annotator (two tabs must not get two items);
# expired leases go back to pending without waiting on rows other transactions hold; then
# claim with FOR UPDATE SKIP LOCKED, so concurrent claimers never wait on or share a row.
# A lease commits without waiting for the WAL flush (synchronous_commit off, this
# transaction only): that flush (an fsync, ~4 ms here) was most of a lease's time, and a
# lease lost in a server crash is harmless: the item is served again, and its holder's
# submit is refused (nothing acknowledged is lost). Submits keep the durable commit.
# The lock and the expiry are one statement; the claim is a second one, so that its
# snapshot is taken after the lock is granted (READ COMMITTED: one snapshot per statement).
_PG_LOCK_AND_EXPIRE = pyformat(f"""
WITH expired AS (
    UPDATE queue SET status = '{_PENDING}', lease_expires = NULL, updated_at = :now
    WHERE id IN (SELECT id FROM queue WHERE status = '{_LEASED}' AND lease_expires <= :now
                 FOR UPDATE SKIP LOCKED)
    RETURNING id
)
SELECT pg_advisory_xact_lock(hashtextextended(:annotator, 0)),
       set_config('synchronous_commit', 'off', true),
       (SELECT COUNT(*) FROM expired)
""")
_PG_LEASE = pyformat(f"""
UPDATE queue {_SET_LEASE}
WHERE id = COALESCE(
    ({_OWN_LIVE_LEASE} FOR UPDATE),
    (SELECT id FROM queue AS c WHERE status = '{_PENDING}' AND {_NOT_MINE_PG}
     ORDER BY rank, id LIMIT 1 FOR UPDATE OF c SKIP LOCKED),
    (SELECT id FROM queue AS c WHERE status = '{_SKIPPED}' AND {_NOT_MINE_PG}
     ORDER BY rank, id LIMIT 1 FOR UPDATE OF c SKIP LOCKED)
)
{_RETURN_LEASE}
""")


#: The first branch of a prefetch: the caller's live lease other than ``:besides``.
_OTHER_LIVE_LEASE = _OWN_LIVE_LEASE.replace(
    "lease_expires > :now", "lease_expires > :now AND id <> :besides"
)
_SQLITE_LEASE_BESIDES = _SQLITE_LEASE.replace(_OWN_LIVE_LEASE, _OTHER_LIVE_LEASE, 1)
_PG_LEASE_BESIDES = _PG_LEASE.replace(pyformat(_OWN_LIVE_LEASE), pyformat(_OTHER_LIVE_LEASE), 1)
assert ":besides" in _SQLITE_LEASE_BESIDES and "%(besides)s" in _PG_LEASE_BESIDES
#: PostgreSQL's lease (and prefetch): sent in one pipeline on an autocommit connection,
#: without ``BEGIN``: statements up to the pipeline's sync run as one implicit transaction,
#: committed at the sync or rolled back as a whole if one fails (PostgreSQL's protocol,
#: "Pipelining"). The last statement returns the leased row.
PG_LEASE = (_PG_LOCK_AND_EXPIRE, _PG_LEASE)
PG_LEASE_PREFETCH = (_PG_LOCK_AND_EXPIRE, _PG_LEASE_BESIDES)

#: PostgreSQL's submit in one statement (its own transaction, committed durably): lock the
#: entry if ``:annotator`` holds it, it is not done, and its item has no other slot (no
#: overlap); write the label; mark the entry done. It returns the label's id and
#: provenance, or no row when it wrote nothing: a retry, an overlap vote, an idempotency
#: key used before, or an error; :func:`submit_in_transaction` then handles the case. A
#: concurrent lease that takes the entry first is waited for (``FOR UPDATE``), and the
#: entry's holder is checked again on its new version.
PG_SUBMIT = pyformat(f"""
WITH entry AS (
    SELECT q.id, q.item_id, q.cycle_id, q.strategy, q.score,
           CASE WHEN q.status = '{_LEASED}'
                 AND q.updated_at BETWEEN :now - interval '{MAX_LABEL_SECONDS} seconds' AND :now
                THEN EXTRACT(EPOCH FROM (:now - q.updated_at)) END AS waited
    FROM queue AS q
    WHERE q.id = :entry_id AND q.status <> '{_DONE}' AND q.annotator = :annotator
      AND NOT EXISTS (SELECT 1 FROM queue AS s WHERE s.item_id = q.item_id
                      AND s.cycle_id IS NOT DISTINCT FROM q.cycle_id AND s.id <> q.id)
    FOR UPDATE OF q
), written AS (
    INSERT INTO labels (item_id, label, status, source, annotator, cycle_id, strategy, score,
                        idempotency_key, created_at, seconds)
    SELECT item_id, :label, :status, :source, :annotator, cycle_id, strategy, score,
           :idempotency_key, :created_at,
           COALESCE(CAST(:seconds AS double precision), NULLIF(waited, 0)) FROM entry
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, item_id, cycle_id, strategy, score, seconds
), done AS (
    UPDATE queue SET status = '{_DONE}', lease_expires = NULL, updated_at = :now
    WHERE id = (SELECT id FROM entry) AND EXISTS (SELECT 1 FROM written)
    RETURNING id
)
SELECT written.id, written.item_id, written.cycle_id, written.strategy, written.score,
       written.seconds
FROM written, done
""")

_ENQUEUE = f"""
INSERT INTO queue (item_id, cycle_id, slot, strategy, score, rank, status, annotator,
                   lease_expires, attempts, created_at, updated_at)
VALUES (:item_id, :cycle_id, :slot, :strategy, :score, :rank, '{_PENDING}', NULL, NULL, 0,
        :now, :now)
ON CONFLICT (item_id, cycle_id, slot) DO NOTHING
"""
_ENQUEUE_SQL = {"sqlite": _ENQUEUE, "postgresql": pyformat(_ENQUEUE)}

# The entry, and how many slots its item has in its cycle (1 unless queued with overlap).
_ENTRY_SQL = (
    "SELECT item_id, cycle_id, strategy, score, status, annotator, "
    "(SELECT COUNT(*) FROM queue AS s WHERE s.item_id = queue.item_id "
    "AND s.cycle_id {same} queue.cycle_id), updated_at FROM queue WHERE id = :entry_id"
)
_DONE_SQL = (
    f"UPDATE queue SET status = '{_DONE}', lease_expires = NULL, updated_at = :now "
    "WHERE id = :entry_id"
)
#: By dialect. PostgreSQL locks the entry row; on SQLite, BEGIN IMMEDIATE already holds
#: the database's write lock.
_ENTRY_FOR_UPDATE = {
    "sqlite": _ENTRY_SQL.format(same="IS"),
    "postgresql": pyformat(_ENTRY_SQL.format(same="IS NOT DISTINCT FROM") + " FOR UPDATE OF queue"),
}
_ENTRY_DONE = {"sqlite": _DONE_SQL, "postgresql": pyformat(_DONE_SQL)}
