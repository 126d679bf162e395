"""Pure metrics: learning-curve statistics and the cost model."""

from exemplar.metrics.cost import CostEstimate, estimate_cost
from exemplar.metrics.curves import (
    PairedDifference,
    labels_to_reach,
    normalized_aulc,
    paired_difference,
    win_tie_loss,
)

__all__ = [
    "CostEstimate",
    "PairedDifference",
    "estimate_cost",
    "labels_to_reach",
    "normalized_aulc",
    "paired_difference",
    "win_tie_loss",
]
