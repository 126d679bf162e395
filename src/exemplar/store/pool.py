"""The unlabeled pool, stale queue entries and the label budget, as the database sees them.

* **The pool**: pool-split items with no label (of any status) and no open queue entry.
  A model's proposal (a label row whose ``source`` is ``model``, written by curation's
  propose step) does not count: a proposed item stays in the pool until a person answers.
  A *droppable* stale entry (below) does not take its item out of the pool: the next
  selection may pick the item again, and deletes the stale entry when it enqueues.
* **Stale entries**: queue entries the labeling server's worker added from an older
  model's scores while the next model trains (their strategy starts with
  :data:`STALE_PREFIX`, ``cycle_id`` is NULL; :mod:`exemplar.loop.refill`). Those still
  pending and never leased are deleted when a fresh batch is enqueued, in the same
  transaction (:func:`drop_stale_entries`), so stale scores are never served as fresh.
* **The label budget** is a hard limit (``[stopping]`` ``label_budget``): every path that
  queues keeps ``items labeled + items with an open queue entry <= budget``
  (:func:`budget_room`), in the transaction that enqueues. An item queued with overlap N
  has N slots, and counts once: the budget counts labeled items, as the ``label_budget``
  stopping criterion does. Since every label is written for an open queue entry, no label
  can then exceed the budget either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from sqlalchemy import delete, exists, func, select, text, union
from sqlalchemy.orm import Session, aliased

from exemplar.errors import ConfigError
from exemplar.store.annotations import objects_labeled
from exemplar.store.db import Database
from exemplar.store.schema import (
    OPEN_QUEUE_STATUSES,
    Item,
    Label,
    LabelSource,
    QueueEntry,
    QueueStatus,
    Split,
)

__all__ = [
    "NO_BUDGET",
    "STALE_PREFIX",
    "PoolIndex",
    "budget_room",
    "budget_spent",
    "drop_stale_entries",
    "droppable_stale",
    "free_pool",
    "pool_items",
    "still_free",
]

#: Strategy-name prefix of queue entries added from an older model's scores (no cycle).
STALE_PREFIX = "stale:"
#: The room :func:`budget_room` reports when there is no label budget.
NO_BUDGET = 2**31
#: Splits whose labels count against the label budget (the loop trains on these).
BUDGET_SPLITS = (Split.POOL, Split.TRAIN)
#: Key of the PostgreSQL advisory lock that serializes enqueueing transactions (one-key space).
_ENQUEUE_LOCK = 0x0E7A_B0D6

#: Label rows a person (or import, or simulation) wrote: a model's proposal is not a label.
_NOT_MODEL = Label.source != LabelSource.MODEL.value

Entry = tuple[int, str | None, float | None]
#: What a label budget counts: labeled items, or objects people (or simulation) labeled.
BudgetUnit = Literal["items", "objects"]
BUDGET_UNITS = ("items", "objects")


def pool_items(session: Session) -> tuple[np.ndarray, np.ndarray]:
    """Rows and ids (int64, ordered by row) of every pool-split item."""
    result = session.connection().execute(
        select(Item.row, Item.id).where(Item.split == Split.POOL).order_by(Item.row)
    )
    pairs = np.asarray(result.all(), dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def free_pool(
    session: Session, rows: np.ndarray, ids: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Of the pool items ``rows``/``ids`` (from :func:`pool_items`), those below row ``n_rows``
    with no label and no open queue entry (droppable stale entries do not count)."""
    taken = set(session.scalars(select(Label.item_id).where(_NOT_MODEL).distinct()))
    taken.update(
        session.scalars(
            select(QueueEntry.item_id).where(
                QueueEntry.status.in_(OPEN_QUEUE_STATUSES), ~droppable_stale()
            )
        )
    )
    keep = rows < n_rows
    if taken:
        keep &= ~np.isin(ids, np.fromiter(taken, dtype=np.int64, count=len(taken)))
    return rows[keep], ids[keep]


