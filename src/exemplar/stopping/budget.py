"""Stop when a labeling budget is spent."""

from __future__ import annotations

from typing import ClassVar

from exemplar.stopping.base import Observation, StopDecision, StoppingCriterion, check_number

__all__ = ["LabelBudget"]


class LabelBudget(StoppingCriterion):
    """Stop once ``budget`` items are labeled.

    Parameters
    ----------
    budget : int
        Maximum number of labeled items, ``>= 1``. The loop stops in the first round
        whose model was trained on at least ``budget`` labels.

    Notes
    -----
    The simplest and most common criterion in practice and the fixed-budget setting of
    most active-learning benchmarks. It keeps no state beyond the last decision.

    References
    ----------
    .. [1] B. Settles, "Active learning literature survey", Computer Sciences Technical
       Report 1648, University of Wisconsin-Madison, 2009 (Sec. 6.7, "Stopping criteria").
    """

    name: ClassVar[str] = "label_budget"
    summary: ClassVar[str] = "Stop once a fixed number of items is labeled."
    reference: ClassVar[str] = "Settles (2009), Active learning literature survey, Sec. 6.7"

    def __init__(self, budget: int) -> None:
        check_number(budget, "budget", low=1, integer=True)
        self.budget = budget
        self.reset()

    def _decide(self, obs: Observation) -> StopDecision:
        if obs.n_labeled >= self.budget:
            return self._fire(f"budget of {self.budget} labels reached ({obs.n_labeled} labeled)")
        return StopDecision(
            False,
            f"{obs.n_labeled} of {self.budget} labels used ({self.budget - obs.n_labeled} left)",
        )
