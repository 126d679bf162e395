"""Score the pool and select a batch: the Scorer and Data Selector steps of every cycle.

:func:`pick_batch` decides one cycle's batch (cold start at random, the strategy, the
random control arm, the budget cap). The project loop calls it in its ``select`` state on
the arrays its ``score`` state stored; the simulator calls it on the output of
:func:`~exemplar.loop.scoring.score_pool` in memory. Both run the same code.
:func:`select_batch` scores and queries in one call (benchmarks and scripts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from exemplar.loop.scoring import score_pool
from exemplar.loop.segments import spread_picks
from exemplar.models.base import DEFAULT_CHUNK_SIZE, ModelAdapter
from exemplar.predictions import Predictions
from exemplar.strategies import RandomSampling
from exemplar.strategies.base import RandomState, ReducedSamples, Strategy

__all__ = [
    "CONTROL_SEED",
    "CONTROL_STRATEGY",
    "Pick",
    "Selection",
    "pick_batch",
    "query_batch",
    "select_batch",
]

#: Strategy name of the random control arm's picks (and so of their labels).
CONTROL_STRATEGY = "random-control"
#: Mixed into the cycle seed for the control arm's draw.
CONTROL_SEED = 0xC0DE


@dataclass(frozen=True)
class Selection:
    """A selected batch with the score of each selected item (for provenance)."""

    indices: np.ndarray
    scores: np.ndarray
    strategy: str
    #: The strategy's score of every candidate (aligned with the ``unlabeled`` it was given).
    pool_scores: np.ndarray | None = None


def query_batch(
    predictions: Predictions | None,
    strategy: Strategy,
    unlabeled: np.ndarray,
    labeled: np.ndarray,
    batch_size: int,
    *,
    y_labeled: np.ndarray | None = None,
    random_state: RandomState = None,
    reduced: ReducedSamples | None = None,
) -> Selection:
    """Query one batch and keep each selected item's score.

    ``reduced`` is the samples' reduction from :func:`~exemplar.loop.scoring.score_pool`,
    for a strategy that reads samples (see :meth:`~exemplar.strategies.Strategy.query`).
    """
    indices, scores = strategy.query(
        predictions,
        unlabeled,
        labeled,
        batch_size,
        y_labeled=y_labeled,
        random_state=random_state,
        return_scores=True,
        reduced=reduced,
    )
    if _is_sorted(unlabeled):
        position = np.searchsorted(unlabeled, indices)
    else:
        lookup = {int(v): p for p, v in enumerate(unlabeled)}
        position = np.array([lookup[int(i)] for i in indices], dtype=np.int64)
    return Selection(indices, scores[position], strategy.name, pool_scores=scores)


def select_batch(
    model: ModelAdapter | None,
    X: np.ndarray,
    strategy: Strategy,
    unlabeled: np.ndarray,
    labeled: np.ndarray,
    batch_size: int,
    *,
    y_labeled: np.ndarray | None = None,
    random_state: RandomState = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Selection:
    """Score the pool in chunks and query one batch (predictions cover every row of ``X``).

    Memory is bounded by ``chunk_size``, not by the pool (see
    :func:`~exemplar.loop.scoring.score_pool`); a strategy that reads nothing predicts nothing.
    """
    if not strategy.requires:
        predictions, reduced = None, None
    else:
        scored = score_pool(model, X, strategy, unlabeled=unlabeled, chunk_size=chunk_size)
        predictions, reduced = scored.predictions, scored.reduced
    return query_batch(
        predictions,
        strategy,
        unlabeled,
        labeled,
        batch_size,
        y_labeled=y_labeled,
        random_state=random_state,
        reduced=reduced,
    )


@dataclass(frozen=True)
class Pick:
    """One picked item: its row, the strategy that picked it, and its score (None: random)."""

    row: int
    strategy: str
    score: float | None


def pick_batch(
    predictions: Predictions | None,
    strategy: Strategy,
    pool_rows: np.ndarray,
    labeled_rows: np.ndarray,
    y_labeled: np.ndarray | None,
    *,
    batch_size: int,
    seed: int | Sequence[int],
    cold_start: bool = False,
    n_labeled: int | None = None,
    initial_size: int = 0,
    control_fraction: float = 0.0,
    budget_left: int | None = None,
    reduced: ReducedSamples | None = None,
    segments: np.ndarray | None = None,
) -> list[Pick]:
    """Pick one cycle's batch: the one selection rule of projects and the simulator.

    Parameters
    ----------
    predictions : Predictions or None
        The scored pool (None when there is no model yet, or the strategy reads nothing).
    strategy : Strategy
        The cycle's strategy (replaced by random sampling at cold start).
    pool_rows : ndarray
        Ascending rows that may be picked.
    labeled_rows, y_labeled : ndarray
        Labeled rows and their labels (for strategies that read them).
    batch_size : int
        Items per batch.
    seed : int or sequence of int
        Seeds the strategy's generator; the control arm draws from ``[*seed, CONTROL_SEED]``.
    cold_start : bool, default=False
        No model yet: pick at random, enough to reach ``initial_size`` labels.
    n_labeled : int, optional
        Labels so far (default: ``labeled_rows.size``), for the cold-start size.
    initial_size : int, default=0
        Labels wanted before the first model.
    control_fraction : float, default=0
        Share of a model batch drawn uniformly at random (strategy ``random-control``) to
        measure the strategy against random on the same cycles.
    budget_left : int, optional
        Labels the budget still allows; the batch never exceeds it.
    reduced : ReducedSamples, optional
        The samples' reduction from scoring, for a strategy that reads samples.
    segments : ndarray of int, optional
        Each pool row's segment (aligned with ``pool_rows``; video frames,
        :func:`~exemplar.loop.segments.frame_segments`): the strategy's part of the batch
        holds at most one row per segment until segments run out
        (:func:`~exemplar.loop.segments.spread_picks`).

    Returns
    -------
    list of Pick
        The strategy's picks in its order, then the control arm's.
    """
    seeds = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(v) for v in seed]
    if cold_start:
        strategy = RandomSampling()
        labeled_so_far = labeled_rows.size if n_labeled is None else n_labeled
        batch = max(initial_size - labeled_so_far, batch_size)
    else:
        batch = batch_size
    batch = min(batch, pool_rows.size)
    if budget_left is not None:
        batch = min(batch, budget_left)
    n_control = 0 if cold_start else round(control_fraction * batch)
    picks: list[Pick] = []
    if batch - n_control > 0:
        selection = query_batch(
            predictions,
            strategy,
            pool_rows,
            labeled_rows,
            batch - n_control,
            y_labeled=y_labeled,
            random_state=np.random.default_rng(seeds[0] if len(seeds) == 1 else seeds),
            reduced=reduced if strategy.requires & {"samples", "objects"} else None,
        )
        if segments is not None and selection.pool_scores is not None:
            rows = spread_picks(
                selection.indices, pool_rows, selection.pool_scores, segments, batch - n_control
            )
            scores = selection.pool_scores[np.searchsorted(pool_rows, rows)]
            selection = Selection(rows, scores, selection.strategy)
        picks = [
            Pick(int(row), selection.strategy, float(score))
            for row, score in zip(selection.indices, selection.scores, strict=True)
        ]
    if n_control > 0:
        picked = np.fromiter((p.row for p in picks), dtype=np.int64, count=len(picks))
        rest = pool_rows[~np.isin(pool_rows, picked)]
        control_rng = np.random.default_rng([*seeds, CONTROL_SEED])
        drawn = control_rng.choice(rest, size=min(n_control, rest.size), replace=False)
        picks += [Pick(int(row), CONTROL_STRATEGY, None) for row in drawn]
    return picks


def _is_sorted(a: np.ndarray) -> bool:
    return bool(a.size < 2 or np.all(a[1:] > a[:-1]))
