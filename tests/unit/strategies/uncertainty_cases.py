"""Probability rows shared by the uncertainty-strategy tests."""

from __future__ import annotations

import numpy as np

from exemplar.predictions import Predictions

# Row 0: confident. Row 1: two-way tie. Row 2: uniform over three. Row 3: mildly unsure.
PROBA = np.array(
    [
        [0.98, 0.01, 0.01],
        [0.50, 0.49, 0.01],
        [1 / 3, 1 / 3, 1 / 3],
        [0.70, 0.20, 0.10],
    ]
)


def query(strategy: object, k: int, proba: np.ndarray = PROBA) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of ``strategy`` over ``proba``."""
    return strategy.query(Predictions(proba=proba), batch_size=k, return_scores=True)  # type: ignore[attr-defined]
