"""Variation ratios: how far the committee is from a unanimous vote (Freeman, 1965)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies._committee import vote_counts
from exemplar.strategies.base import ScoringStrategy

__all__ = ["VariationRatios"]


class VariationRatios(ScoringStrategy):
    """Prefer items whose most common vote has the smallest share of the committee.

    Each committee member (or stochastic pass, e.g. MC dropout) votes for its most
    probable class. The utility of an item is

    .. math:: VR(x) = 1 - \\frac{f_m(x)}{T},

    where :math:`f_m(x)` is the count of the modal vote among :math:`T` members.
    A unanimous committee scores 0; an even split over ``k`` classes scores ``1 - 1/k``.

    Notes
    -----
    Votes are counted by column position, so class labels that are not ``0..k-1``
    work. Argmax ties go to the first column. Many items share the same score when
    ``T`` is small; :func:`~exemplar.strategies.base.top_k` breaks ties by position.

    References
    ----------
    .. [1] L. C. Freeman, *Elementary Applied Statistics*. New York: Wiley, 1965.
    .. [2] Y. Gal, R. Islam and Z. Ghahramani, "Deep Bayesian active learning with
       image data", in Proc. ICML, 2017, pp. 1183-1192.
    """

    name: ClassVar[str] = "variation_ratios"
    summary: ClassVar[str] = "smallest share of the modal committee vote"
    reference: ClassVar[str] = "Freeman (1965); Gal, Islam & Ghahramani (2017), ICML"
    requires: ClassVar[frozenset[str]] = frozenset({"samples"})

    def utility(self, predictions: Predictions) -> np.ndarray:
        """Variation ratio of each row, in ``[0, 1 - 1/c]``; higher means less agreement.

        Parameters
        ----------
        predictions : Predictions
            Must carry stochastic ``samples`` of shape ``(t, n, c)``.

        Returns
        -------
        ndarray of shape (n,), float64

        Raises
        ------
        MissingPredictionsError, InvalidPredictionsError, SingleClassError
        """
        samples = predictions.require_samples()
        counts = vote_counts(samples)
        modal = counts.max(axis=1) if counts.shape[0] else np.zeros(0, dtype=np.int64)
        return 1.0 - modal / float(samples.shape[0])
