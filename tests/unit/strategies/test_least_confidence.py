"""Least confidence ranks by the top-class probability."""

from __future__ import annotations

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies import LeastConfidence

# Row 0: confident. Row 1: two-way tie. Row 2: uniform over three. Row 3: mildly unsure.
PROBA = np.array(
    [
        [0.98, 0.01, 0.01],
        [0.50, 0.49, 0.01],
        [1 / 3, 1 / 3, 1 / 3],
        [0.70, 0.20, 0.10],
    ]
)


def _query(strategy: object, k: int, proba: np.ndarray = PROBA) -> tuple[np.ndarray, np.ndarray]:
    return strategy.query(Predictions(proba=proba), batch_size=k, return_scores=True)  # type: ignore[attr-defined]


def test_least_confidence_ranks_by_max_probability() -> None:
    idx, scores = _query(LeastConfidence(), 4)
    assert idx.tolist() == [2, 1, 3, 0]
    np.testing.assert_allclose(scores, 1 - PROBA.max(axis=1), atol=1e-6)
