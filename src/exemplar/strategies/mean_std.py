"""Mean STD: the spread of the stochastic samples, averaged over classes."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.predictions import Predictions
from exemplar.strategies._committee import iter_members
from exemplar.strategies.base import ScoringStrategy

__all__ = ["MeanSTD"]


class MeanSTD(ScoringStrategy):
    """Prefer items whose class probabilities vary most across stochastic passes.

    With ``T`` stochastic samples :math:`p_t(y \\mid x)` (MC dropout passes, ensemble or
    committee members), the utility is the standard deviation over samples of each
    class probability, averaged over the ``C`` classes,

    .. math:: \\sigma(x) = \\frac{1}{C}\\sum_c \\sqrt{E_t[p_t(c)^2] - E_t[p_t(c)]^2},

    writing :math:`p_t(c)` for :math:`p_t(c \\mid x)`.

    An item on which every sample agrees scores 0, whatever its entropy; two confident
    samples that split between two of ``C`` classes score ``1 / C``.

    Notes
    -----
    Samples are read one member at a time with Welford's update in float64 (the
    population standard deviation, ``ddof=0``), so float32 or memory-mapped input is fine
    and the extra memory is ``O(n * c)``.

    References
    ----------
    .. [1] M. Kampffmeyer, A.-B. Salberg and R. Jenssen, "Semantic segmentation of small
       objects and modeling of uncertainty in urban remote sensing images using deep
       convolutional neural networks", in Proc. CVPR Workshops, 2016, pp. 1-9.
    .. [2] A. Kendall, V. Badrinarayanan and R. Cipolla, "Bayesian SegNet: Model uncertainty
       in deep convolutional encoder-decoder architectures for scene understanding",
       arXiv:1511.02680, 2015.
    """

    name: ClassVar[str] = "mean_std"
    summary: ClassVar[str] = "class probabilities that vary most across samples (mean std)"
    reference: ClassVar[str] = "Kampffmeyer et al. (2016), CVPR-W; Kendall et al. (2015)"
    requires: ClassVar[frozenset[str]] = frozenset({"samples"})

    def utility(self, predictions: Predictions) -> np.ndarray:
        """Mean over classes of the std over ``samples`` ``(t, n, c)``; ``(n,)`` in ``[0, 0.5]``.

        Raises the errors of :meth:`~exemplar.predictions.Predictions.require_samples`.
        """
        samples = predictions.require_samples()
        _, n, c = samples.shape
        mean = np.zeros((n, c), dtype=np.float64)
        sq_dev = np.zeros((n, c), dtype=np.float64)  # running sum of squared deviations
        for count, member in enumerate(iter_members(samples), start=1):
            delta = member - mean
            mean += delta / count
            sq_dev += delta * (member - mean)
        std = np.sqrt(np.maximum(sq_dev, 0.0) / samples.shape[0])
        return std.mean(axis=1)
