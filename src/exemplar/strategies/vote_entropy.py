"""Vote entropy: query-by-committee on the members' hard votes (Dagan & Engelson, 1995)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import entr

from exemplar.predictions import Predictions
from exemplar.strategies._committee import vote_counts
from exemplar.strategies.base import ScoringStrategy

__all__ = ["VoteEntropy"]


class VoteEntropy(ScoringStrategy):
    """Prefer items on which the committee's hard votes are most evenly split.

    Each committee member (or stochastic pass) votes for its most probable class. The
    utility of an item is the entropy of the vote distribution,

    .. math:: VE(x) = -\\sum_c \\frac{V(c, x)}{T} \\log \\frac{V(c, x)}{T},

    where :math:`V(c, x)` is the number of the :math:`T` members voting for class ``c``.
    A unanimous committee scores 0; an even split over ``k`` classes scores ``log k``.

    Notes
    -----
    Votes are counted by column position, so class labels that are not ``0..k-1``
    work. Argmax ties go to the first column. Dagan & Engelson divide by
    ``log min(T, c)``; that constant does not change the ranking and is omitted, so
    scores are in nats. Samples are read one member at a time: memory is
    ``O(n * c)`` beyond the input.

    References
    ----------
    .. [1] I. Dagan and S. P. Engelson, "Committee-based sampling for training
       probabilistic classifiers", in Proc. ICML, 1995, pp. 150-157.
    """

    name: ClassVar[str] = "vote_entropy"
    summary: ClassVar[str] = "highest entropy of the committee's hard votes"
    reference: ClassVar[str] = "Dagan & Engelson (1995), ICML"
    requires: ClassVar[frozenset[str]] = frozenset({"samples"})

    def utility(self, predictions: Predictions) -> np.ndarray:
        """Vote entropy of each row (nats); higher means more disagreement.

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
        fractions = counts / float(samples.shape[0])
        return np.asarray(entr(fractions).sum(axis=1), dtype=np.float64)
