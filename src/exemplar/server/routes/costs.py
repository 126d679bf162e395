"""The labeling-cost API: ``GET /api/v1/costs`` (recorded seconds and the cost model).

What it returns is :func:`exemplar.project.costs.label_costs`, the service behind
``exemplar costs`` too (docs/costs.md). It names every annotator's times, so only
reviewers and admins may read it; the report is cached until the labels change.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from exemplar.project.costs import label_costs
from exemplar.server.deps import API_PREFIX, Reviewer, State

__all__ = ["router"]


def router() -> APIRouter:
    """``GET /api/v1/costs`` (reviewers and admins)."""
    api = APIRouter(tags=["costs"])

    @api.get(f"{API_PREFIX}/costs")
    def get_costs(_user: Reviewer, state: State) -> dict[str, Any]:
        """Seconds per label (overall, per class, per annotator) and the learned cost model."""
        return label_costs(state.project)

    return api
