"""The curation API (issue #12): verify proposals, find label errors and redundant items,
split and merge classes, and review a class's exemplars, under ``/api/v1/curation``.

Every route calls the project's curation facade (:mod:`exemplar.project.curation`, also
behind ``exemplar curate``); this module only maps it to HTTP. The routes are plain
``def`` functions, so FastAPI runs each blocking database or model call in its thread pool,
as the review and objects routes do.

Who may do what follows the roles as the rest of the API uses them:

- **every role** (annotators too) reads the verification queue and verifies or rejects a
  proposal: that is labeling (an annotator already verifies and rejects a model's object
  proposals through the objects API);
- **reviewers and admins** do everything else: read the operations and the per-class
  gallery (like ``GET /review``, they show every annotator's labels and their suspected
  errors) and every write that changes labels in bulk or proposes to (propose, find,
  decide, apply, undo, dismiss, split, merge).

The reviewer (or verifier) recorded is the logged-in user. Errors keep the library's
message in ``detail``: 404 for an unknown operation, proposal or class, 409 when the state
forbids it (an operation no longer proposed, a proposal already decided, no trained model
yet), 400 for anything else wrong with the request. Item file paths are never sent.

The pages ``/curate`` (the verification queue with one key per proposal, and the
operations) and ``/gallery?label=C`` (a class's exemplars as thumbnails, riskiest first)
are here too (:func:`pages`); their scripts are ``static/curate.js`` and
``static/gallery.js``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from exemplar.errors import ExemplarError, StoreError
from exemplar.project import Project
from exemplar.project import curation as facade
from exemplar.server.deps import (
    API_PREFIX,
    Labeler,
    PathId,
    Reviewer,
    State,
    page_user,
    templates,
)
from exemplar.server.routes.pages import class_keys
from exemplar.store.accounts import Role
from exemplar.store.curation import CurationConflict, CurationNotFound
from exemplar.store.schema import Annotation, Item

__all__ = [
    "ApplyIn",
    "ApplyOut",
    "CandidateOut",
    "DecisionsIn",
    "DecisionsOut",
    "FindIn",
    "GalleryEntryOut",
    "GalleryOut",
    "MergeIn",
    "OperationDetailOut",
    "OperationOut",
    "ProposalOut",
    "ProposeIn",
    "ProposeOut",
    "SplitIn",
    "VerdictOut",
    "VerificationOut",
    "VerifyIn",
    "curation_http_error",
    "pages",
    "router",
]

PREFIX = f"{API_PREFIX}/curation"
#: Keys the ``/curate`` page reserves: accept, reject (r or x), move down / up, help.
CURATE_KEYS = frozenset({"a", "r", "x", "j", "k", "?"})
_REVIEWERS = (Role.REVIEWER.value, Role.ADMIN.value)
#: Most rows one page of the queue, an operation or the gallery returns.
MAX_PAGE = 1000

ClassName = Annotated[str, Field(min_length=1, max_length=255)]
Coordinate = Annotated[float, Field(allow_inf_nan=False)]

# -- request and response models -------------------------------------------------------------


class ProposalOut(BaseModel):
    """One open proposal of the verification queue."""

    kind: Literal["label", "object"]
    id: int = Field(description="the label row (kind label) or object id (kind object)")
    item_id: int
    item_kind: str | None = Field(description="image, text or features")
    text: str | None
    label: str | None
    confidence: float | None
    model_version: str | None
    box: list[float] | None = Field(description="[x0, y0, x1, y1] for an object proposal")


class VerificationOut(BaseModel):
    """A page of the verification queue and how many proposals match in all."""

    total: int
    order: str
    classes: list[str]
    items: list[ProposalOut]


class VerifyIn(BaseModel):
    """Accept a proposal, optionally as another class or with a corrected box."""

    model_config = ConfigDict(extra="forbid")

    label: ClassName | None = None
    box: Annotated[list[Coordinate], Field(min_length=4, max_length=4)] | None = None


class VerdictOut(BaseModel):
    """The row a verify or reject appended."""

    kind: Literal["label", "object"]
    id: int
    written: int = Field(description="id of the label or annotation row written")


class ProposeIn(BaseModel):
    """Let the newest model label a sample of the pool."""

    model_config = ConfigDict(extra="forbid")

    sample: int | None = Field(default=None, ge=0, description="pool items (0: all)")
    seed: int = 0


class ProposeOut(BaseModel):
    """The model version that proposed, and how many proposals it wrote."""

    model_version: str
    proposed: int


Step = Literal["label_errors", "prune"]


def _all_steps() -> list[Step]:
    return ["label_errors", "prune"]


class FindIn(BaseModel):
    """Run curation steps now; each records an operation a reviewer decides on."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(default_factory=_all_steps, min_length=1)
    seed: int = 0


