"""Mean KL divergence from the committee consensus (McCallum & Nigam, 1998)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies._committee import EPS, iter_members
from exemplar.strategies.base import ScoringStrategy

__all__ = ["ConsensusKL"]


class ConsensusKL(ScoringStrategy):
    """Prefer items whose committee members' distributions stray most from their consensus.

    With ``T`` members :math:`p_t(y \\mid x)` and the consensus
    :math:`\\bar p = \\frac{1}{T}\\sum_t p_t`, the utility is

    .. math:: KL(x) = \\frac{1}{T}\\sum_t \\sum_c p_t(c) \\log\\frac{p_t(c)}{\\bar p(c)}.

    It uses the members' full distributions, not only their votes, so it separates
    a committee that is split with confidence from one that is merely unsure.

    Notes
    -----
    Since :math:`\\bar p` is the mean of the :math:`p_t`, the sum expands to
    :math:`\\frac{1}{T}\\sum_t\\sum_c p_t \\log p_t - \\sum_c \\bar p \\log \\bar p`, which is
    computed in one pass over the members (memory ``O(n * c)`` beyond the input, float64
    accumulators). Probabilities are floored at ``1e-12`` inside the logarithms; tiny
    negative values from rounding are clipped to 0. Because the consensus is the plain
    mean, this equals the generalized Jensen-Shannon divergence, i.e. the mutual
    information scored by :class:`~exemplar.strategies.bald.Bald`; the two rank items
    identically up to the floor.

    References
    ----------
    .. [1] A. McCallum and K. Nigam, "Employing EM and pool-based active learning for
       text classification", in Proc. ICML, 1998, pp. 350-358.
    """

    name: ClassVar[str] = "consensus_kl"
    summary: ClassVar[str] = "members' distributions diverge most from the consensus"
    reference: ClassVar[str] = "McCallum & Nigam (1998), ICML"
    requires: ClassVar[frozenset[str]] = frozenset({"samples"})

    def utility(self, predictions: Predictions) -> np.ndarray:
        """Mean KL divergence to the consensus for each row (nats), ``>= 0``.

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
        t, n, c = samples.shape
        consensus = np.zeros((n, c), dtype=np.float64)
        self_info = np.zeros(n, dtype=np.float64)  # sum_t sum_c p_t log p_t
        for member in iter_members(samples):
            consensus += member
            self_info += (member * np.log(np.maximum(member, EPS))).sum(axis=1)
        consensus /= t
        cross = (consensus * np.log(np.maximum(consensus, EPS))).sum(axis=1)
        return np.maximum(self_info / t - cross, 0.0)
