"""Margin (smallest top-2 gap) uncertainty sampling (Scheffer et al. 2001)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies._proba import as_float32, top2
from exemplar.strategies.base import ScoringStrategy

__all__ = ["Margin"]


class Margin(ScoringStrategy):
    """Prefer items with the smallest margin between the two most likely classes.

    The utility is ``-(p_1 - p_2)``, so the smallest margin ranks first.

    References
    ----------
    Scheffer, T., Decomain, C., & Wrobel, S. (2001). Active hidden Markov models for
    information extraction. IDA.
    """

    name: ClassVar[str] = "margin"
    summary: ClassVar[str] = "smallest gap between the top two class probabilities"
    reference: ClassVar[str] = "Scheffer, Decomain & Wrobel 2001"

    def utility(self, predictions: Predictions) -> np.ndarray:
        proba = as_float32(predictions.require_proba())
        first, second = top2(proba)
        return second - first
