"""Every annotator's standing vote per item, and the queue round each item was labeled in.

What relabeling reads (``[oracle] relabel = "activelab"``, ``exemplar relabel``): the
newest label each person gave each item (a later undo or rejection withdraws it; review
decisions, disputes and model proposals are not votes), and the round (item, cycle) of
the queue those votes belong to, so that another vote can be asked as one more slot of
that round (:func:`exemplar.store.queue.add_vote_slots`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from exemplar.store.consensus import REVIEW_STRATEGY
from exemplar.store.schema import (
    OPEN_QUEUE_STATUSES,
    Item,
    Label,
    LabelSource,
    LabelStatus,
    QueueEntry,
)

__all__ = ["ItemVotes", "item_votes"]


@dataclass
class ItemVotes:
    """One item's standing votes and its queue round.

    ``slots`` is the number of queue entries of the round ``(item_id, cycle_id)`` (0 when
    the votes came from outside the queue), ``open`` whether one of them still waits.
    """

    item_id: int
    row: int
    cycle_id: int | None
    votes: dict[str, str] = field(default_factory=dict)
    slots: int = 0
    open: bool = False


def item_votes(session: Session) -> list[ItemVotes]:
    """The standing human votes of every item that has one, by item id."""
    rows = session.execute(
        select(Label.item_id, Label.annotator, Label.label, Label.cycle_id, Item.row)
        .join(Item, Item.id == Label.item_id)
        .where(
            Label.source == LabelSource.HUMAN.value,
            Label.annotator.is_not(None),
            Label.status != LabelStatus.DISPUTED.value,
            Label.strategy.is_(None) | (Label.strategy != REVIEW_STRATEGY),
        )
        .order_by(Label.id)
    ).all()
    items: dict[int, ItemVotes] = {}
    for item_id, annotator, label, cycle_id, row in rows:  # later rows win
        entry = items.setdefault(item_id, ItemVotes(item_id, row, cycle_id))
        if label is None:  # an undo marker or a rejection withdraws the vote
            entry.votes.pop(str(annotator), None)
        else:
            entry.votes[str(annotator)] = str(label)
            entry.cycle_id = cycle_id
    voted = {i: v for i, v in items.items() if v.votes}
    if not voted:
        return []
    slots: dict[tuple[int, int | None], list[str]] = defaultdict(list)
    for item_id, cycle_id, status in session.execute(
        select(QueueEntry.item_id, QueueEntry.cycle_id, QueueEntry.status).where(
            QueueEntry.item_id.in_(list(voted))
        )
    ):
        slots[(item_id, cycle_id)].append(status)
    open_statuses = {str(s) for s in OPEN_QUEUE_STATUSES}
    for v in voted.values():
        statuses = slots.get((v.item_id, v.cycle_id), [])
        v.slots = len(statuses)
        v.open = any(s in open_statuses for s in statuses)
    return [voted[i] for i in sorted(voted)]
