"""Learning-curve statistics for honest, paired comparisons of strategies."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = [
    "PairedDifference",
    "labels_to_reach",
    "normalized_aulc",
    "paired_difference",
    "win_tie_loss",
]


def normalized_aulc(n_labels: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the learning curve divided by its label range (a mean score in [0, 1]).

    The trapezoid rule over ``(n_labels, scores)``; a curve with a single point returns
    that point's score. Used to summarise a whole learning curve as one number.
    """
    n = np.asarray(n_labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    if n.size != s.size or n.size == 0:
        raise ValueError("n_labels and scores must be non-empty and of equal length")
    if n.size == 1 or n[-1] == n[0]:
        return float(s.mean())
    return float(np.trapezoid(s, n) / (n[-1] - n[0]))


def labels_to_reach(
    n_labels: Sequence[float], scores: Sequence[float], target: float
) -> float | None:
    """Smallest label count at which the curve first reaches ``target`` (None if never)."""
    n = np.asarray(n_labels, dtype=float)
    hit = np.flatnonzero(np.asarray(scores, dtype=float) >= target)
    return float(n[hit[0]]) if hit.size else None


@dataclass(frozen=True)
class PairedDifference:
    """Mean of paired differences ``a - b`` with a t confidence interval and p-value."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n_pairs: int
    confidence: float

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> PairedDifference:
    """Paired difference of two per-seed measurements (Student t; NaN CI for one pair)."""
    x = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = x.size
    mean = float(x.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan, n, confidence)
    sd = float(x.std(ddof=1))
    if sd == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
        return PairedDifference(mean, mean, mean, p, n, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    p_value = float(stats.ttest_rel(np.asarray(a, float), np.asarray(b, float)).pvalue)
    return PairedDifference(mean, mean - half, mean + half, p_value, n, confidence)


def win_tie_loss(
    per_seed: Mapping[str, Sequence[float]], alpha: float = 0.05
) -> dict[str, dict[str, str]]:
    """Pairwise outcome of every strategy against every other by a paired t-test.

    ``result[a][b]`` is ``"win"`` if ``a`` is significantly better than ``b`` at level
    ``alpha``, ``"loss"`` if significantly worse, and ``"tie"`` otherwise.
    """
    names = list(per_seed)
    out: dict[str, dict[str, str]] = {a: {} for a in names}
    for a in names:
        for b in names:
            if a == b:
                out[a][b] = "-"
                continue
            d = paired_difference(per_seed[a], per_seed[b])
            significant = not math.isnan(d.p_value) and d.p_value < alpha
            out[a][b] = ("win" if d.mean > 0 else "loss") if significant else "tie"
    return out
