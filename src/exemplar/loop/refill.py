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

Detection and segmentation projects rank with the utility their strategy stored while
scoring (a reduction of the objects), and each refilled image gets the newest model's
proposals, as a cycle's batch does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, func, select

from exemplar.loop.context import LoopContext
from exemplar.loop.scoring import load_scored
from exemplar.loop.selection import query_batch
from exemplar.loop.tasks import bind_files, predict_proposals, write_proposals
from exemplar.models import load_model
from exemplar.objects import Objects
from exemplar.predictions import Predictions
from exemplar.store.labels import current_labels
from exemplar.store.pool import NO_BUDGET, STALE_PREFIX, PoolIndex, budget_room, still_free
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
from exemplar.strategies import RandomSampling, ReducedSamples, Strategy, get_strategy

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
        with ``while_leased``), when the label budget is spent, or in a stream project
        (``[stream] enabled``), whose stream alone decides what is asked.
    """
    cfg = context.config
    if cfg.stream.enabled:
        return Refill(0, None, "a stream project: only the stream queues items")
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
        unit = cfg.stopping.budget_unit
        room = _items_room(budget_room(s, budget, lock=False, unit=unit), unit)
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
    objects = cfg.project.objects
    predictions, strategy, reduced, version = _stored_ranking(context, versions)
    n_scored = predictions.n_items if predictions is not None else context.n_rows
    index = index or PoolIndex(context.db)
    pool_rows, pool_ids = index.free(n_scored, context.n_rows)
    if pool_rows.size == 0:
        return Refill(0, None, "the pool is exhausted: every item is labeled or queued")
    labeled_rows = np.asarray([c.row for c in labels], dtype=np.int64)
    y = np.asarray([c.label for c in labels], dtype=object).astype(str)
    scored = labeled_rows < n_scored
    if not objects and np.unique(y[scored]).size < 2 and not strategy.cold_start:
        predictions, strategy = None, RandomSampling()  # labels were undone since the model
    selection = query_batch(
        predictions,
        strategy,
        pool_rows,
        labeled_rows[scored],
        min(want, pool_rows.size),
        y_labeled=None if objects else y[scored],
        random_state=np.random.default_rng([cfg.project.seed, len(labels), _REFILL_SEED]),
        reduced=reduced if strategy.requires & {"samples", "objects"} else None,
    )
    name = f"{STALE_PREFIX}{selection.strategy}"
    position = np.searchsorted(pool_rows, selection.indices)
    random = selection.strategy == RandomSampling.name
    entries = [
        (int(pool_ids[p]), name, None if random else float(score))
        for p, score in zip(position, selection.scores, strict=True)
    ]
    proposals = (
        _proposals(context, version, selection.indices, pool_ids[position])
        if objects and version is not None
        else {}
    )
    with context.db.session() as s:
        free = still_free(s, entries)
        free = free[: _items_room(budget_room(s, budget, unit=unit), unit)]
        added = enqueue(s, None, free, overlap=cfg.oracle.overlap)
        queued = {item_id for item_id, _, _ in free}
        if proposals:
            write_proposals(
                s,
                {i: found for i, found in proposals.items() if i in queued},
                context,
                model_version=None if version is None else version.version,
                cycle_id=None,
            )
    return Refill(added, name if added else None, f"queued {added} entries ({name})")


def _items_room(room: int, unit: str) -> int:
    """Items a refill may queue: the budget's room, or (a budget in objects) any while
    objects are left."""
    return room if unit == "items" or room < 1 else NO_BUDGET


def _proposals(
    context: LoopContext, version: ModelVersion, rows: np.ndarray, item_ids: np.ndarray
) -> dict[int, Objects]:
    """The stored model's objects on the refilled images (its frame), when its checkpoint
    is still there."""
    path = context.root / version.path
    if not path.exists() or not len(rows):
        return {}
    model = bind_files(
        context, load_model(version.recipe, path, device=context.config.model.device)
    )
    return predict_proposals(context, model, version.recipe, rows, item_ids)


def _stored_ranking(
    context: LoopContext, versions: list[ModelVersion]
) -> tuple[Predictions | None, Strategy, ReducedSamples | None, ModelVersion | None]:
    """The newest stored scores, the strategy that can rank with them, and their model.

    The project's strategy when every array it reads is stored for that model version,
    else :data:`FALLBACK_STRATEGY` (for objects: random); random sampling (no predictions)
    before any model.
    """
    arrays, sel = context.arrays, context.config.selection
    objects = context.config.project.objects
    first = "counts" if objects else "proba"
    for version in versions:
        if not arrays.exists(f"{first}-{version.version}"):
            continue  # scores pruned or lost: an older model's, else random
        scored = load_scored(arrays, version.version)
        predictions = scored.predictions
        stored = {first} | {
            kind for kind in ("embeddings", "samples") if getattr(predictions, kind) is not None
        }
        if objects and scored.reduced is not None:  # the utility the strategy stored
            stored |= {"samples", "objects", "views"}
        strategy = get_strategy(sel.strategy, **sel.params)
        if not strategy.requires <= stored:
            strategy = RandomSampling() if objects else get_strategy(FALLBACK_STRATEGY)
        return predictions, strategy, scored.reduced, version
    return None, RandomSampling(), None, None
