"""BALD: mutual information between the prediction and the model parameters."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import entr

from exemplar.predictions import Predictions
from exemplar.strategies._committee import iter_members
from exemplar.strategies.base import ScoringStrategy

__all__ = ["Bald"]


class Bald(ScoringStrategy):
    """Prefer items on which confident stochastic passes disagree (Bayesian disagreement).

    With ``T`` stochastic samples :math:`p_t(y \\mid x)` (MC dropout passes, ensemble or
    committee members), the utility is the mutual information between the label and
    the model parameters,

    .. math:: I(x) = H\\Big[\\frac{1}{T}\\sum_t p_t\\Big] - \\frac{1}{T}\\sum_t H[p_t].

    Unlike predictive entropy, BALD scores an item that every sample finds uniformly
    uncertain (noise the model cannot resolve) near 0, and an item whose samples are
    each confident but in different classes (what more labels would resolve) high.

    Notes
    -----
    Samples are read one member at a time, accumulating the mean distribution
    ``(n, c)`` and the mean entropy ``(n,)`` in float64, so float32 input is fine and
    memory is ``O(n * c)`` beyond the input. ``0 log 0`` is taken as 0; tiny negative
    values from rounding are clipped to 0. The mean KL divergence from the consensus
    (:class:`~exemplar.strategies.consensus_kl.ConsensusKL`) is algebraically the same
    quantity.

    References
    ----------
    .. [1] N. Houlsby, F. Huszár, Z. Ghahramani and M. Lengyel, "Bayesian active
       learning for classification and preference learning", arXiv:1112.5745, 2011.
    .. [2] Y. Gal, R. Islam and Z. Ghahramani, "Deep Bayesian active learning with
       image data", in Proc. ICML, 2017, pp. 1183-1192.
    """

    name: ClassVar[str] = "bald"
    summary: ClassVar[str] = "samples each confident but disagreeing (mutual information)"
    reference: ClassVar[str] = "Houlsby et al. (2011), arXiv:1112.5745; Gal et al. (2017), ICML"
    requires: ClassVar[frozenset[str]] = frozenset({"samples"})

    def utility(self, predictions: Predictions) -> np.ndarray:
        """Mutual information of each row (nats), ``>= 0``; higher means more disagreement.

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
        total = np.zeros((n, c), dtype=np.float64)
        member_entropy = np.zeros(n, dtype=np.float64)
        for member in iter_members(samples):
            total += member
            member_entropy += entr(member).sum(axis=1)
        total /= t
        mutual_info = entr(total).sum(axis=1) - member_entropy / t
        return np.maximum(mutual_info, 0.0)
