"""Stream-based active learning: items arrive one at a time, and each is asked for at once.

The pure core of stream mode (numpy only): budget managers (:mod:`exemplar.stream.budget`)
and the utility of an arriving item (:mod:`exemplar.stream.utility`). The stream learner
that retrains a model and logs the decisions is :mod:`exemplar.loop.stream`.
"""

from exemplar.stream.budget import (
    MANAGERS,
    BalancedIncremental,
    BudgetManager,
    Decision,
    FixedUncertainty,
    RandomBudget,
    Split,
    VariableUncertainty,
    make_manager,
)
from exemplar.stream.utility import uncertainty

__all__ = [
    "MANAGERS",
    "BalancedIncremental",
    "BudgetManager",
    "Decision",
    "FixedUncertainty",
    "RandomBudget",
    "Split",
    "VariableUncertainty",
    "make_manager",
    "uncertainty",
]
