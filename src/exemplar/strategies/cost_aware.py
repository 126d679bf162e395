"""Cost-aware selection: utility per expected second of labeling (Settles et al. 2008)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from exemplar.errors import ConfigError, InvalidPredictionsError, StrategyError
from exemplar.strategies.base import QueryContext, ScoringStrategy, Strategy, top_k
from exemplar.strategies.registry import get_strategy

__all__ = ["CostAware", "return_on_investment"]


def return_on_investment(utility: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Utility per unit of cost, with the utility first rescaled to ``[eps, 1]``.

    Utilities of different strategies live on different scales and may be negative
    (margin's is ``-(p1 - p2)``); a ratio needs a non-negative numerator whose scale does
    not matter, so the candidates' utilities are min-max rescaled (an affine map, which
    keeps their order), floored at ``eps = 1e-3`` so the least useful candidate still
    ranks by its cost.
    """
    u = np.asarray(utility, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    if u.shape != c.shape:
        raise StrategyError(f"{u.size} utilities for {c.size} costs")
    low, high = (float(u.min()), float(u.max())) if u.size else (0.0, 0.0)
    scaled = (u - low) / (high - low) if high > low else np.ones_like(u)
    return np.maximum(scaled, 1e-3) / c


class CostAware(Strategy):
    """Rank by return on investment: the base strategy's utility per expected second.

    With a row-wise base (margin, entropy, BALD, ...), every unlabeled item's utility is
    divided by its expected labeling time, and the best ratios are taken. With a batch
    base (the default's uncertain-then-diverse, k-center, BADGE, TypiClust, ...), the base
    first picks ``factor × batch_size`` candidates, its own balance of utility and
    diversity, and the batch is the best ratios among them (utility: the base's score of
    each candidate, rescaled over the whole pool). The expected times come from a cost model learned on recorded times
    (:class:`exemplar.models.label_cost.LabelCostModel`); a project sets
    ``[selection] cost_aware = true`` and the loop wraps its strategy in this once enough
    labels carry a time.

    Parameters
    ----------
    base : str or Strategy, default="margin"
        Strategy whose utility is weighed against cost: a registered name (built with
        ``base_params``) or a strategy object.
    base_params : dict, optional
        Parameters of the base strategy.
    costs : array of shape (n_items,), optional
        Expected seconds of each dataset row (aligned with the predictions). None: every
        item costs the same, and the ranking is the base's.
    factor : int, default=5
        Candidates per batch slot drawn from a batch base.

    References
    ----------
    Settles, B., Craven, M., & Friedland, L. (2008). Active learning with real annotation
    costs. NIPS Workshop on Cost-Sensitive Learning.
    """

    name: ClassVar[str] = "cost_aware"
    summary: ClassVar[str] = "base utility per expected second of labeling (return on investment)"
    reference: ClassVar[str] = "Settles, Craven & Friedland 2008"
    requires: ClassVar[frozenset[str]] = frozenset({"proba"})

    def __init__(
        self,
        base: str | Strategy = "margin",
        base_params: dict[str, Any] | None = None,
        costs: np.ndarray | None = None,
        factor: int = 5,
    ) -> None:
        self.base = base
        self.base_params = base_params
        self.costs = costs
        self.factor = factor

    @property
    def base_strategy(self) -> Strategy:
        """The wrapped strategy (built from the registry when given by name)."""
        if isinstance(self.base, Strategy):
            if isinstance(self.base, CostAware):
                raise ConfigError("cost_aware cannot wrap itself")
            return self.base
        if self.base == self.name:
            raise ConfigError("cost_aware cannot wrap itself")
        return get_strategy(self.base, **(self.base_params or {}))

    @property
    def row_scorer(self) -> ScoringStrategy | None:
        """The base's row-wise scorer (streaming scoring keeps its utility)."""
        return self.base_strategy.row_scorer

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ConfigError(f"factor must be an integer of at least 1, got {self.factor!r}")
        base = self.base_strategy
        costs = self._costs(ctx)
        if isinstance(base, ScoringStrategy):
            utility = np.asarray(
                base.query(
                    ctx.predictions,
                    ctx.unlabeled,
                    ctx.labeled,
                    ctx.batch_size,
                    y_labeled=ctx.y_labeled,
                    random_state=ctx.rng,
                    return_scores=True,
                    reduced=ctx.reduced,
                )[1]
            )
            roi = return_on_investment(utility, costs)
            return ctx.unlabeled[top_k(roi, ctx.batch_size)], roi
        m = min(ctx.unlabeled.size, self.factor * ctx.batch_size)
        cand, scores = base.query(
            ctx.predictions,
            ctx.unlabeled,
            ctx.labeled,
            m,
            y_labeled=ctx.y_labeled,
            random_state=ctx.rng,
            return_scores=True,
            reduced=ctx.reduced if base.row_scorer is not None else None,
        )
        order = np.argsort(ctx.unlabeled, kind="stable")
        position = order[np.searchsorted(ctx.unlabeled, cand, sorter=order)]
        # Rescaled over every unlabeled item, so a candidate's utility keeps its standing
        # in the pool (the least useful candidate is not made worthless).
        roi = return_on_investment(np.asarray(scores), costs)
        return cand[top_k(roi[position], ctx.batch_size)], roi

    def _costs(self, ctx: QueryContext) -> np.ndarray:
        """Expected seconds of ``ctx.unlabeled`` (ones when no costs were given)."""
        if self.costs is None:
            return np.ones(ctx.unlabeled.size)
        costs = np.asarray(self.costs, dtype=np.float64)
        n_items = ctx.predictions.n_items if ctx.predictions is not None else None
        if costs.ndim != 1 or (n_items is not None and costs.size != n_items):
            raise InvalidPredictionsError(
                f"costs must have one value per dataset row ({n_items}), got shape {costs.shape}"
            )
        if ctx.unlabeled.max() >= costs.size:
            raise InvalidPredictionsError("costs do not cover every unlabeled row")
        picked = costs[ctx.unlabeled]
        if not np.isfinite(picked).all() or (picked <= 0).any():
            raise InvalidPredictionsError("costs must be finite and positive")
        return picked
