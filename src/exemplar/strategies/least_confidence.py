"""Least-confidence uncertainty sampling (Lewis & Gale 1994; Culotta & McCallum 2005)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies._proba import as_float32
from exemplar.strategies.base import ScoringStrategy

__all__ = ["LeastConfidence"]


class LeastConfidence(ScoringStrategy):
    """Prefer items whose most likely class has the lowest probability: ``1 - max_c p``.

    References
    ----------
    Lewis, D. D., & Gale, W. A. (1994). A sequential algorithm for training text
    classifiers. SIGIR. Culotta, A., & McCallum, A. (2005). Reducing labeling effort for
    structured prediction tasks. AAAI.
    """

    name: ClassVar[str] = "least_confidence"
    summary: ClassVar[str] = "lowest top-class probability"
    reference: ClassVar[str] = "Lewis & Gale 1994; Culotta & McCallum 2005"

    def utility(self, predictions: Predictions) -> np.ndarray:
        proba = as_float32(predictions.require_proba())
        return 1.0 - proba.max(axis=1)
