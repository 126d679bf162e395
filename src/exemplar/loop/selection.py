"""Score the pool and select a batch: the Scorer and Data Selector steps of every cycle.

The simulator calls :func:`select_batch` (both steps at once); the project loop calls
:func:`score_pool` in its ``score`` state, stores the arrays, and :func:`query_batch` in
its ``select`` state, so both run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exemplar.models.base import ModelAdapter
from exemplar.predictions import Predictions
from exemplar.strategies.base import RandomState, Strategy

__all__ = ["Selection", "query_batch", "score_pool", "select_batch"]


@dataclass(frozen=True)
class Selection:
    """A selected batch with the score of each selected item (for provenance)."""

    indices: np.ndarray
    scores: np.ndarray
    strategy: str


def score_pool(model: ModelAdapter | None, X: np.ndarray, strategy: Strategy) -> Predictions | None:
    """Predict what ``strategy`` reads, for every row of ``X`` (None if it reads nothing).

    The adapter predicts in chunks, so memory is bounded by its chunk size plus the
    outputs kept (probabilities, and samples or embeddings only when the strategy needs
    them).
    """
    if not strategy.requires:
        return None
    if model is None:
        raise ValueError(f"strategy {strategy.name!r} needs a fitted model")
    return model.predict(
        X,
        samples="samples" in strategy.requires,
        embeddings="embeddings" in strategy.requires,
    )


def query_batch(
    predictions: Predictions | None,
    strategy: Strategy,
    unlabeled: np.ndarray,
    labeled: np.ndarray,
    batch_size: int,
    *,
    y_labeled: np.ndarray | None = None,
    random_state: RandomState = None,
) -> Selection:
    """Query one batch and keep each selected item's score."""
    indices, scores = strategy.query(
        predictions,
        unlabeled,
        labeled,
        batch_size,
        y_labeled=y_labeled,
        random_state=random_state,
        return_scores=True,
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
) -> Selection:
    """Score the pool and query one batch (predictions cover every row of ``X``)."""
    return query_batch(
        score_pool(model, X, strategy),
        strategy,
        unlabeled,
        labeled,
        batch_size,
        y_labeled=y_labeled,
        random_state=random_state,
    )


def _is_sorted(a: np.ndarray) -> bool:
    return bool(a.size < 2 or np.all(a[1:] > a[:-1]))