class OperationOut(BaseModel):
    """A recorded operation with its candidates counted by decision."""

    id: int
    kind: str
    status: str
    summary: str | None
    params: dict[str, Any]
    cycle_id: int | None
    created_by: str | None
    decided_by: str | None
    created_at: str
    updated_at: str
    candidates: dict[str, int]


class CandidateOut(BaseModel):
    """One candidate of an operation (an item, or an object of an image)."""

    id: int
    item_id: int
    object_id: int | None
    item_kind: str | None
    text: str | None
    reason: str | None
    score: float | None
    current_label: str | None
    suggested_label: str | None
    detail: dict[str, Any] | None
    decision: str
    decided_by: str | None
    written: dict[str, Any] | None
    box: list[float] | None = None


class OperationDetailOut(OperationOut):
    """An operation and one page of its candidates."""

    items: list[CandidateOut]
    classes: list[str]


class DecisionsIn(BaseModel):
    """Reviewer decisions per candidate id, and chosen classes where the suggestion is wrong."""

    model_config = ConfigDict(extra="forbid")

    decisions: dict[int, Literal["accepted", "declined"]] = Field(default_factory=dict)
    labels: dict[int, ClassName] = Field(default_factory=dict)


class DecisionsOut(BaseModel):
    """How many decisions were recorded."""

    operation_id: int
    decided: int


class ApplyIn(BaseModel):
    """Which candidates an apply takes."""

    model_config = ConfigDict(extra="forbid")

    all_pending: bool = Field(default=False, description="accept undecided candidates too")


class ApplyOut(BaseModel):
    """What an apply or undo wrote, and the candidates it skipped (changed since)."""

    operation_id: int
    status: str
    written: int
    skipped: list[str]


class SplitIn(BaseModel):
    """Propose splitting a class: name the new classes (``into``), or give their number."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    class_: ClassName = Field(alias="class")
    into: list[ClassName] | None = Field(default=None, min_length=2)
    n: int | None = Field(default=None, ge=2, le=50)


class MergeIn(BaseModel):
    """Propose merging ``classes`` into ``into`` (a new class, or one of them)."""

    model_config = ConfigDict(extra="forbid")

    classes: list[ClassName] = Field(min_length=1)
    into: ClassName


class GalleryEntryOut(BaseModel):
    """One exemplar of a class: an item, or an object (with its box) of an image."""

    item_id: int
    object_id: int | None
    item_kind: str | None
    risk: float
    box: list[float] | None = None
    suspect: dict[str, Any] | None
    text: str | None
    width: int | None
    height: int | None


class GalleryOut(BaseModel):
    """One page of a class's exemplars, riskiest first, and the class count."""

    label: str
    total: int
    classes: list[str]
    items: list[GalleryEntryOut]


# -- errors ----------------------------------------------------------------------------------


