"""The review API: labels ordered by risk, and a reviewer's accept / correct / reject.

Risk of an item's current label (higher is riskier) adds up three signals:

* **disagreement** (+2): at least two annotators' newest human labels of the item differ;
* **model conflict** (+confidence): the newest model's top class differs from the label,
  weighted by the model's probability of that top class;
* **low confidence** (+1 - p): the newest model's probability of the labeled class.

A review never rewrites history: it appends a label row (``source=human``,
``annotator=<reviewer>``, ``strategy=review``), so the old rows stay.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import select

from exemplar.project import Project
from exemplar.server.app import API_PREFIX, PathId, State, require_role
from exemplar.server.items import _model_classes
from exemplar.server.security import new_csrf_token
from exemplar.store.accounts import Role, User, get_user
from exemplar.store.labels import UnknownClassError, add_label, current_labels
from exemplar.store.schema import Item, Label, LabelSource, LabelStatus, ModelVersion

__all__ = ["REVIEW_STRATEGY", "ModelView", "page_user", "review_rows", "router", "templates"]

#: The ``strategy`` of label rows written by a review.
REVIEW_STRATEGY = "review"
#: A labeled class with less model probability than this is flagged ``low-confidence``.
LOW_CONFIDENCE = 0.5

#: The server's templates (Jinja2 autoescapes every ``.html`` template).
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

Reviewer = Annotated[User, Depends(require_role(Role.REVIEWER, Role.ADMIN))]


@dataclass(frozen=True)
class ModelView:
    """The newest model's probabilities over the pool, with its column classes."""

    version: str
    proba: np.ndarray
    classes: list[str]


def newest_model(project: Project) -> ModelView | None:
    """The newest model version whose probability array exists (None before any model)."""
    with project.db.read() as s:
        versions = list(s.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))
    for version in versions:
        name = f"proba-{version.version}"
        if not project.arrays.exists(name):
            continue
        proba = np.asarray(project.arrays.load(name), dtype=np.float64)
        if proba.ndim != 2:
            continue
        classes = _model_classes(project, version, proba.shape[1])
        if classes is not None:
            return ModelView(version.version, proba, classes)
    return None


def _disagreeing_items(rows: list[Label]) -> set[int]:
    """Items where ≥2 annotators' newest human labels name different classes."""
    newest: dict[tuple[int, str], Label] = {}
    for row in rows:  # ordered by id: later rows win
        if row.annotator is not None and row.strategy != REVIEW_STRATEGY:
            newest[(row.item_id, row.annotator)] = row
    classes: dict[int, set[str]] = defaultdict(set)
    for (item_id, _), row in newest.items():
        if row.status == LabelStatus.VERIFIED and row.label is not None:
            classes[item_id].add(row.label)
    return {item_id for item_id, names in classes.items() if len(names) >= 2}


def review_rows(
    project: Project, *, limit: int = 50, include_reviewed: bool = False
) -> list[dict[str, Any]]:
    """Current labels ordered by risk (riskiest first), ``limit`` of them."""
    model = newest_model(project)
    with project.db.read() as s:
        current = [
            c
            for c in current_labels(s, verified_only=False)
            if c.label is not None and c.status != LabelStatus.REJECTED
        ]
        ids = [c.label_id for c in current]
        newest_rows = {row.id: row for row in s.scalars(select(Label).where(Label.id.in_(ids)))}
        human = list(
            s.scalars(select(Label).where(Label.source == LabelSource.HUMAN).order_by(Label.id))
        )
    disagree = _disagreeing_items(human)
    out: list[dict[str, Any]] = []
    for c in current:
        row = newest_rows[c.label_id]
        if row.strategy == REVIEW_STRATEGY and not include_reviewed:
            continue
        risk = 0.0
        reasons: list[str] = []
        proposal: dict[str, Any] | None = None
        if c.item_id in disagree:
            risk += 2.0
            reasons.append("disagreement")
        if model is not None and c.row < model.proba.shape[0]:
            p = model.proba[c.row]
            best = int(p.argmax())
            proposal = {
                "label": model.classes[best],
                "confidence": float(p[best]),
                "model_version": model.version,
            }
            p_label = float(p[model.classes.index(c.label)]) if c.label in model.classes else 0.0
            if model.classes[best] != c.label:
                risk += float(p[best])
                reasons.append("model-conflict")
            risk += 1.0 - p_label
            if p_label < LOW_CONFIDENCE:
                reasons.append("low-confidence")
        out.append(
            {
                "item_id": c.item_id,
                "label_id": c.label_id,
                "label": c.label,
                "status": c.status,
                "source": c.source,
                "annotator": row.annotator,
                "created_at": row.created_at.isoformat() if row.created_at else None,
                "proposal": proposal,
                "risk": round(risk, 6),
                "reasons": reasons,
            }
        )
    out.sort(key=lambda r: (-r["risk"], -r["label_id"]))
    return out[:limit]


class ReviewIn(BaseModel):
    """A reviewer's decision on an item's current label (``label`` only for ``correct``)."""

    action: Literal["accept", "correct", "reject"]
    label: str | None = Field(default=None, max_length=255)


class ReviewOut(BaseModel):
    """The label row the review appended."""

    label_id: int
    item_id: int
    label: str | None
    status: str
    annotator: str | None


def review(project: Project, item_id: int, reviewer: str, body: ReviewIn) -> Label:
    """Append the reviewer's decision to the item's label history."""
    with project.db.session() as s:
        if s.get(Item, item_id) is None:
            raise HTTPException(404, f"no item {item_id}")
        last = s.scalars(
            select(Label).where(Label.item_id == item_id).order_by(Label.id.desc()).limit(1)
        ).first()
        if last is None or last.label is None:
            raise HTTPException(404, f"item {item_id} has no label to review")
        label: str | None = last.label
        status = LabelStatus.VERIFIED
        if body.action == "correct":
            if body.label is None:
                raise HTTPException(422, "action 'correct' needs a label")
            label = body.label
        elif body.action == "reject":
            status = LabelStatus.REJECTED
        try:
            return add_label(
                s,
                item_id,
                label,
                classes=project.classes,
                source=LabelSource.HUMAN,
                status=status,
                annotator=reviewer,
                strategy=REVIEW_STRATEGY,
            )
        except UnknownClassError as exc:
            raise HTTPException(422, str(exc)) from exc


def page_user(request: Request, project: Project) -> tuple[User | None, str]:
    """The session's user (None if logged out) and its CSRF token (made if missing)."""
    user_id = request.session.get("user_id")
    user = get_user(project.db, user_id) if isinstance(user_id, int) else None
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = new_csrf_token()
    return user, token


def router() -> APIRouter:
    """The review API (reviewers and admins) and the ``/review`` page."""
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

    @api.get("/review", include_in_schema=False)
    def review_page(request: Request, state: State) -> Response:
        user, csrf = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        allowed = user.role in (Role.REVIEWER.value, Role.ADMIN.value)
        return templates.TemplateResponse(
            request,
            "review.html",
            {
                "csrf": csrf,
                "user": user.name,
                "project": state.project.config.project.name,
                "classes": state.project.classes,
                "allowed": allowed,
            },
            status_code=200 if allowed else 403,
        )

    return api
