"""The dashboard API: ``GET /api/v1/dashboard`` for every logged-in role.

What it returns is the project's dashboard service (:func:`exemplar.project.dashboard.dashboard`);
the ``/dashboard`` page is in :mod:`exemplar.server.routes.pages`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from exemplar.project.dashboard import dashboard
from exemplar.server.deps import API_PREFIX, Labeler, State

__all__ = ["router"]


def router() -> APIRouter:
    """``GET /api/v1/dashboard`` (every logged-in role)."""
    api = APIRouter(tags=["dashboard"])

    @api.get(f"{API_PREFIX}/dashboard")
    def get_dashboard(_user: Labeler, state: State) -> dict[str, Any]:
        """Class coverage, throughput, learning curves, cycle, model and stopping status."""
        return dashboard(state.project)

    return api
