"""Stabilizing predictions (Bloodgood & Vijay-Shanker, 2009)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from exemplar.stopping.base import (
    InvalidObservationError,
    MissingObservationError,
    Observation,
    StopDecision,
    StoppingCriterion,
    check_number,
)

__all__ = ["StabilizingPredictions", "cohen_kappa"]


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa between two label vectors of the same length.

    Labels may be of any comparable type (ints, strings). When both vectors hold one and
    the same constant label, chance agreement is 1 and kappa is undefined; it is taken
    as 1.0 (the two models agree perfectly).

    Parameters
    ----------
    a, b : ndarray of shape (m,)

    Returns
    -------
    float
        ``(p_o - p_e) / (1 - p_e)``, in ``[-1, 1]``.

    References
    ----------
    .. [1] J. Cohen, "A coefficient of agreement for nominal scales", Educational and
       Psychological Measurement, 20(1), 37-46, 1960.
    """
    m = a.shape[0]
    if m == 0:
        return 1.0
    _, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    codes = codes.reshape(-1)
    k = int(codes.max()) + 1
    ca, cb = codes[:m], codes[m:]
    observed = float(np.mean(ca == cb))
    expected = float(np.dot(np.bincount(ca, minlength=k), np.bincount(cb, minlength=k))) / (m * m)
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


class StabilizingPredictions(StoppingCriterion):
    """Stop when successive models agree on a fixed stop set.

    Each round, the model's predicted labels on a fixed set of unlabeled items (the
    stop set, which need not be labeled) are compared with the previous round's by
    Cohen's kappa. The loop stops when the mean kappa of the last ``window``
    comparisons is at least ``threshold``: the model has stopped changing.

    Parameters
    ----------
    threshold : float, default=0.99
        Agreement level in ``(-1, 1]``; the paper uses 0.99.
    window : int, default=3
        Number of most recent comparisons averaged, ``>= 1``; the paper uses 3. The
        first possible stop is therefore in the round after ``window`` comparisons,
        i.e. the ``window + 1``-th observation.

    Attributes
    ----------
    kappas_ : list of float
        Kappa of every comparison so far (one per round after the first).

    Notes
    -----
    The stop set must be the same items in the same order each round; a change in its
    size raises :class:`~exemplar.stopping.InvalidObservationError`. Predictions of
    shape ``(m, L)`` (multi-label indicators) are compared decision by decision. The
    state keeps the previous round's predictions (``m`` labels) and the kappa history.

    References
    ----------
    .. [1] M. Bloodgood and K. Vijay-Shanker, "A method for stopping active learning
       based on stabilizing predictions and the need for user-adjustable stopping",
       in Proc. CoNLL, 2009, pp. 39-47.
    """

    name: ClassVar[str] = "stabilizing_predictions"
    summary: ClassVar[str] = (
        "Stop when successive models' predictions on a stop set agree (mean Cohen's kappa)."
    )
    reference: ClassVar[str] = "Bloodgood & Vijay-Shanker (2009), CoNLL"

    def __init__(self, threshold: float = 0.99, window: int = 3) -> None:
        check_number(threshold, "threshold", low=-1.0, high=1.0, low_open=True)
        check_number(window, "window", low=1, integer=True)
        self.threshold = threshold
        self.window = window
        self.reset()

    @property
    def kappas_(self) -> list[float]:
        """Kappa of every comparison so far."""
        return list(self._kappas)

    def _reset(self) -> None:
        self._previous: np.ndarray | None = None
        self._kappas: list[float] = []

    def _decide(self, obs: Observation) -> StopDecision:
        if obs.stop_set_predictions is None:
            raise MissingObservationError(
                f"{self.name} needs predictions on a fixed stop set each round "
                "(Observation.stop_set_predictions); configure a stop set or pick another "
                "stopping criterion"
            )
        current = np.asarray(obs.stop_set_predictions).reshape(-1)
        if current.size == 0:
            raise InvalidObservationError(f"{self.name}: the stop set is empty")
        previous = self._previous
        if previous is not None and previous.shape != current.shape:
            raise InvalidObservationError(
                f"{self.name}: the stop set changed size ({previous.size} predictions last "
                f"round, {current.size} now); it must be the same items every round"
            )
        self._previous = current.copy()
        if previous is None:
            return StopDecision(False, "first model: no previous predictions to compare with")
        self._kappas.append(cohen_kappa(previous, current))
        if len(self._kappas) < self.window:
            return StopDecision(
                False,
                f"kappa {self._kappas[-1]:.4f}; {len(self._kappas)} of the {self.window} "
                "comparisons needed so far",
            )
        mean = float(np.mean(self._kappas[-self.window :]))
        if mean >= self.threshold:
            return self._fire(
                f"predictions stabilized: mean kappa {mean:.4f} over the last {self.window} "
                f"rounds >= {self.threshold}"
            )
        return StopDecision(
            False, f"mean kappa {mean:.4f} over the last {self.window} rounds < {self.threshold}"
        )

    def _get_state(self) -> dict[str, Any]:
        return {
            "previous": None if self._previous is None else self._previous.tolist(),
            "kappas": [float(k) for k in self._kappas],
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        previous = state["previous"]
        kappas = [float(k) for k in state["kappas"]]
        self._previous = None if previous is None else np.asarray(previous).reshape(-1)
        self._kappas = kappas
