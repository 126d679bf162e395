"""Active learning over video frames: at most one frame per segment in a batch.

Neighbouring frames of a video look alike, so the frames a strategy ranks highest tend to
come in runs: a batch of ten may be ten consecutive frames of one moment. With
``[data] segment_frames = n`` (n > 0), the frames of each video are cut into segments of
``n`` consecutive frame indices (segment ``frame // n`` of its video), and a batch takes
the best-ranked frame of each segment before it takes a second frame of any segment
(:func:`one_per_segment`); only when there are fewer segments than the batch holds does it
fill up with the next best frames. Items that are not video frames are each a segment of
their own.

The ranking is the strategy's: its picks first, in its order, then the rest of the pool by
its scores (:func:`spread_picks`), so a batch-aware strategy's choice is kept wherever the
segments allow it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from exemplar.errors import StrategyError
from exemplar.store.db import id_chunks
from exemplar.store.schema import Item

__all__ = ["frame_segments", "one_per_segment", "spread_picks"]


def one_per_segment(scores: np.ndarray, segment_ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Positions of a batch that takes the best-scored item of each segment first.

    Parameters
    ----------
    scores : ndarray of float, shape (n,)
        Higher is preferred; NaN ranks last.
    segment_ids : ndarray of int, shape (n,)
        Each item's segment.
    batch_size : int
        Items wanted (at most ``n`` are returned).

    Returns
    -------
    ndarray of int64
        Positions into ``scores``: the best item of each segment, best segments first, then
        the remaining items by score, until ``batch_size``. Ties keep the input order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    segment_ids = np.asarray(segment_ids)
    if scores.ndim != 1 or segment_ids.shape != scores.shape:
        raise StrategyError(
            f"scores and segment ids must be 1-d and aligned, got {scores.shape} and "
            f"{segment_ids.shape}"
        )
    if batch_size < 0:
        raise StrategyError(f"batch_size must be non-negative, got {batch_size}")
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-keyed, kind="stable")
    _, first = np.unique(segment_ids[order], return_index=True)
    leaders = order[np.sort(first)]  # each segment's best, in score order
    if leaders.size >= batch_size:
        return leaders[:batch_size].astype(np.int64)
    chosen = np.zeros(scores.size, dtype=bool)
    chosen[leaders] = True
    rest = order[~chosen[order]]
    return np.concatenate([leaders, rest[: batch_size - leaders.size]]).astype(np.int64)


def spread_picks(
    picks: np.ndarray,
    pool_rows: np.ndarray,
    scores: np.ndarray,
    segment_ids: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    """A strategy's batch redone so that it holds at most one row per segment while
    segments last.

    ``picks`` are the strategy's rows (best first), ``scores`` its scores aligned with
    ``pool_rows`` (higher preferred) and ``segment_ids`` the pool rows' segments. The
    ranking is the picks in order, then the other pool rows by score; returns rows.
    """
    position = {int(r): p for p, r in enumerate(pool_rows)}
    rank = np.full(pool_rows.size, -np.inf)
    finite = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-finite, kind="stable")
    rank[order] = -np.arange(order.size, dtype=np.float64) - picks.size  # after every pick
    for k, row in enumerate(picks):
        rank[position[int(row)]] = -float(k)
    return pool_rows[one_per_segment(rank, segment_ids, batch_size)]


def frame_segments(s: Session, item_ids: Sequence[int], segment_frames: int) -> np.ndarray:
    """The segment of each item: ``(media_id, frame // segment_frames)`` for a video frame,
    a segment of its own (a negative id) for any other item; as int64 ids aligned with
    ``item_ids``."""
    if segment_frames < 1:
        raise StrategyError(f"segment_frames must be at least 1, got {segment_frames}")
    found: dict[int, tuple[int | None, int | None]] = {}
    for part in id_chunks([int(i) for i in item_ids]):
        rows = s.execute(select(Item.id, Item.media_id, Item.frame).where(Item.id.in_(part)))
        found.update({int(i): (m, f) for i, m, f in rows})
    out = np.empty(len(item_ids), dtype=np.int64)
    for k, item_id in enumerate(item_ids):
        media_id, frame = found.get(int(item_id), (None, None))
        if media_id is None or frame is None:
            out[k] = -(k + 1)
        else:
            out[k] = (int(media_id) << 32) + int(frame) // segment_frames
    return out
