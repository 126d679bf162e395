"""The stopping-criterion contract: one observation per round in, a stop decision out.

Stopping criteria are separate, stateful objects (small-text's loop contract, DESIGN.md §8).
After training in round ``r`` the loop builds an :class:`Observation` and calls
:meth:`StoppingCriterion.update`; the criterion returns a :class:`StopDecision`. Its state is
plain JSON (:meth:`StoppingCriterion.state_dict`), so a resumed loop restores it exactly.

Calling :meth:`~StoppingCriterion.update` again with the round it saw last returns the
decision it made then, without changing its state; a resumed loop that replays the
round it was killed in therefore gets the same answer.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from exemplar.errors import (
    ConfigError,
    InvalidObservationError,
    MissingObservationError,
    StoppingError,
)

__all__ = [
    "InvalidObservationError",
    "MissingObservationError",
    "Observation",
    "StopDecision",
    "StoppingCriterion",
    "StoppingError",
]


@dataclass(frozen=True)
class Observation:
    """What the loop knows after training the model of round ``round``.

    Parameters
    ----------
    round : int
        Round (cycle) number, ``>= 0``; rounds passed to one criterion must increase.
    n_labeled : int
        Number of labeled items the model was trained on.
    stop_set_predictions : ndarray of shape (m,), optional
        Predicted labels on a fixed unlabeled "stop set" (the same items, in the same
        order, every round). Read by :class:`~exemplar.stopping.StabilizingPredictions`.
    pool_proba : ndarray of shape (n, c), optional
        Class probabilities on the current unlabeled pool. Read by
        :class:`~exemplar.stopping.UncertaintyThreshold`.
    metrics : mapping of str to float
        Validation metrics of the model, e.g. ``{"accuracy": 0.91}``. Read by
        :class:`~exemplar.stopping.ValidationPlateau` and :class:`~exemplar.stopping.KPIReached`.
    """

    round: int
    n_labeled: int
    stop_set_predictions: np.ndarray | None = None
    pool_proba: np.ndarray | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("round", "n_labeled"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InvalidObservationError(
                    f"Observation.{name} must be a non-negative integer, got {value!r}"
                )


@dataclass(frozen=True)
class StopDecision:
    """The answer of a stopping criterion for one round.

    Attributes
    ----------
    stop : bool
        True when the loop should stop after this round.
    reason : str
        Human-readable explanation, e.g. ``"budget of 200 labels reached (200 labeled)"``.
        Given whether or not the criterion stops.
    fired : tuple of str
        Names of the criteria that decided to stop (empty when ``stop`` is False). A
        combinator lists the children that fired.
    """

    stop: bool
    reason: str
    fired: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (``fired`` as a list)."""
        return {"stop": self.stop, "reason": self.reason, "fired": list(self.fired)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StopDecision:
        """Inverse of :meth:`to_dict`."""
        return cls(bool(data["stop"]), str(data["reason"]), tuple(data.get("fired", ())))


class StoppingCriterion(ABC):
    """Base class of all stopping criteria.

    Subclasses set the class attributes below, store their parameters in ``__init__``
    (validated there, raising :class:`~exemplar.errors.ConfigError`) and end it with
    ``self.reset()``. They implement :meth:`_decide` and, if they keep state between
    rounds, :meth:`_reset`, :meth:`_get_state` and :meth:`_set_state`.
    """

    #: Registry name used by the CLI and configs (e.g. ``"label_budget"``).
    name: ClassVar[str]
    #: One line describing when the criterion stops.
    summary: ClassVar[str]
    #: Short citation of where the criterion comes from.
    reference: ClassVar[str]

    _last_round: int | None = None
    _last_decision: StopDecision | None = None

    def update(self, obs: Observation) -> StopDecision:
        """Record the observation of a round and decide whether to stop.

        Parameters
        ----------
        obs : Observation
            What the loop knows after training this round.

        Returns
        -------
        StopDecision

        Raises
        ------
        MissingObservationError
            If ``obs`` lacks what this criterion reads.
        InvalidObservationError
            If ``obs`` is malformed or its round is older than the last one seen.
        """
        if not isinstance(obs, Observation):
            raise InvalidObservationError(
                f"update() expects an Observation, got {type(obs).__name__}"
            )
        if self._last_round is not None:
            if obs.round == self._last_round and self._last_decision is not None:
                return self._last_decision
            if obs.round < self._last_round:
                raise InvalidObservationError(
                    f"{self.name}: round {obs.round} comes after round {self._last_round}; "
                    "rounds must increase (call reset() to start a new run)"
                )
        decision = self._decide(obs)
        self._last_round = int(obs.round)
        self._last_decision = decision
        return decision

    @abstractmethod
    def _decide(self, obs: Observation) -> StopDecision:
        """Update the state with a new round's observation and decide."""

    def reset(self) -> None:
        """Forget every observation, as if freshly constructed."""
        self._last_round = None
        self._last_decision = None
        self._reset()

    def _reset(self) -> None:
        """Clear the subclass state (default: nothing to clear)."""

    def state_dict(self) -> dict[str, Any]:
        """The criterion's state as JSON-serializable data (parameters not included).

        Returns
        -------
        dict
            Restores this criterion's behaviour through :meth:`load_state_dict` on an
            instance built with the same parameters.
        """
        return {
            "criterion": self.name,
            "last_round": self._last_round,
            "last_decision": None if self._last_decision is None else self._last_decision.to_dict(),
            **self._get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`.

        Raises
        ------
        ConfigError
            If ``state`` was saved by a different criterion or is malformed.
        """
        if not isinstance(state, Mapping) or state.get("criterion") != self.name:
            found = state.get("criterion") if isinstance(state, Mapping) else type(state).__name__
            raise ConfigError(
                f"cannot load the state of {found!r} into stopping criterion {self.name!r}"
            )
        try:
            last_round = state["last_round"]
            last_decision = state["last_decision"]
            self._set_state(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"malformed state for stopping criterion {self.name!r}: {exc}"
            ) from exc
        self._last_round = None if last_round is None else int(last_round)
        self._last_decision = (
            None if last_decision is None else StopDecision.from_dict(last_decision)
        )

    def _get_state(self) -> dict[str, Any]:
        """Subclass state as JSON-serializable data (default: none)."""
        return {}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (default: nothing)."""

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters, as stored on the instance (scikit-learn style)."""
        signature = inspect.signature(type(self).__init__)
        return {
            p: getattr(self, p)
            for p in signature.parameters
            if p != "self" and signature.parameters[p].kind is not inspect.Parameter.VAR_KEYWORD
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _fire(self, reason: str) -> StopDecision:
        """A stop decision naming this criterion."""
        return StopDecision(True, reason, (self.name,))


def check_number(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float:
    """Validate a numeric parameter and return it, raising ConfigError with the range."""
    if integer:
        ok_type = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    else:
        ok_type = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
    if not ok_type:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    bad = not math.isfinite(number)
    if low is not None:
        bad = bad or (number <= low if low_open else number < low)
    if high is not None:
        bad = bad or (number >= high if high_open else number > high)
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{lo}, {hi}{right}"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")
    return number


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """Validate a string parameter against its allowed values, raising ConfigError."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def read_metric(obs: Observation, metric: str, criterion: str) -> float:
    """The finite value of ``metric`` in ``obs.metrics``, or a clear error."""
    if metric not in obs.metrics:
        available = ", ".join(sorted(map(repr, obs.metrics))) or "none"
        raise MissingObservationError(
            f"{criterion} reads the validation metric {metric!r}, but round {obs.round} reports "
            f"{available}; evaluate on a validation set or change `metric`"
        )
    value = obs.metrics[metric]
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidObservationError(f"metric {metric!r} is not a number: {value!r}") from exc
    if not math.isfinite(number):
        raise InvalidObservationError(f"metric {metric!r} is {number} in round {obs.round}")
    return number
