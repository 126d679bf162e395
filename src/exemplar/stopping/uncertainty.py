"""Stop when the model is certain about the remaining pool (Zhu, Wang & Hovy, 2008)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import entr

from exemplar.errors import ConfigError
from exemplar.stopping.base import (
    InvalidObservationError,
    MissingObservationError,
    Observation,
    StopDecision,
    StoppingCriterion,
    check_choice,
    check_number,
)

__all__ = ["UncertaintyThreshold"]

_CHUNK_ROWS = 65_536


class UncertaintyThreshold(StoppingCriterion):
    """Stop when the uncertainty over the unlabeled pool falls below a threshold.

    Each round, every pool item's uncertainty is computed from the model's class
    probabilities and reduced to one number: the mean ("overall uncertainty") or the
    maximum (the "max-confidence" rule: even the most uncertain item, the one
    uncertainty sampling would pick next, is below the threshold).

    Parameters
    ----------
    threshold : float, default=0.05
        Stop when the aggregated uncertainty is strictly below this value, ``> 0``.
        With ``normalize=True`` uncertainties lie in ``[0, 1]``.
    measure : {"entropy", "least_confidence"}, default="entropy"
        Per-item uncertainty: the Shannon entropy of the probabilities, or
        ``1 - max_c p(c)``.
    aggregate : {"mean", "max"}, default="mean"
        How the pool's uncertainties are reduced: "mean" is Zhu et al.'s overall
        uncertainty, "max" their max-confidence criterion.
    normalize : bool, default=True
        Divide by the largest possible value (``log c`` for entropy, ``1 - 1/c`` for
        least confidence), so that the threshold does not depend on the number of
        classes.

    Notes
    -----
    An empty pool stops the loop (nothing is left to label). The pool is processed in
    chunks of 65,536 rows, so a memory-mapped ``pool_proba`` is never copied whole.

    References
    ----------
    .. [1] J. Zhu, H. Wang and E. Hovy, "Learning a stopping criterion for active
       learning for word sense disambiguation and text classification", in Proc.
       IJCNLP, 2008, pp. 366-372.
    .. [2] J. Zhu, H. Wang and E. Hovy, "Multi-criteria-based strategy to stop active
       learning for data annotation", in Proc. COLING, 2008, pp. 1129-1136.
    """

    name: ClassVar[str] = "uncertainty_threshold"
    summary: ClassVar[str] = (
        "Stop when the mean (or max) uncertainty over the unlabeled pool falls below a threshold."
    )
    reference: ClassVar[str] = "Zhu, Wang & Hovy (2008), IJCNLP and COLING"

    def __init__(
        self,
        threshold: float = 0.05,
        measure: str = "entropy",
        aggregate: str = "mean",
        normalize: bool = True,
    ) -> None:
        check_number(threshold, "threshold", low=0.0, low_open=True)
        check_choice(measure, "measure", ("entropy", "least_confidence"))
        check_choice(aggregate, "aggregate", ("mean", "max"))
        if not isinstance(normalize, bool):
            raise ConfigError(f"normalize must be True or False, got {normalize!r}")
        self.threshold = threshold
        self.measure = measure
        self.aggregate = aggregate
        self.normalize = normalize
        self.reset()

    def pool_uncertainty(self, proba: np.ndarray) -> float:
        """The aggregated uncertainty of a pool's probabilities ``(n, c)``, n >= 1.

        Raises
        ------
        InvalidObservationError
            If ``proba`` is not 2-d, has fewer than two classes, or holds rows that are
            not finite distributions.
        """
        if proba.ndim != 2:
            raise InvalidObservationError(
                f"pool_proba must have shape (n_items, n_classes), got {proba.shape}"
            )
        n, c = proba.shape
        if c < 2:
            raise InvalidObservationError(
                f"{self.name} needs at least two classes; pool_proba has {c} column(s)"
            )
        if self.measure == "entropy":
            scale = float(np.log(c)) if self.normalize else 1.0
        else:
            scale = 1.0 - 1.0 / c if self.normalize else 1.0
        total, worst = 0.0, 0.0
        for start in range(0, n, _CHUNK_ROWS):
            chunk = np.asarray(proba[start : start + _CHUNK_ROWS], dtype=np.float64)
            _check_rows(chunk, start)
            if self.measure == "entropy":
                values = entr(chunk).sum(axis=1)
            else:
                values = 1.0 - chunk.max(axis=1)
            total += float(values.sum())
            worst = max(worst, float(values.max()))
        value = total / n if self.aggregate == "mean" else worst
        return max(value / scale, 0.0)

    def _decide(self, obs: Observation) -> StopDecision:
        if obs.pool_proba is None:
            raise MissingObservationError(
                f"{self.name} needs class probabilities on the unlabeled pool each round "
                "(Observation.pool_proba)"
            )
        proba = np.asarray(obs.pool_proba)  # a view: a memory-mapped array stays on disk
        if proba.ndim == 2 and proba.shape[0] == 0:
            return self._fire("the unlabeled pool is empty")
        value = self.pool_uncertainty(proba)
        what = f"{self.aggregate} {'normalized ' if self.normalize else ''}{self.measure}"
        if value < self.threshold:
            return self._fire(f"{what} over the pool is {value:.4g} < {self.threshold}")
        return StopDecision(False, f"{what} over the pool is {value:.4g} >= {self.threshold}")


def _check_rows(chunk: np.ndarray, offset: int) -> None:
    if not np.isfinite(chunk).all():
        raise InvalidObservationError("pool_proba contains NaN or infinite values")
    if chunk.min() < -1e-6:
        raise InvalidObservationError("pool_proba contains negative probabilities")
    dev = np.abs(chunk.sum(axis=1) - 1.0)
    worst = int(np.argmax(dev))
    if dev[worst] > 1e-3:
        raise InvalidObservationError(
            f"pool_proba row {offset + worst} sums to {chunk[worst].sum():.6g}, not 1"
        )