def curation_http_error(exc: ExemplarError) -> HTTPException:
    """The HTTP error of a curation failure, its message kept as ``detail``.

    404: an unknown operation, proposal or object (:class:`CurationNotFound`, also the
    gallery's unknown class in the path); 409: the state forbids it
    (:class:`CurationConflict`); 400: anything else. Database failures
    (:class:`~exemplar.errors.StoreError`) propagate to the app's 503 handler.
    """
    if isinstance(exc, StoreError):
        raise exc
    if isinstance(exc, CurationConflict):
        return HTTPException(409, str(exc))
    if isinstance(exc, CurationNotFound):
        return HTTPException(404, str(exc))
    return HTTPException(400, str(exc))


# -- helpers ---------------------------------------------------------------------------------


def _items(project: Project, item_ids: list[int]) -> dict[int, tuple[str, str | None]]:
    """Each item's kind (image, text, features) and text, by id."""
    if not item_ids:
        return {}
    with project.db.read() as s:
        rows = s.execute(
            select(Item.id, Item.kind, Item.text).where(Item.id.in_(sorted(set(item_ids))))
        )
        return {int(i): (str(kind), text) for i, kind, text in rows}


def _object_boxes(project: Project, object_ids: list[int]) -> dict[int, list[float]]:
    """The newest box of each object (candidates of object operations carry no box)."""
    if not object_ids:
        return {}
    newest = (
        select(func.max(Annotation.id))
        .where(Annotation.object_id.in_(sorted(set(object_ids))))
        .group_by(Annotation.object_id)
    )
    with project.db.read() as s:
        rows = s.execute(
            select(
                Annotation.object_id, Annotation.x0, Annotation.y0, Annotation.x1, Annotation.y1
            ).where(Annotation.id.in_(newest))
        )
        return {int(oid): [x0, y0, x1, y1] for oid, x0, y0, x1, y1 in rows}


def _operation_detail(
    project: Project, operation_id: int, limit: int, offset: int
) -> OperationDetailOut:
    found = facade.operation(project, operation_id, limit=limit, offset=offset)
    ids = [c["item_id"] for c in found["items"]]
    items = _items(project, ids)
    boxes = _object_boxes(
        project, [c["object_id"] for c in found["items"] if c["object_id"] is not None]
    )
    for c in found["items"]:
        c["item_kind"], c["text"] = items.get(c["item_id"], (None, None))
        c["box"] = boxes.get(c["object_id"]) if c["object_id"] is not None else None
    classes = list(project.classes)
    for name in found["params"].get("into", []) if found["kind"] == "split" else []:
        if name not in classes:
            classes.append(str(name))
    if found["kind"] == "merge" and found["params"].get("into") not in (None, *classes):
        classes.append(str(found["params"]["into"]))
    return OperationDetailOut.model_validate({**found, "classes": classes})


# -- the router ------------------------------------------------------------------------------


