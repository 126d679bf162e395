"""Ratio-of-confidence uncertainty sampling (Monarch 2021)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies._proba import EPS, as_float32, top2
from exemplar.strategies.base import ScoringStrategy

__all__ = ["RatioOfConfidence"]


class RatioOfConfidence(ScoringStrategy):
    """Prefer items whose top-2 probability ratio ``p_2 / p_1`` is closest to one.

    References
    ----------
    Monarch, R. (2021). Human-in-the-Loop Machine Learning, ch. 3 (ratio of confidence).
    Manning Publications.
    """

    name: ClassVar[str] = "ratio"
    summary: ClassVar[str] = "ratio of the second to the first class probability"
    reference: ClassVar[str] = "Monarch 2021, Human-in-the-Loop Machine Learning, ch. 3"

    def utility(self, predictions: Predictions) -> np.ndarray:
        proba = as_float32(predictions.require_proba())
        first, second = top2(proba)
        return second / np.maximum(first, EPS)
