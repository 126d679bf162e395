"""Several annotators per item (overlap), their consensus, disputes and reviewers' decisions.

With ``[oracle] overlap = N`` every queued item has N slots: N queue entries of one item and
cycle, ``slot`` 0..N-1 (:func:`exemplar.store.queue.enqueue`). Each slot is leased, skipped,
released and undone like any entry, and one annotator never holds or labels two slots of an
item. Each annotator's label (a *vote*) is a row of the label history, with provenance:

* a vote that leaves slots of the item open is written ``proposed`` (a rejection of the
  model's proposal stays ``rejected``), so nothing trains on a half-labeled item;
* the vote that completes the item is compared with the newest vote of every other slot's
  annotator. If all agree (same class, same verdict), it is written with its own status:
  the agreed label is the item's current label and the loop uses it like any other. If
  not, it is written like an open vote and followed by a ``disputed`` row without a class:
  the item has no current label (it is not trained on) until a reviewer decides;
* :func:`review_item` appends the reviewer's decision (``source=human``, the reviewer as
  ``annotator``, ``strategy="review"``); the votes stay in the history.

The loop's batch is labeled once every slot is done, that is once every item is agreed or
disputed, so a dispute never stalls the loop; a disputed item joins training once resolved.

Votes of one item are serialized, so exactly one submit completes the item: SQLite writers
are serialized anyway, and on PostgreSQL :func:`lock_item` takes a transaction-level
advisory lock on the item (after the caller has locked its own queue entry row).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, select, text
from sqlalchemy.orm import Session

from exemplar.errors import NothingToReviewError, ReviewError
from exemplar.store.labels import add_label
from exemplar.store.schema import Item, Label, LabelSource, LabelStatus, QueueEntry, QueueStatus

__all__ = [
    "REVIEW_STRATEGY",
    "Vote",
    "describe_votes",
    "disputed_votes",
    "is_open_vote",
    "lock_item",
    "record_vote",
    "review_item",
    "round_filter",
]

#: The ``strategy`` of label rows written by a reviewer's decision.
REVIEW_STRATEGY = "review"

_Q = cast(Table, QueueEntry.__table__)
_L = cast(Table, Label.__table__)
_VERIFIED = LabelStatus.VERIFIED.value
_REJECTED = LabelStatus.REJECTED.value
_PROPOSED = LabelStatus.PROPOSED.value
_DISPUTED = LabelStatus.DISPUTED.value
#: Second key of the PostgreSQL advisory lock on an item (two-int key space).
_ITEM_LOCK_SPACE = 0x0E7A


@dataclass(frozen=True)
class Vote:
    """One annotator's newest label of an item in a round; ``verdict`` is verified/rejected."""

    annotator: str
    label: str | None
    verdict: str
    label_id: int


def is_open_vote(status: str, source: str) -> bool:
    """Whether a current label is an overlap vote still waiting for the item's other slots."""
    return status == _PROPOSED and source == LabelSource.HUMAN.value


def _verdict(status: str) -> str:
    """What a vote meant: an open vote is written ``proposed`` but says ``verified``."""
    return _VERIFIED if status in (_PROPOSED, _VERIFIED) else status


def round_filter(table: Table, item_id: int, cycle_id: int | None) -> Any:
    """SQL condition: rows of ``table`` for the item in the cycle (None-safe)."""
    same_cycle = table.c.cycle_id.is_(None) if cycle_id is None else table.c.cycle_id == cycle_id
    return (table.c.item_id == item_id) & same_cycle