def router() -> APIRouter:
    """The curation API (verification: every role; everything else: reviewers and admins)."""
    api = APIRouter(prefix=PREFIX, tags=["curation"])

    @api.get("/verification", response_model=VerificationOut)
    def get_verification(
        _user: Labeler,
        state: State,
        order: Literal["uncertain", "confident", "class"] = "uncertain",
        min_confidence: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
        max_confidence: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
        label: Annotated[str | None, Query(max_length=255)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> VerificationOut:
        """Open model proposals (classes of items, objects on images), ordered by
        ``uncertain`` (least confident first), ``confident`` or ``class`` (round-robin over
        classes), filtered by a confidence range and a class."""
        try:
            found = facade.verification(
                state.project,
                order=order,
                min_confidence=min_confidence,
                max_confidence=max_confidence,
                label=label,
                limit=limit,
                offset=offset,
            )
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        items = [{**v, "item_kind": v["kind_of_item"]} for v in found["items"]]
        return VerificationOut(
            total=found["total"],
            order=found["order"],
            classes=list(state.project.classes),
            items=[ProposalOut.model_validate(v) for v in items],
        )

    @api.post("/verification/{kind}/{proposal_id}/verify", response_model=VerdictOut)
    def post_verify(
        kind: Literal["label", "object"],
        proposal_id: PathId,
        user: Labeler,
        state: State,
        body: VerifyIn | None = None,
    ) -> VerdictOut:
        """Accept a proposal (as ``label`` or with ``box`` when given): a verified row by
        the logged-in user. 404 for no such proposal, 409 if it was already decided."""
        body = body or VerifyIn()
        try:
            written = facade.verify(
                state.project,
                kind,
                proposal_id,
                reviewer=user.name,
                label=body.label,
                box=body.box,
            )
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        return VerdictOut(kind=kind, id=proposal_id, written=written)

    @api.post("/verification/{kind}/{proposal_id}/reject", response_model=VerdictOut)
    def post_reject(
        kind: Literal["label", "object"], proposal_id: PathId, user: Labeler, state: State
    ) -> VerdictOut:
        """Reject a proposal; a confident object proposal is kept as a hard negative."""
        try:
            written = facade.reject(state.project, kind, proposal_id, reviewer=user.name)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        return VerdictOut(kind=kind, id=proposal_id, written=written)

    @api.post("/propose", response_model=ProposeOut)
    def post_propose(_user: Reviewer, state: State, body: ProposeIn | None = None) -> ProposeOut:
        """The newest model labels a sample of the pool (409 before any model is trained)."""
        body = body or ProposeIn()
        try:
            found = facade.propose_now(state.project, sample=body.sample, seed=body.seed)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        return ProposeOut.model_validate(found)

    @api.post("/find", response_model=list[OperationOut])
    def post_find(user: Reviewer, state: State, body: FindIn | None = None) -> list[OperationOut]:
        """Find label errors (confident learning, annotator disagreement) and/or redundant
        items now; the operations recorded (a step that finds nothing records none)."""
        body = body or FindIn()
        try:
            found = facade.curate(state.project, body.steps, reviewer=user.name, seed=body.seed)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        return [OperationOut.model_validate(op) for op in found]

    @api.get("/operations", response_model=list[OperationOut])
    def get_operations(
        _user: Reviewer,
        state: State,
        kind: Literal["label_errors", "prune", "split", "merge"] | None = None,
        status: Literal["proposed", "applied", "dismissed", "undone"] | None = None,
    ) -> list[OperationOut]:
        """Every recorded operation, newest first."""
        found = facade.operations(state.project, kind=kind, status=status)
        return [OperationOut.model_validate(op) for op in found]

    @api.get("/operations/{operation_id}", response_model=OperationDetailOut)
    def get_operation(
        operation_id: PathId,
        _user: Reviewer,
        state: State,
        limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 200,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> OperationDetailOut:
        """One operation and a page of its candidates, with the classes a decision may name."""
        try:
            return _operation_detail(state.project, operation_id, limit, offset)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc

    @api.post("/operations/{operation_id}/decisions", response_model=DecisionsOut)
    def post_decisions(
        operation_id: PathId, body: DecisionsIn, user: Reviewer, state: State
    ) -> DecisionsOut:
        """Record ``accepted``/``declined`` per candidate id, and a chosen class per
        candidate in ``labels`` (the suggestion replaced). Nothing changes until apply."""
        try:
            decided = facade.decide_candidates(
                state.project,
                operation_id,
                body.decisions,
                reviewer=user.name,
                labels=body.labels or None,
            )
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        return DecisionsOut(operation_id=operation_id, decided=decided)

    @api.post("/operations/{operation_id}/apply", response_model=ApplyOut)
    def post_apply(
        operation_id: PathId, user: Reviewer, state: State, body: ApplyIn | None = None
    ) -> ApplyOut:
        """Apply the accepted candidates (and the undecided ones with ``all_pending``);
        candidates whose item changed since are skipped and listed."""
        body = body or ApplyIn()
        try:
            report = facade.apply(
                state.project, operation_id, reviewer=user.name, accept_pending=body.all_pending
            )
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        return ApplyOut.model_validate(report)

    @api.post("/operations/{operation_id}/undo", response_model=ApplyOut)
    def post_undo(operation_id: PathId, user: Reviewer, state: State) -> ApplyOut:
        """Undo an applied operation: the labels it replaced come back (history kept)."""
        try:
            report = facade.undo(state.project, operation_id, reviewer=user.name)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        return ApplyOut.model_validate(report)

    @api.post("/operations/{operation_id}/dismiss", response_model=OperationOut)
    def post_dismiss(operation_id: PathId, user: Reviewer, state: State) -> OperationOut:
        """Close a proposed operation without changing any label."""
        try:
            facade.dismiss(state.project, operation_id, reviewer=user.name)
            found = facade.operation(state.project, operation_id, limit=0)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        return OperationOut.model_validate(found)

    @api.post("/classes/split", response_model=OperationDetailOut)
    def post_split(body: SplitIn, user: Reviewer, state: State) -> OperationDetailOut:
        """Propose splitting a class by clustering its verified exemplars: into the named
        classes (``into``), into ``n`` classes, or into as many as the silhouette picks."""
        if body.into is not None and body.n is not None and body.n != len(body.into):
            raise HTTPException(400, f"n = {body.n} but into names {len(body.into)} classes")
        try:
            found = facade.split_class(
                state.project,
                body.class_,
                names=body.into,
                n_classes=body.n,
                reviewer=user.name,
            )
            return _operation_detail(state.project, int(found["id"]), 200, 0)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc

    @api.post("/classes/merge", response_model=OperationDetailOut)
    def post_merge(body: MergeIn, user: Reviewer, state: State) -> OperationDetailOut:
        """Propose merging ``classes`` into ``into``."""
        try:
            found = facade.merge_classes(state.project, body.classes, body.into, reviewer=user.name)
            return _operation_detail(state.project, int(found["id"]), 200, 0)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc

    @api.get("/gallery/{label}", response_model=GalleryOut)
    def get_gallery(
        label: str,
        _user: Reviewer,
        state: State,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> GalleryOut:
        """A class's verified exemplars (objects with their boxes), riskiest first, each with
        the open suspicion on it (its operation, reason, score and suggested class)."""
        try:
            found = facade.gallery(state.project, label, limit=limit, offset=offset)
        except ExemplarError as exc:
            raise curation_http_error(exc) from exc
        items = _items(state.project, [e["item_id"] for e in found["items"]])
        for e in found["items"]:
            e["item_kind"] = items.get(e["item_id"], (None, None))[0]
        return GalleryOut.model_validate({**found, "classes": list(state.project.classes)})

    return api


# -- the pages -------------------------------------------------------------------------------


def pages() -> APIRouter:
    """``/curate`` (every role; its operations part for reviewers and admins) and
    ``/gallery?label=C`` (reviewers and admins). Their scripts (``static/curate.js``,
    ``static/gallery.js``) call the API above with the session's CSRF token."""
    html = APIRouter(include_in_schema=False)

    @html.get("/curate")
    def curate_page(request: Request, state: State) -> Response:
        user, csrf = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        classes = state.project.classes
        return templates.TemplateResponse(
            request,
            "curate.html",
            {
                "csrf": csrf,
                "user": user.name,
                "project": state.project.config.project.name,
                "classes": list(zip(classes, class_keys(classes, CURATE_KEYS), strict=True)),
                "reviewer": user.role in _REVIEWERS,
            },
        )

    @html.get("/gallery")
    def gallery_page(request: Request, state: State, label: str = "") -> Response:
        user, csrf = page_user(request, state.project)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        allowed = user.role in _REVIEWERS
        classes = state.project.classes
        return templates.TemplateResponse(
            request,
            "gallery.html",
            {
                "csrf": csrf,
                "user": user.name,
                "project": state.project.config.project.name,
                "classes": classes,
                "label": label if label in classes else (classes[0] if classes else ""),
                "allowed": allowed,
            },
            status_code=200 if allowed else 403,
        )

    return html