class PoolIndex:
    """:func:`pool_items` cached per committed item count, and the free pool read with it.

    Items are only ever added (by import), so the cache is refreshed when the count of
    committed rows changes; reading 10^5 items through the ORM every cycle cost ~0.7 s.

    Parameters
    ----------
    db : Database
        The project's database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def items(self, n_committed: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and ids of every pool-split item, for ``n_committed`` committed rows."""
        if self._cache is None or self._cache[0] != n_committed:
            with self.db.read() as s:
                rows, ids = pool_items(s)
            self._cache = (n_committed, rows, ids)
        return self._cache[1], self._cache[2]

    def free(self, n_rows: int, n_committed: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows (ascending) and ids of free pool items below row ``n_rows``."""
        rows, ids = self.items(n_committed)
        with self.db.read() as s:
            return free_pool(s, rows, ids, n_rows)


def droppable_stale() -> Any:
    """Stale entries still pending and never leased: they make way for a fresh batch.

    With overlap, an item's slots go together: none is dropped once any slot was leased.
    """
    touched = aliased(QueueEntry)
    return (
        QueueEntry.strategy.startswith(STALE_PREFIX, autoescape=True)
        & (QueueEntry.status == QueueStatus.PENDING)
        & (QueueEntry.attempts == 0)
        & ~exists().where(
            touched.item_id == QueueEntry.item_id,
            touched.cycle_id.is_(None),
            touched.attempts > 0,
        )
    )


def drop_stale_entries(session: Session) -> int:
    """Delete stale entries still pending and never leased (in the caller's transaction)."""
    result = session.execute(delete(QueueEntry).where(droppable_stale()))
    return int(getattr(result, "rowcount", 0) or 0)


def still_free(session: Session, entries: Sequence[Entry]) -> list[Entry]:
    """``entries`` minus items labeled or queued meanwhile (through a stale entry)."""
    if not entries:
        return list(entries)
    ids = [e[0] for e in entries]
    busy = set(session.scalars(select(Label.item_id).where(Label.item_id.in_(ids), _NOT_MODEL)))
    busy.update(
        session.scalars(
            select(QueueEntry.item_id).where(
                QueueEntry.item_id.in_(ids), QueueEntry.status.in_(OPEN_QUEUE_STATUSES)
            )
        )
    )
    return [e for e in entries if e[0] not in busy]


def budget_spent(
    session: Session, *, keep_droppable: bool = True, unit: BudgetUnit = "items"
) -> int:
    """What counts against the label budget, in ``unit``.

    ``items``: items labeled or with an open queue entry. Labeled means any label row (also
    a vote of an unfinished overlap item, a disputed or a rejected one) of a pool- or
    train-split item, except a model's proposal. With ``keep_droppable=False``, open entries that
    :func:`drop_stale_entries` would delete do not count (a selection that drops them
    before it enqueues).

    ``objects``: objects of pool- or train-split items whose current state is ``verified``
    or ``hard_negative`` from a person or simulation
    (:func:`exemplar.store.annotations.objects_labeled`). Queued items count nothing until
    labeled (how many objects they hold is not known), so a batch may overshoot the budget
    by its own objects.
    """
    if unit != "items":
        _check_unit(unit)
        return objects_labeled(session, splits=[str(s) for s in BUDGET_SPLITS])
    labeled = (
        select(Label.item_id)
        .join(Item, Item.id == Label.item_id)
        .where(Item.split.in_([str(s) for s in BUDGET_SPLITS]), _NOT_MODEL)
    )
    queued = select(QueueEntry.item_id).where(QueueEntry.status.in_(OPEN_QUEUE_STATUSES))
    if not keep_droppable:
        queued = queued.where(~droppable_stale())
    both = union(labeled, queued).subquery()  # UNION: each item once
    return int(session.scalar(select(func.count()).select_from(both)) or 0)


def budget_room(
    session: Session,
    budget: float | None,
    *,
    keep_droppable: bool = True,
    lock: bool = True,
    unit: BudgetUnit = "items",
) -> int:
    """How many more items (or objects, ``unit="objects"``) ``budget`` leaves (0 when spent).

    ``budget`` is None or ``inf`` when the project has none (then :data:`NO_BUDGET`). Call it in
    the transaction that enqueues, so the count and the insert see the same queue: on
    SQLite write transactions are serialized anyway; on PostgreSQL this takes an advisory
    lock held until commit, so two enqueuers (a server's learner and an ``exemplar
    refill``, even on other machines) never both spend the same room. ``lock=False``
    only estimates (in a read transaction; the enqueueing transaction checks again).
    """
    _check_unit(unit)
    if budget is None or budget == float("inf"):
        return NO_BUDGET
    conn = session.connection()
    if lock and conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ENQUEUE_LOCK})
    return max(0, int(budget) - budget_spent(session, keep_droppable=keep_droppable, unit=unit))


def _check_unit(unit: str) -> None:
    if unit not in BUDGET_UNITS:
        raise ConfigError(
            f"unknown label budget unit {unit!r}; expected one of {', '.join(BUDGET_UNITS)}"
        )