def lock_item(conn: Connection, item_id: int) -> None:
    """Serialize vote and undo writes on one item until commit (PostgreSQL; no-op on SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:item AS integer), CAST(:space AS integer))"),
            {"item": item_id, "space": _ITEM_LOCK_SPACE},
        )


def _is_vote() -> Any:
    """SQL condition: a human row that is neither an undo marker, a review decision nor a
    model's proposal (a reviewer's verdict on one names the reviewer)."""
    undo_marker = _L.c.label.is_(None) & (_L.c.status == _REJECTED)
    review = _L.c.strategy.is_not(None) & (_L.c.strategy == REVIEW_STRATEGY)
    proposal = _L.c.source == LabelSource.MODEL.value
    return (
        _L.c.annotator.is_not(None)
        & ~undo_marker
        & ~review
        & ~proposal
        & (_L.c.status != _DISPUTED)
    )


def _newest_votes(rows: Iterable[Any]) -> list[Vote]:
    newest: dict[str, Vote] = {}
    for row in rows:  # ordered by id: later rows win
        newest[row.annotator] = Vote(row.annotator, row.label, _verdict(row.status), row.id)
    return list(newest.values())


def record_vote(
    conn: Connection,
    *,
    entry_id: int,
    item_id: int,
    cycle_id: int | None,
    annotator: str,
    label: str | None,
    status: str,
    classes: Sequence[str],
    source: str,
    strategy: str | None,
    score: float | None,
    idempotency_key: str | None,
    seconds: float | None = None,
) -> Label:
    """Write ``annotator``'s vote for slot ``entry_id`` and settle the item if it completes it.

    Runs in the caller's transaction, which holds the entry (see the module docstring for
    what is written). Returns the vote's row.
    """
    lock_item(conn, item_id)
    others = conn.execute(
        select(_Q.c.status, _Q.c.annotator).where(
            round_filter(_Q, item_id, cycle_id), _Q.c.id != entry_id
        )
    ).all()
    complete = all(o.status == QueueStatus.DONE.value for o in others)
    disputed = False
    if complete:
        annotators = [o.annotator for o in others if o.annotator is not None]
        votes = _newest_votes(
            conn.execute(
                select(_L.c.id, _L.c.annotator, _L.c.label, _L.c.status)
                .where(round_filter(_L, item_id, cycle_id), _L.c.annotator.in_(annotators))
                .where(_is_vote())
                .order_by(_L.c.id)
            )
        )
        mine = (label, _verdict(status))
        disputed = any((v.label, v.verdict) != mine for v in votes)
    written_status = status
    if (not complete or disputed) and status == _VERIFIED:
        written_status = _PROPOSED
    kw: dict[str, Any] = {
        "classes": classes,
        "source": source,
        "cycle_id": cycle_id,
        "strategy": strategy,
        "score": score,
    }
    vote = add_label(
        conn,
        item_id,
        label,
        status=written_status,
        annotator=annotator,
        idempotency_key=idempotency_key,
        seconds=seconds,
        **kw,
    )
    if disputed and vote.item_id == item_id:
        add_label(conn, item_id, None, status=LabelStatus.DISPUTED, annotator=None, **kw)
    return vote


def disputed_votes(session: Session, disputes: Sequence[Label]) -> dict[int, list[Vote]]:
    """The votes behind each ``disputed`` row: item id → the newest vote per annotator."""
    if not disputes:
        return {}
    by_item = {d.item_id: d for d in disputes}
    rows = session.execute(
        select(_L.c.id, _L.c.item_id, _L.c.cycle_id, _L.c.annotator, _L.c.label, _L.c.status)
        .where(_L.c.item_id.in_(list(by_item)), _is_vote())
        .order_by(_L.c.id)
    ).all()
    out: dict[int, list[Vote]] = {}
    for item_id, dispute in by_item.items():
        mine = [
            r
            for r in rows
            if r.item_id == item_id and r.cycle_id == dispute.cycle_id and r.id < dispute.id
        ]
        out[item_id] = sorted(_newest_votes(mine), key=lambda v: v.label_id)
    return out


def describe_votes(votes: Sequence[Vote]) -> str:
    """``alice: 3, bob: rejected 3`` (for messages)."""
    return ", ".join(
        f"{v.annotator}: {v.label if v.verdict == _VERIFIED else f'{v.verdict} {v.label}'}"
        for v in votes
    )


def review_item(
    session: Session,
    item_id: int,
    reviewer: str,
    action: Literal["accept", "correct", "reject"],
    label: str | None,
    *,
    classes: Sequence[str],
) -> Label:
    """Append a reviewer's decision on the item's current label, in the caller's transaction.

    ``accept`` keeps the current label (verified); ``correct`` sets ``label``; ``reject``
    marks the current label rejected. A disputed item has no current label: ``accept``
    needs ``label``, one of the classes its annotators chose, and ``reject`` drops the item
    from training. The decision is a new row; nothing before it changes.

    Raises
    ------
    NothingToReviewError
        The item does not exist, or has neither a label nor a dispute.
    ReviewError
        The decision does not fit the item (a class missing or not among the votes), or
        the item's overlap votes are still open.
    UnknownClassError
        ``label`` is not one of ``classes``.
    """
    if session.get(Item, item_id) is None:
        raise NothingToReviewError(f"no item {item_id}")
    last = session.scalars(
        select(Label).where(Label.item_id == item_id).order_by(Label.id.desc()).limit(1)
    ).first()
    if last is None or (last.label is None and last.status != _DISPUTED):
        raise NothingToReviewError(f"item {item_id} has no label to review")
    if is_open_vote(last.status, last.source):
        raise ReviewError(f"item {item_id} is still being labeled: its overlap votes are open")
    chosen = last.label
    status = LabelStatus.VERIFIED
    if action == "correct":
        if label is None:
            raise ReviewError("action 'correct' needs a label")
        chosen = label
    elif action == "reject":
        status = LabelStatus.REJECTED
    elif last.status == _DISPUTED:
        votes = disputed_votes(session, [last])[item_id]
        choices = sorted({v.label for v in votes if v.verdict == _VERIFIED and v.label})
        if label not in choices:
            raise ReviewError(
                f"item {item_id} is disputed ({describe_votes(votes)}): accept one of its "
                f"labels ({', '.join(choices) or 'none'}) or correct it"
            )
        chosen = label
    elif label is not None and label != last.label:
        raise ReviewError(
            f"'accept' keeps the current label {last.label!r}; use 'correct' to set {label!r}"
        )
    return add_label(
        session,
        item_id,
        chosen,
        classes=classes,
        source=LabelSource.HUMAN,
        status=status,
        annotator=reviewer,
        strategy=REVIEW_STRATEGY,
    )
