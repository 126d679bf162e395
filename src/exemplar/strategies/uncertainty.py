"""Uncertainty sampling over class probabilities (Lewis & Gale 1994; Settles 2009 §3.1).

Four classic measures, each a row-wise utility (higher = more uncertain), computed in
float32 with one pass over the probabilities and ranked with ``argpartition``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies.base import ScoringStrategy

_EPS = np.float32(1e-12)


def _top2(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest and second-largest probability of each row."""
    part = np.partition(proba, -2, axis=1)
    return part[:, -1], part[:, -2]


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
        proba = predictions.require_proba().astype(np.float32, copy=False)
        return 1.0 - proba.max(axis=1)


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
        proba = predictions.require_proba().astype(np.float32, copy=False)
        first, second = _top2(proba)
        return second - first


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
        proba = predictions.require_proba().astype(np.float32, copy=False)
        return entropy_rows(proba)


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
        proba = predictions.require_proba().astype(np.float32, copy=False)
        first, second = _top2(proba)
        return second / np.maximum(first, _EPS)


def entropy_rows(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a probability matrix."""
    p = np.clip(proba, _EPS, 1.0)
    return -(proba * np.log(p)).sum(axis=1)
