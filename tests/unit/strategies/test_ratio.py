"""Ratio of confidence prefers a top-2 ratio near one."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.predictions import Predictions
from exemplar.strategies import RatioOfConfidence

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


def test_ratio_prefers_top2_ratio_close_to_one() -> None:
    idx, scores = _query(RatioOfConfidence(), 4)
    assert idx[0] == 2 and scores[2] == pytest.approx(1.0)
    assert idx[-1] == 0
