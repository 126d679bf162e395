"""Refill the labeling queue from the newest stored scores while the next model trains.

The labeling server's worker (:mod:`exemplar.server.worker`) calls :func:`refill_queue`
so annotators never run out of items while a model trains; ``exemplar refill`` calls it
from the command line. Entries are added with no cycle, and their strategy name is
``"stale:<strategy>"`` (:data:`~exemplar.store.pool.STALE_PREFIX`): the queue entries and
the labels written for them say they came from an older model's scores. When the next
model's batch is enqueued, the ``select`` step deletes every stale entry still pending and
never leased, in the same transaction, so stale scores are never served as fresh.

The ranking is the project's registered strategy (``[selection] strategy``) through the
same :func:`~exemplar.loop.selection.query_batch` the loop selects with, on the arrays the
newest selected model's ``score`` step stored. A strategy that reads arrays that were not
stored (stochastic samples, which scoring reduces, or embeddings the model did not give)
falls back to ``margin`` on the stored probabilities; before the first model, the refill
draws at random. The label budget is a hard limit here too
(:func:`~exemplar.store.pool.budget_room`, checked in the enqueueing transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, func, select

from exemplar.loop.context import LoopContext
from exemplar.loop.scoring import load_scored
from exemplar.loop.selection import query_batch
from exemplar.predictions import Predictions
from exemplar.store.labels import current_labels
from exemplar.store.pool import STALE_PREFIX, PoolIndex, budget_room, still_free
from exemplar.store.queue import enqueue
from exemplar.store.schema import (
    OPEN_QUEUE_STATUSES,
    Cycle,
    CycleState,
    ModelVersion,
    QueueEntry,
    QueueStatus,
    Split,
    utcnow,
)
from exemplar.strategies import RandomSampling, Strategy, get_strategy

__all__ = ["FALLBACK_STRATEGY", "Refill", "has_waiting_entries", "refill_queue", "waiting"]

#: The strategy a refill ranks with when the project's strategy reads arrays not stored.
FALLBACK_STRATEGY = "margin"
#: Mixed into the refill's random seed (with the project seed and the label count).
_REFILL_SEED = 0x57A1E


@dataclass(frozen=True)
class Refill:
    """What :func:`refill_queue` did.

    Attributes
    ----------
    added : int
        Queue entries (slots) added; an item queued with overlap N adds N.
    strategy : str or None
        The entries' strategy name (``"stale:..."``), None when nothing was added.
    reason : str
        One line for people: what was added, or why nothing was.
    """

    added: int
    strategy: str | None
    reason: str


def waiting() -> ColumnElement[bool]:
    """Queue entries a lease could hand out now: pending, skipped, or with a lapsed lease."""
    return QueueEntry.status.in_((QueueStatus.PENDING, QueueStatus.SKIPPED)) | (
        (QueueEntry.status == QueueStatus.LEASED) & (QueueEntry.lease_expires <= utcnow())
    )


def has_waiting_entries(context: LoopContext) -> bool:
    """Whether any queue entry waits for an annotator (see :func:`waiting`)."""
    with context.db.read() as s:
        return s.scalar(select(QueueEntry.id).where(waiting()).limit(1)) is not None


def refill_queue(
    context: LoopContext,
    *,
    size: int | None = None,
    while_leased: bool = False,
    index: PoolIndex | None = None,
) -> Refill:
    """Enqueue up to ``size`` stale entries from the newest scores if no entry is open.

    Parameters
    ----------
    context : LoopContext
        The project (:class:`~exemplar.project.Project`).
    size : int, optional
        Items to add at most (default ``[selection] batch_size``); never more than the
        label budget allows, counting labeled items and every open queue entry.
    while_leased : bool, default=False
        Refill as soon as no entry *waits* (none pending, skipped or with a lapsed lease),
        even while annotators still hold leases, so the other annotators keep labeling
        instead of waiting for the last items of a batch. Without it, only when no entry
        is open at all.
    index : PoolIndex, optional
        A pool index to reuse between calls (it caches the pool's item list).

    Returns
    -------
    Refill
        Nothing is added once the project has stopped, while entries are open (or wait,
        with ``while_leased``), or when the label budget is spent.
    """
    cfg = context.config
    with context.db.read() as s:
        newest = s.scalar(select(Cycle).order_by(Cycle.number.desc()).limit(1))
        if newest is not None and newest.state == CycleState.STOPPED:
            return Refill(
                0, None, f"the project has stopped ({newest.stop_reason}); nothing to refill"
            )
        busy = s.scalar(
            select(func.count())
            .select_from(QueueEntry)
            .where(waiting() if while_leased else QueueEntry.status.in_(OPEN_QUEUE_STATUSES))
        )
        if busy:
            what = "wait for an annotator" if while_leased else "are open"
            return Refill(0, None, f"{busy} queue entries {what}; nothing to refill")
        budget = cfg.stopping.label_budget
        room = budget_room(s, budget, lock=False)
        versions = list(
            s.scalars(
                select(ModelVersion)
                .join(Cycle, Cycle.id == ModelVersion.cycle_id)
                .where(ModelVersion.selected)
                .order_by(Cycle.number.desc())
            )
        )
        labels = current_labels(s, splits=(Split.POOL, Split.TRAIN))
    want = min(size or cfg.selection.batch_size, room)
    if want < 1:
        return Refill(0, None, f"the label budget of {budget} is spent (labeled or queued)")
    predictions, strategy = _stored_ranking(context, versions)
    n_scored = predictions.n_items if predictions is not None else context.n_rows
    index = index or PoolIndex(context.db)
    pool_rows, pool_ids = index.free(n_scored, context.n_rows)
    if pool_rows.size == 0:
        return Refill(0, None, "the pool is exhausted: every item is labeled or queued")
    labeled_rows = np.asarray([c.row for c in labels], dtype=np.int64)
    y = np.asarray([c.label for c in labels], dtype=object).astype(str)
    scored = labeled_rows < n_scored
    if np.unique(y[scored]).size < 2 and not strategy.cold_start:
        predictions, strategy = None, RandomSampling()  # labels were undone since the model
    selection = query_batch(
        predictions,
        strategy,
        pool_rows,
        labeled_rows[scored],
        min(want, pool_rows.size),
        y_labeled=y[scored],
        random_state=np.random.default_rng([cfg.project.seed, len(labels), _REFILL_SEED]),
    )
    name = f"{STALE_PREFIX}{selection.strategy}"
    position = np.searchsorted(pool_rows, selection.indices)
    random = selection.strategy == RandomSampling.name
    entries = [
        (int(pool_ids[p]), name, None if random else float(score))
        for p, score in zip(position, selection.scores, strict=True)
    ]
    with context.db.session() as s:
        free = still_free(s, entries)
        free = free[: budget_room(s, budget)]
        added = enqueue(s, None, free, overlap=cfg.oracle.overlap)
    return Refill(added, name if added else None, f"queued {added} entries ({name})")


def _stored_ranking(
    context: LoopContext, versions: list[ModelVersion]
) -> tuple[Predictions | None, Strategy]:
    """The newest stored scores and the strategy that can rank with them.

    The project's strategy when every array it reads is stored for that model version,
    else :data:`FALLBACK_STRATEGY`; random sampling (no predictions) before any model.
    """
    arrays, sel = context.arrays, context.config.selection
    for version in versions:
        if not arrays.exists(f"proba-{version.version}"):
            continue  # scores pruned or lost: an older model's, else random
        predictions = load_scored(arrays, version.version).predictions
        stored = {"proba"} | {
            kind for kind in ("embeddings", "samples") if getattr(predictions, kind) is not None
        }
        strategy = get_strategy(sel.strategy, **sel.params)
        if not strategy.requires <= stored:
            strategy = get_strategy(FALLBACK_STRATEGY)
        return predictions, strategy
    return None, RandomSampling()
