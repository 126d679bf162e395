"""Score the pool and select a batch: the Scorer + Data Selector step of every cycle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exemplar.models.base import ModelAdapter
from exemplar.predictions import Predictions
from exemplar.strategies.base import RandomState, Strategy

__all__ = ["Selection", "select_batch"]


@dataclass(frozen=True)
class Selection:
    """A selected batch with the score of each selected item (for provenance)."""

    indices: np.ndarray
    scores: np.ndarray
    strategy: str


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
    """Predict what ``strategy`` reads (nothing for random) and query one batch.

    Predictions cover every row of ``X`` so that indices mean the same thing to the
    model, the strategy and the store.
    """
    predictions: Predictions | None = None
    if strategy.requires:
        if model is None:
            raise ValueError(f"strategy {strategy.name!r} needs a fitted model")
        predictions = model.predict(
            X,
            samples="samples" in strategy.requires,
            embeddings="embeddings" in strategy.requires,
        )
    indices, scores = strategy.query(
        predictions,
        unlabeled,
        labeled,
        batch_size,
        y_labeled=y_labeled,
        random_state=random_state,
        return_scores=True,
    )
    position = np.searchsorted(unlabeled, indices) if _is_sorted(unlabeled) else None
    if position is None:
        lookup = {int(v): p for p, v in enumerate(unlabeled)}
        position = np.array([lookup[int(i)] for i in indices], dtype=np.int64)
    return Selection(indices, scores[position], strategy.name)


def _is_sorted(a: np.ndarray) -> bool:
    return bool(a.size < 2 or np.all(a[1:] > a[:-1]))
