"""Pure metrics: learning-curve statistics, the cost model and detection metrics."""

from exemplar.metrics.cost import CostEstimate, estimate_cost
from exemplar.metrics.curves import (
    PairedDifference,
    labels_to_reach,
    normalized_aulc,
    paired_difference,
    win_tie_loss,
)
from exemplar.metrics.detection import match_boxes, mean_average_precision

__all__ = [
    "CostEstimate",
    "PairedDifference",
    "estimate_cost",
    "labels_to_reach",
    "match_boxes",
    "mean_average_precision",
    "normalized_aulc",
    "paired_difference",
    "win_tie_loss",
]
