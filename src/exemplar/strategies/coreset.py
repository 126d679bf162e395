"""Core-set selection by greedy k-center (Sener & Savarese, 2018).

The greedy 2-approximation of the k-center problem: repeatedly pick the pool item farthest
from every labeled (or already picked) item. It keeps one ``min_dist`` vector (one float per
pool item) and updates it with the distances to each newly picked center, so a pick costs one
pass over the pool, O(N·D), instead of recomputing all distances (DESIGN.md §9).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.strategies.base import QueryContext, Strategy

__all__ = ["CoreSet"]

#: Rows per chunk when computing distances to the labeled set.
_CHUNK_ROWS = 65536
#: Upper bound on the elements of one (rows × centers) distance block.
_BLOCK_ELEMENTS = 1 << 22


class CoreSet(Strategy):
    """Greedy k-center core-set: pick the items farthest from the labeled set, one by one.

    Each pick is the unlabeled item whose Euclidean distance to its nearest center
    (labeled items and items picked earlier in the batch) is largest. The batch therefore
    covers the embedding space: the largest ball around labeled points that holds no
    center shrinks with every pick.

    The strategy has no hyper-parameters.

    Notes
    -----
    Distances are Euclidean in the embedding space, computed in float32 (DESIGN.md §9):
    float32 embeddings are used in place when the unlabeled items are most of the dataset,
    otherwise one float32 copy of the needed rows is made.
    Cost: O(N·|L|·D) for the initial distances to the labeled set ``L`` (chunked, memory
    bounded by the chunk), then O(N·D) per pick. Memory: one vector of N floats.
    With no labeled items (cold start) the first center is a uniformly random unlabeled
    item drawn from the seeded generator.

    This is the plain greedy algorithm of the paper (its Algorithm 1), not the robust
    mixed-integer variant that also tolerates outliers.

    Scores (``return_scores``) are each unlabeled item's Euclidean distance to its nearest
    labeled item *before* selection. On a cold start they are the distances to the random
    first center instead.

    References
    ----------
    Sener, O., & Savarese, S. (2018). Active learning for convolutional neural networks:
    A core-set approach. ICLR.
    """

    name: ClassVar[str] = "coreset"
    summary: ClassVar[str] = "greedy k-center: items farthest from every labeled item"
    reference: ClassVar[str] = "Sener & Savarese 2018, ICLR"
    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    cold_start: ClassVar[bool] = True

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        assert ctx.predictions is not None
        emb = ctx.predictions.require_embeddings()
        work, pos, full = _working_rows(emb, ctx.unlabeled)
        sq_norms = _row_sq_norms(work)

        # min_dist over the rows of `work`: -inf marks rows that are not candidates.
        min_dist = np.full(work.shape[0], -np.inf, dtype=work.dtype)
        if ctx.labeled.size:
            min_dist[pos] = _min_sq_dist(work, sq_norms, emb[ctx.labeled])[pos]
            first = None
        else:
            first = int(pos[ctx.rng.integers(pos.size)])
            min_dist[pos] = np.inf
            _update_min_dist(min_dist, work, sq_norms, first)
            min_dist[first] = -np.inf
        scores = np.sqrt(np.maximum(min_dist[pos], 0.0)).astype(np.float64)

        picks: list[int] = [] if first is None else [first]
        while len(picks) < ctx.batch_size:
            row = int(np.argmax(min_dist))
            picks.append(row)
            _update_min_dist(min_dist, work, sq_norms, row)
            min_dist[row] = -np.inf
        rows = np.asarray(picks, dtype=np.int64)
        selected = rows if full else ctx.unlabeled[rows]
        return selected, scores


def _working_rows(emb: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """A float32 matrix with ``rows`` of ``emb``, their positions in it, and whether it is all rows.

    When ``rows`` are at least half the dataset the whole array is used (a view if it is
    already float32; the other rows are masked out by the caller); otherwise only ``rows``
    are gathered. At most one float32 copy is made.
    """
    if 2 * rows.size >= emb.shape[0]:
        return np.asarray(emb, dtype=np.float32), rows, True
    return np.asarray(emb[rows], dtype=np.float32), np.arange(rows.size, dtype=np.int64), False


def _row_sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of each row, chunk by chunk."""
    out = np.empty(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        chunk = x[start : start + _CHUNK_ROWS]
        out[start : start + _CHUNK_ROWS] = np.einsum("ij,ij->i", chunk, chunk)
    return out


def _min_sq_dist(work: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distance of each row of ``work`` to its nearest row of ``centers``.

    Computed block by block (at most ``_BLOCK_ELEMENTS`` distances at a time), so memory
    stays bounded whatever the number of centers.
    """
    centers = centers.astype(work.dtype, copy=False)
    c_norms = np.einsum("ij,ij->i", centers, centers)
    n_c = centers.shape[0]
    c_step = max(1, min(n_c, _BLOCK_ELEMENTS // 1024))
    r_step = max(1, min(_CHUNK_ROWS, _BLOCK_ELEMENTS // c_step))
    out = np.full(work.shape[0], np.inf, dtype=work.dtype)
    for start in range(0, work.shape[0], r_step):
        rows = work[start : start + r_step]
        r_norms = sq_norms[start : start + r_step]
        best = out[start : start + r_step]
        for c0 in range(0, n_c, c_step):
            block = rows @ centers[c0 : c0 + c_step].T
            block *= -2
            block += r_norms[:, None]
            block += c_norms[None, c0 : c0 + c_step]
            np.minimum(best, block.min(axis=1), out=best)
    np.maximum(out, 0.0, out=out)
    return out


def _update_min_dist(
    min_dist: np.ndarray, work: np.ndarray, sq_norms: np.ndarray, row: int
) -> None:
    """Lower ``min_dist`` in place with the squared distances to ``work[row]``: one pass."""
    center = work[row]
    dist = work @ center
    dist *= -2
    dist += sq_norms
    dist += sq_norms[row]
    np.maximum(dist, 0.0, out=dist)
    np.minimum(min_dist, dist, out=min_dist)
