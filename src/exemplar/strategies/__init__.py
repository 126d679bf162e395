"""Query strategies (the Data Selector): predictions and index sets in, a batch out.

Every strategy is listed by ``exemplar strategies`` and documented in docs/strategies.md.
"""

from exemplar.strategies.base import QueryContext, ScoringStrategy, Strategy, as_rng, top_k
from exemplar.strategies.random import RandomSampling
from exemplar.strategies.registry import DEFAULT_STRATEGY, STRATEGIES, get_strategy, register
from exemplar.strategies.uncertainty import Entropy, LeastConfidence, Margin, RatioOfConfidence

for _cls in (
    RandomSampling,
    LeastConfidence,
    Margin,
    Entropy,
    RatioOfConfidence,
):
    register(_cls)

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "Entropy",
    "LeastConfidence",
    "Margin",
    "QueryContext",
    "RandomSampling",
    "RatioOfConfidence",
    "ScoringStrategy",
    "Strategy",
    "as_rng",
    "get_strategy",
    "register",
    "top_k",
]
