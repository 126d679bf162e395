"""Does active learning pay for itself? A cost model from measured label savings.

"A brief introduction to active learning" (the project's seed) frames the question:
active learning is worth its engineering cost only if the labels it saves, times the cost
of a label, exceed that cost. Savings are measured in the simulator as the labels random
sampling needs to reach a target score minus the labels the strategy needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["CostEstimate", "estimate_cost"]


@dataclass(frozen=True)
class CostEstimate:
    """The outcome of the cost model.

    Attributes
    ----------
    labels_saved : float
        Labels random sampling needs to reach the target minus the strategy's (may be < 0).
    saved_fraction : float
        ``labels_saved / labels_random``.
    label_savings : float
        ``labels_saved * label_cost``.
    net_benefit : float
        ``label_savings - engineering_cost``.
    pays_off : bool
        True if the net benefit is positive on this pool.
    break_even_pool_size : float or None
        Pool size from which the savings cover the engineering cost, assuming the labels
        needed grow in proportion to the pool; None if the strategy saves nothing.
    explanation : str
        One plain sentence for the report.
    """

    label_cost: float
    engineering_cost: float
    labels_random: float
    labels_strategy: float
    labels_saved: float
    saved_fraction: float
    label_savings: float
    net_benefit: float
    pays_off: bool
    pool_size: int
    break_even_pool_size: float | None
    explanation: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def estimate_cost(
    labels_random: float,
    labels_strategy: float,
    pool_size: int,
    label_cost: float,
    engineering_cost: float,
    strategy: str = "active learning",
) -> CostEstimate:
    """Compare label savings with the one-off engineering cost of running active learning.

    Parameters
    ----------
    labels_random, labels_strategy : float
        Labels needed to reach the same target score by random sampling and by the strategy.
    pool_size : int
        Size of the unlabeled pool the measurement came from.
    label_cost : float
        Cost of one expert label (any currency).
    engineering_cost : float
        One-off cost of setting up and running active learning, same currency.
    """
    if label_cost < 0 or engineering_cost < 0:
        raise ValueError("costs must be non-negative")
    saved = labels_random - labels_strategy
    fraction = saved / labels_random if labels_random > 0 else 0.0
    savings = saved * label_cost
    net = savings - engineering_cost
    pays = net > 0
    if saved > 0 and label_cost > 0:
        break_even: float | None = (
            math.ceil(pool_size * engineering_cost / savings) if engineering_cost else 0.0
        )
    else:
        break_even = None
    if saved <= 0:
        text = (
            f"{strategy} saved no labels over random sampling on this data "
            f"({labels_strategy:.0f} vs {labels_random:.0f}), so it does not pay off at any pool size."
        )
    elif pays:
        text = (
            f"{strategy} needed {labels_strategy:.0f} labels where random needed {labels_random:.0f} "
            f"({fraction:.0%} fewer), saving {savings:,.0f} in labels against {engineering_cost:,.0f} "
            f"of engineering: it pays for itself (net {net:,.0f})."
        )
    else:
        text = (
            f"{strategy} saved {saved:.0f} labels ({fraction:.0%}), worth {savings:,.0f}, less than the "
            f"{engineering_cost:,.0f} engineering cost on this pool of {pool_size:,}; if savings scale "
            f"with the pool it would pay off from about {break_even:,.0f} items."
        )
    return CostEstimate(
        label_cost=label_cost,
        engineering_cost=engineering_cost,
        labels_random=float(labels_random),
        labels_strategy=float(labels_strategy),
        labels_saved=float(saved),
        saved_fraction=float(fraction),
        label_savings=float(savings),
        net_benefit=float(net),
        pays_off=pays,
        pool_size=pool_size,
        break_even_pool_size=None if break_even is None else float(break_even),
        explanation=text,
    )
