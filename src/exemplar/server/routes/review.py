"""The review API: labels ordered by risk, and a reviewer's accept / correct / reject.

The ranking and the decision are the project's review service
(:mod:`exemplar.project.review`, also behind ``exemplar review``); this module maps them to
HTTP. The ``/review`` page is in :mod:`exemplar.server.routes.pages`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from exemplar.errors import NothingToReviewError, ReviewError
from exemplar.project import Project
from exemplar.project.review import review_label, review_rows
from exemplar.server.deps import API_PREFIX, PathId, Reviewer, State
from exemplar.server.schemas import ReviewIn, ReviewOut
from exemplar.store.labels import UnknownClassError
from exemplar.store.schema import Label

__all__ = ["review", "router"]


def review(project: Project, item_id: int, reviewer: str, body: ReviewIn) -> Label:
    """Append the reviewer's decision to the item's label history (404/422 on bad input)."""
    try:
        return review_label(project, item_id, reviewer, body.action, body.label)
    except NothingToReviewError as exc:
        raise HTTPException(404, str(exc)) from exc
    except (ReviewError, UnknownClassError) as exc:
        raise HTTPException(422, str(exc)) from exc


def router() -> APIRouter:
    """The review API (reviewers and admins)."""
    api = APIRouter(tags=["review"])

    @api.get(f"{API_PREFIX}/review")
    def list_review(
        _user: Reviewer, state: State, limit: int = 50, include_reviewed: bool = False
    ) -> dict[str, Any]:
        """Current labels, riskiest first."""
        limit = max(1, min(limit, 1000))
        rows = review_rows(state.project, limit=limit, include_reviewed=include_reviewed)
        return {"items": rows, "classes": state.project.classes}

    @api.post(f"{API_PREFIX}/review/{{item_id}}", response_model=ReviewOut)
    def post_review(item_id: PathId, body: ReviewIn, user: Reviewer, state: State) -> ReviewOut:
        """Accept, correct or reject an item's current label (appends a history row)."""
        written = review(state.project, item_id, user.name, body)
        return ReviewOut(
            label_id=written.id,
            item_id=written.item_id,
            label=written.label,
            status=written.status,
            annotator=written.annotator,
        )

    return api
