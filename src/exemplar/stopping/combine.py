"""Combine stopping criteria: stop when any, or all, of them say so."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from exemplar.errors import ConfigError
from exemplar.stopping.base import Observation, StopDecision, StoppingCriterion

__all__ = ["AllOf", "AnyOf"]


class _Combinator(StoppingCriterion):
    """Shared logic: every child sees every observation, in order, each round."""

    def __init__(self, criteria: Sequence[StoppingCriterion]) -> None:
        if isinstance(criteria, StoppingCriterion) or not isinstance(criteria, Sequence):
            raise ConfigError(
                f"{self.name} takes a list of stopping criteria, got {type(criteria).__name__}"
            )
        if len(criteria) == 0:
            raise ConfigError(f"{self.name} needs at least one stopping criterion")
        for child in criteria:
            if not isinstance(child, StoppingCriterion):
                raise ConfigError(f"{self.name} combines StoppingCriterion objects, got {child!r}")
        if len({id(c) for c in criteria}) != len(criteria):
            raise ConfigError(f"{self.name} received the same criterion object twice")
        self.criteria = criteria
        self.reset()

    def _children(self, obs: Observation) -> list[tuple[StoppingCriterion, StopDecision]]:
        # No short-circuit: stateful children (e.g. stabilizing) must see every round.
        return [(child, child.update(obs)) for child in self.criteria]

    def _reset(self) -> None:
        for child in self.criteria:
            child.reset()

    def _get_state(self) -> dict[str, Any]:
        return {"children": [child.state_dict() for child in self.criteria]}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        children = state["children"]
        if len(children) != len(self.criteria):
            raise ValueError(
                f"the saved state has {len(children)} children, this {self.name} has "
                f"{len(self.criteria)}"
            )
        for child, child_state in zip(self.criteria, children, strict=True):
            child.load_state_dict(child_state)


def _fired(results: list[tuple[StoppingCriterion, StopDecision]]) -> tuple[str, ...]:
    return tuple(name for _, d in results if d.stop for name in d.fired)


def _reasons(results: list[tuple[StoppingCriterion, StopDecision]], stop: bool | None) -> str:
    return "; ".join(
        f"{child.name}: {d.reason}" for child, d in results if stop is None or d.stop is stop
    )


class AnyOf(_Combinator):
    """Stop as soon as any of the given criteria says stop.

    Every child is updated every round (no short-circuit), so stateful criteria keep a
    complete history. The decision's ``fired`` lists the children that said stop and
    its ``reason`` gives their reasons.

    Parameters
    ----------
    criteria : sequence of StoppingCriterion
        At least one criterion; may include other combinators.

    Notes
    -----
    A typical safety net: ``AnyOf([StabilizingPredictions(), LabelBudget(1000)])``
    stops when the model stabilizes, and at the latest when the budget is spent.

    References
    ----------
    .. [1] M. Bloodgood and K. Vijay-Shanker, "A method for stopping active learning
       based on stabilizing predictions and the need for user-adjustable stopping",
       in Proc. CoNLL, 2009 (combining a stopping method with a budget).
    """

    name: ClassVar[str] = "any_of"
    summary: ClassVar[str] = "Stop as soon as any of several criteria says stop."
    reference: ClassVar[str] = "Combinator (cf. Bloodgood & Vijay-Shanker 2009, CoNLL)"

    def _decide(self, obs: Observation) -> StopDecision:
        results = self._children(obs)
        fired = _fired(results)
        if fired:
            return StopDecision(True, _reasons(results, True), fired)
        return StopDecision(False, _reasons(results, None))


class AllOf(_Combinator):
    """Stop when every one of the given criteria says stop in the same round.

    Every child is updated every round. The decision's ``fired`` lists all children
    once they all say stop; until then ``reason`` names those still holding out.

    Parameters
    ----------
    criteria : sequence of StoppingCriterion
        At least one criterion; may include other combinators.

    Notes
    -----
    For example ``AllOf([StabilizingPredictions(), KPIReached(0.9)])`` stops only when the
    model has both stabilized and reached 90% validation accuracy.

    References
    ----------
    .. [1] J. Zhu, H. Wang and E. Hovy, "Multi-criteria-based strategy to stop active
       learning for data annotation", in Proc. COLING, 2008, pp. 1129-1136.
    """

    name: ClassVar[str] = "all_of"
    summary: ClassVar[str] = "Stop when all of several criteria say stop in the same round."
    reference: ClassVar[str] = "Combinator (cf. Zhu, Wang & Hovy 2008, COLING)"

    def _decide(self, obs: Observation) -> StopDecision:
        results = self._children(obs)
        if all(d.stop for _, d in results):
            return StopDecision(True, _reasons(results, True), _fired(results))
        return StopDecision(False, "waiting for " + _reasons(results, False))
