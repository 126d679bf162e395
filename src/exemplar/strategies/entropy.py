"""Entropy uncertainty sampling (Shannon 1948; Settles & Craven 2008)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies._proba import as_float32, entropy_rows
from exemplar.strategies.base import ScoringStrategy

__all__ = ["Entropy"]


class Entropy(ScoringStrategy):
    """Prefer items whose predicted class distribution has the highest Shannon entropy.

    References
    ----------
    Shannon, C. E. (1948). A mathematical theory of communication. Applied to active
    learning by Settles, B., & Craven, M. (2008). An analysis of active learning strategies
    for sequence labeling tasks. EMNLP.
    """

    name: ClassVar[str] = "entropy"
    summary: ClassVar[str] = "highest entropy of the predicted class distribution"
    reference: ClassVar[str] = "Shannon 1948; Settles & Craven 2008"

    def utility(self, predictions: Predictions) -> np.ndarray:
        proba = as_float32(predictions.require_proba())
        return entropy_rows(proba)
