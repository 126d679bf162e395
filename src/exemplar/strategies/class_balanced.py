"""Class-balanced selection: spend the batch on the classes that have the fewest labels."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.errors import ConfigError
from exemplar.strategies.base import QueryContext, ScoringStrategy, Strategy, top_k
from exemplar.strategies.registry import get_strategy

__all__ = ["ClassBalanced"]


class ClassBalanced(Strategy):
    """Split the batch across predicted classes, giving rare classes the largest share.

    Each unlabeled item is assigned to its predicted (arg-max) class. Class ``c`` gets a
    quota proportional to ``1 / (n_c + 1)``, where ``n_c`` counts its labeled items, so a
    class with few labels is mined hardest (rare-class mining). Within each class the
    base strategy's utility ranks the candidates. Quota a class cannot fill (too few
    candidates predicted for it) goes to the best remaining items of any class.

    Parameters
    ----------
    base : str, default="margin"
        A row-wise (scoring) strategy that ranks items within each class.

    Notes
    -----
    Without ``y_labeled`` all classes get equal quotas. Labels are matched to probability
    columns through ``Predictions.classes`` (or taken as column positions when absent).

    References
    ----------
    Ertekin, S., Huang, J., Bottou, L., & Giles, L. (2007). Learning on the border: active
    learning in imbalanced data classification. CIKM.
    Bengar, J. Z., van de Weijer, J., Fuentes, L. L., & Raducanu, B. (2022). Class-balanced
    active learning for image classification. WACV.
    """

    name: ClassVar[str] = "class_balanced"
    summary: ClassVar[str] = (
        "base utility within predicted classes, batch share favouring rare classes"
    )
    reference: ClassVar[str] = "Ertekin et al. 2007, CIKM; Bengar et al. 2022, WACV"

    def __init__(self, base: str = "margin") -> None:
        self.base = base

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        assert ctx.predictions is not None
        base = get_strategy(self.base)
        if not isinstance(base, ScoringStrategy):
            raise ConfigError(f"class_balanced needs a scoring strategy as base, not {self.base!r}")
        cand = ctx.predictions.take(ctx.unlabeled)
        proba = cand.require_proba()
        scores = base.utility(cand)
        predicted = proba.argmax(axis=1)
        n_classes = proba.shape[1]
        counts = _labeled_counts(ctx, n_classes)
        quotas = _allocate(ctx.batch_size, 1.0 / (counts + 1.0))
        chosen: list[np.ndarray] = []
        for c in range(n_classes):
            members = np.flatnonzero(predicted == c)
            if members.size and quotas[c]:
                chosen.append(members[top_k(scores[members], min(quotas[c], members.size))])
        picked = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
        short = ctx.batch_size - picked.size
        if short:
            rest = np.setdiff1d(np.arange(scores.size), picked, assume_unique=True)
            picked = np.concatenate([picked, rest[top_k(scores[rest], short)]])
        picked = picked[np.argsort(-scores[picked], kind="stable")]
        return ctx.unlabeled[picked], scores


def _labeled_counts(ctx: QueryContext, n_classes: int) -> np.ndarray:
    counts = np.zeros(n_classes)
    if ctx.y_labeled is None or ctx.y_labeled.size == 0:
        return counts
    classes = ctx.predictions.classes if ctx.predictions is not None else None
    if classes is not None and len(classes) == n_classes:
        cols = np.searchsorted(classes, ctx.y_labeled)
        known = (cols < n_classes) & (classes[np.minimum(cols, n_classes - 1)] == ctx.y_labeled)
        np.add.at(counts, cols[known], 1)
    elif np.issubdtype(ctx.y_labeled.dtype, np.integer):
        valid = (ctx.y_labeled >= 0) & (ctx.y_labeled < n_classes)
        np.add.at(counts, ctx.y_labeled[valid], 1)
    return counts


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Largest-remainder split of ``total`` in proportion to ``weights``."""
    share = weights / weights.sum() * total
    quotas = np.floor(share).astype(np.int64)
    remainder = total - int(quotas.sum())
    if remainder:
        quotas[np.argsort(-(share - quotas), kind="stable")[:remainder]] += 1
    return quotas
