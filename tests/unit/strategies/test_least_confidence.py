"""Least confidence ranks by the top-class probability."""

from __future__ import annotations

import numpy as np
from uncertainty_cases import PROBA, query

from exemplar.strategies import LeastConfidence


def test_least_confidence_ranks_by_max_probability() -> None:
    idx, scores = query(LeastConfidence(), 4)
    assert idx.tolist() == [2, 1, 3, 0]
    np.testing.assert_allclose(scores, 1 - PROBA.max(axis=1), atol=1e-6)
