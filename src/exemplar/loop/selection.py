"""Score the pool and select a batch: the Scorer and Data Selector steps of every cycle.

The simulator calls :func:`select_batch` (both steps at once); the project loop calls
:func:`~exemplar.loop.scoring.score_pool` in its ``score`` state, stores the arrays, and
:func:`query_batch` in its ``select`` state, so both run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exemplar.loop.scoring import score_pool
from exemplar.models.base import DEFAULT_CHUNK_SIZE, ModelAdapter
from exemplar.predictions import Predictions
from exemplar.strategies.base import RandomState, ReducedSamples, Strategy

__all__ = ["Selection", "query_batch", "select_batch"]


@dataclass(frozen=True)
class Selection:
    """A selected batch with the score of each selected item (for provenance)."""

    indices: np.ndarray
    scores: np.ndarray
    strategy: str


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
    return Selection(indices, scores[position], strategy.name)


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


def _is_sorted(a: np.ndarray) -> bool:
    return bool(a.size < 2 or np.all(a[1:] > a[:-1]))
