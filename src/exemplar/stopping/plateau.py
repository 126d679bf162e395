"""Stop when a validation metric stops improving (early stopping on the learning curve)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from exemplar.errors import ConfigError
from exemplar.stopping.base import (
    Observation,
    StopDecision,
    StoppingCriterion,
    check_choice,
    check_number,
    read_metric,
)

__all__ = ["ValidationPlateau"]


class ValidationPlateau(StoppingCriterion):
    """Stop when a validation metric has not improved for ``patience`` rounds.

    A round improves on the best value so far when it beats it by more than
    ``min_delta`` (``value > best + min_delta``, or ``value < best - min_delta`` with
    ``mode="min"``). The loop stops in the ``patience``-th consecutive round without
    an improvement; an improvement restarts the count.

    Parameters
    ----------
    metric : str, default="accuracy"
        Key of ``Observation.metrics`` to watch.
    patience : int, default=3
        Number of consecutive rounds without improvement that stop the loop, ``>= 1``.
    min_delta : float, default=0.0
        Smallest change that counts as an improvement, ``>= 0``.
    mode : {"max", "min"}, default="max"
        "max" when higher is better (accuracy, F1), "min" when lower is better (loss,
        error rate).

    Attributes
    ----------
    best_ : float or None
        Best value seen so far.
    best_round_ : int or None
        Round in which ``best_`` was seen.
    wait_ : int
        Consecutive rounds without an improvement.

    Notes
    -----
    The validation set must stay fixed across rounds for the values to be comparable.
    A small validation set is noisy: raise ``patience`` or ``min_delta`` accordingly.

    References
    ----------
    .. [1] L. Prechelt, "Early stopping - but when?", in *Neural Networks: Tricks of
       the Trade*, Springer, 1998, pp. 55-69.
    .. [2] F. Laws and H. Schütze, "Stopping criteria for active learning of named
       entity recognition", in Proc. COLING, 2008, pp. 465-472.
    """

    name: ClassVar[str] = "validation_plateau"
    summary: ClassVar[str] = (
        "Stop when a validation metric has not improved by min_delta for `patience` rounds."
    )
    reference: ClassVar[str] = "Prechelt (1998); Laws & Schütze (2008), COLING"

    def __init__(
        self,
        metric: str = "accuracy",
        patience: int = 3,
        min_delta: float = 0.0,
        mode: str = "max",
    ) -> None:
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"metric must be a non-empty metric name, got {metric!r}")
        check_number(patience, "patience", low=1, integer=True)
        check_number(min_delta, "min_delta", low=0.0)
        check_choice(mode, "mode", ("max", "min"))
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.reset()

    def _reset(self) -> None:
        self.best_: float | None = None
        self.best_round_: int | None = None
        self.wait_ = 0

    def _improves(self, value: float, best: float) -> bool:
        if self.mode == "max":
            return value > best + self.min_delta
        return value < best - self.min_delta

    def _decide(self, obs: Observation) -> StopDecision:
        value = read_metric(obs, self.metric, self.name)
        if self.best_ is None or self._improves(value, self.best_):
            previous = self.best_
            self.best_, self.best_round_, self.wait_ = value, int(obs.round), 0
            if previous is None:
                return StopDecision(False, f"first {self.metric} value: {value:.4g}")
            return StopDecision(
                False, f"{self.metric} improved to {value:.4g} (from {previous:.4g})"
            )
        self.wait_ += 1
        since = (
            f"{self.wait_} round{'s' if self.wait_ != 1 else ''} "
            f"(best {self.best_:.4g} in round {self.best_round_})"
        )
        if self.wait_ >= self.patience:
            return self._fire(
                f"{self.metric} has not improved by more than {self.min_delta} for {since}"
            )
        return StopDecision(
            False,
            f"{self.metric} {value:.4g}, no improvement for {since}; patience {self.patience}",
        )

    def _get_state(self) -> dict[str, Any]:
        return {"best": self.best_, "best_round": self.best_round_, "wait": self.wait_}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        best, best_round, wait = state["best"], state["best_round"], int(state["wait"])
        self.best_ = None if best is None else float(best)
        self.best_round_ = None if best_round is None else int(best_round)
        self.wait_ = wait
