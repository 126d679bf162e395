"""Stop when a validation KPI reaches its target."""

from __future__ import annotations

from typing import ClassVar

from exemplar.errors import ConfigError
from exemplar.stopping.base import (
    Observation,
    StopDecision,
    StoppingCriterion,
    check_choice,
    check_number,
    read_metric,
)

__all__ = ["KPIReached"]


class KPIReached(StoppingCriterion):
    """Stop as soon as a validation metric reaches a target value.

    Parameters
    ----------
    target : float
        The value to reach.
    metric : str, default="accuracy"
        Key of ``Observation.metrics`` to read.
    mode : {"max", "min"}, default="max"
        "max": stop when ``metric >= target`` (higher is better, e.g. accuracy).
        "min": stop when ``metric <= target`` (lower is better, e.g. error rate, loss).

    Notes
    -----
    The criterion is only as reliable as the validation set behind the metric: with
    ``m`` validation items an accuracy estimate has a standard error of about
    ``sqrt(a (1 - a) / m)``. It keeps no state beyond the last decision.

    References
    ----------
    .. [1] A. Vlachos, "A stopping criterion for active learning", Computer Speech &
       Language, 22(3), 295-312, 2008 (performance-based stopping; a target on held-out
       data is the practitioner's form).
    """

    name: ClassVar[str] = "kpi_reached"
    summary: ClassVar[str] = "Stop once a validation metric reaches a target value."
    reference: ClassVar[str] = "Practice; cf. Vlachos (2008), Computer Speech & Language"

    def __init__(self, target: float, metric: str = "accuracy", mode: str = "max") -> None:
        check_number(target, "target")
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"metric must be a non-empty metric name, got {metric!r}")
        check_choice(mode, "mode", ("max", "min"))
        self.target = target
        self.metric = metric
        self.mode = mode
        self.reset()

    def _decide(self, obs: Observation) -> StopDecision:
        value = read_metric(obs, self.metric, self.name)
        reached = value >= self.target if self.mode == "max" else value <= self.target
        op = ">=" if self.mode == "max" else "<="
        if reached:
            return self._fire(f"{self.metric} {value:.4g} {op} target {self.target}")
        gap = abs(value - self.target)
        return StopDecision(
            False, f"{self.metric} {value:.4g}, target {op} {self.target} ({gap:.4g} to go)"
        )
