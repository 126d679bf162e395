"""The objects API: an item's boxes and outlines, their history, and people's decisions.

Detection and segmentation projects label objects, not items: a model proposes boxes (or
outlines), and an annotator verifies, moves, relabels or rejects them and draws the ones it
missed. The annotations live in the store's append-only ``annotations`` table
(:mod:`exemplar.store.annotations`); this module maps them to HTTP:

- ``GET /api/v1/items/{item_id}/objects``: the item's current objects, its size, the
  project's task and classes.
- ``GET /api/v1/objects/{object_id}/history``: every row of one object, oldest first.
- ``POST /api/v1/queue/{entry_id}/objects``: the whole object set of a leased item in one
  transaction (proposals not mentioned become rejected); it writes the item's label row
  (:data:`~exemplar.store.annotations.OBJECTS_LABEL`) and finishes the queue entry like a
  label submit (``Idempotency-Key`` header for retries).
- ``POST /api/v1/objects/{object_id}/verify|reject|hard-negative`` and ``PATCH
  /api/v1/objects/{object_id}``: one object at a time (a new history row each); the queue
  entry stays open until the set is submitted.

Who may see and change what follows the labeling roles: an annotator works on the items it
holds a lease on; reviewers and admins may read and revise the objects of any item (as they
review any item's label). Hidden ground truth (status ``ground_truth``) is never served.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exemplar.errors import ExemplarError, QueueError, StoreError
from exemplar.project import Project
from exemplar.server.deps import API_PREFIX, Labeler, PathId, State, queue_http_error
from exemplar.server.schemas import (
    MAX_DB_ID,
    DrawnObjectIn,
    ItemObjectsOut,
    ObjectHistoryOut,
    ObjectIn,
    ObjectOut,
    ObjectPatchIn,
    ObjectShapeIn,
    ObjectsIn,
    ObjectsOut,
)
from exemplar.store.accounts import Role, User
from exemplar.store.annotations import (
    OBJECTS_LABEL,
    TOLERANCE_PX,
    AnnotationError,
    AnnotationIn,
    SubmittedObject,
    add_annotations,
    current_annotations,
    lock_item_objects,
    object_history,
    revise,
    submit_objects,
)
from exemplar.store.labels import UnknownClassError
from exemplar.store.schema import (
    Annotation,
    AnnotationStatus,
    Item,
    Label,
    LabelSource,
    QueueEntry,
    QueueStatus,
)

__all__ = ["object_out", "project_task", "router"]

#: Statuses a client is shown: never hidden ground truth, and deleted objects are gone.
VISIBLE_STATUSES = (
    AnnotationStatus.PROPOSED,
    AnnotationStatus.VERIFIED,
    AnnotationStatus.REJECTED,
    AnnotationStatus.HARD_NEGATIVE,
)
#: History shows deleted rows too (what happened to the object), never ground truth.
_SHOWN_IN_HISTORY = (*VISIBLE_STATUSES, AnnotationStatus.DELETED)
#: Roles that may read and revise the objects of any item.
_REVIEWERS = frozenset({Role.REVIEWER.value, Role.ADMIN.value})
_KEY_PATTERN = r"^[A-Za-z0-9_.:-]+$"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=100,
        pattern=_KEY_PATTERN,
        description="Makes a retry of the same submission return the first answer.",
    ),
]


def project_task(project: Project) -> str:
    """The project's task: ``classification``, ``detection`` or ``segmentation``."""
    return str(project.config.project.task)


def _holds(s: Session, user: User, item_id: int) -> bool:
    """Whether ``user`` holds a lease on a queue entry of the item."""
    found = s.scalar(
        select(QueueEntry.id)
        .where(
            QueueEntry.item_id == item_id,
            QueueEntry.annotator == user.name,
            QueueEntry.status == QueueStatus.LEASED,
        )
        .limit(1)
    )
    return found is not None


def _check_access(s: Session, user: User, item_id: int) -> None:
    """403 unless ``user`` may see and change the item's objects."""
    if user.role in _REVIEWERS or _holds(s, user, item_id):
        return
    raise HTTPException(403, f"item {item_id} is not leased to {user.name!r}")


def object_out(row: Annotation) -> ObjectOut:
    """An object's row as the API shows it."""
    return ObjectOut(
        annotation_id=row.id,
        object_id=row.object_id,
        item_id=row.item_id,
        label=row.label,
        geometry=row.geometry,
        box=[row.x0, row.y0, row.x1, row.y1],
        shape=row.shape,
        status=row.status,
        source=row.source,
        annotator=row.annotator,
        model_version=row.model_version,
        confidence=row.confidence,
        cycle_id=row.cycle_id,
        created_at=row.created_at,
        track_id=row.track_id,
        keyframe=row.keyframe,
    )


def _current(s: Session, object_id: int) -> Annotation:
    """The newest row of a visible object (404 for an unknown, deleted or hidden one)."""
    row = s.scalar(
        select(Annotation)
        .where(Annotation.object_id == object_id)
        .order_by(Annotation.id.desc())
        .limit(1)
    )
    if row is None or row.status not in VISIBLE_STATUSES:
        raise HTTPException(404, f"no object {object_id}")
    return row


# -- checks with the object's position in the message ----------------------------------------


def _outside(
    xs: Sequence[float], ys: Sequence[float], width: int | None, height: int | None
) -> bool:
    """Whether a coordinate lies more than the store's tolerance outside the image."""
    low = -TOLERANCE_PX
    if min(xs) < low or min(ys) < low:
        return True
    return (width is not None and max(xs) > width + TOLERANCE_PX) or (
        height is not None and max(ys) > height + TOLERANCE_PX
    )


def _box_problem(box: Sequence[float], width: int | None, height: int | None) -> str | None:
    """What is wrong with a box for an image of ``width`` x ``height``, or None."""
    x0, y0, x1, y1 = box
    if not (x0 < x1 and y0 < y1):
        return f"box {list(box)} is empty or inverted (need x0 < x1 and y0 < y1)"
    if _outside([x0, x1], [y0, y1], width, height):
        size = "" if width is None or height is None else f" {width}x{height}"
        return f"box {list(box)} lies outside the{size} image"
    return None


def _shape_problem(
    geometry: str, shape: ObjectShapeIn, width: int | None, height: int | None
) -> str | None:
    """What is wrong with an object's outline fields for its geometry, or None."""
    if geometry == "box" and (shape.polygons is not None or shape.rle is not None):
        return "geometry 'box' takes no polygons or rle"
    if geometry == "polygon":
        if shape.polygons is None or shape.rle is not None:
            return "geometry 'polygon' needs polygons (and no rle)"
        for k, polygon in enumerate(shape.polygons):
            if len(polygon) % 2:
                return f"polygon {k} has an odd number of coordinates ({len(polygon)})"
            if _outside(polygon[0::2], polygon[1::2], width, height):
                return f"polygon {k} lies outside the image"
    if geometry == "mask":
        if shape.rle is None or shape.polygons is not None:
            return "geometry 'mask' needs rle (and no polygons)"
        if width is not None and height is not None and shape.rle.size != [height, width]:
            return f"rle size {shape.rle.size} is not the image's [height, width] {[height, width]}"
    return None


def _shape(shape: ObjectShapeIn) -> dict[str, Any] | None:
    """The stored ``shape`` of an object's outline fields."""
    if shape.polygons is not None:
        return {"polygons": shape.polygons}
    if shape.rle is not None:
        return {"rle": shape.rle.model_dump()}
    return None


def _invalid(loc: tuple[Any, ...], message: str, value: Any) -> RequestValidationError:
    """A 422 in FastAPI's shape for one located problem."""
    return RequestValidationError(
        [{"type": "value_error", "loc": loc, "msg": message, "input": value}]
    )


def check_objects(
    objects: Sequence[ObjectIn],
    *,
    classes: Sequence[str],
    width: int | None,
    height: int | None,
    item_id: int,
    known: dict[int, str],
) -> None:
    """Check a submitted set before anything is written (422 naming the object's position).

    ``known`` maps the item's visible objects to their geometry. The store checks the same
    again in its transaction; checking here first keeps its messages, which name the
    item's file, from reaching the client.
    """
    seen: set[int] = set()
    for i, obj in enumerate(objects):
        where = ("body", "objects", i)
        if obj.label not in classes:
            message = (
                f"object {i}: unknown class {obj.label!r}; "
                f"the project's classes are: {', '.join(classes)}"
            )
            raise _invalid((*where, "label"), message, obj.label)
        problem = _box_problem(obj.box, width, height)
        if problem is not None:
            raise _invalid((*where, "box"), f"object {i}: {problem}", obj.box)
        problem = _shape_problem(obj.geometry, obj, width, height)
        if problem is not None:
            raise _invalid((*where, "geometry"), f"object {i}: {problem}", obj.geometry)
        if obj.object_id is not None:
            if obj.object_id not in known:
                message = (
                    f"object {i}: object_id {obj.object_id} is not an object of item {item_id}"
                )
                raise _invalid((*where, "object_id"), message, obj.object_id)
            if known[obj.object_id] != obj.geometry:
                message = (
                    f"object {i}: object {obj.object_id} is a {known[obj.object_id]}, "
                    f"not a {obj.geometry}"
                )
                raise _invalid((*where, "geometry"), message, obj.geometry)
            if obj.object_id in seen:
                message = f"object {i}: object_id {obj.object_id} appears twice in the set"
                raise _invalid((*where, "object_id"), message, obj.object_id)
            seen.add(obj.object_id)


# -- the store calls -------------------------------------------------------------------------


def item_objects(project: Project, user: User, item_id: int) -> ItemObjectsOut:
    """The body of ``GET /items/{item_id}/objects`` (403/404 as :func:`_check_access`)."""
    with project.db.read() as s:
        _check_access(s, user, item_id)
        item = s.get(Item, item_id)
        if item is None:
            raise HTTPException(404, f"no item {item_id}")
        rows = current_annotations(s, [item_id], statuses=list(VISIBLE_STATUSES))
        width, height = item.width, item.height
    return ItemObjectsOut(
        item_id=item_id,
        width=width,
        height=height,
        task=project_task(project),
        classes=project.classes,
        objects=[object_out(row) for row in rows],
    )


def history(project: Project, user: User, object_id: int) -> ObjectHistoryOut:
    """The body of ``GET /objects/{object_id}/history`` (hidden ground truth left out)."""
    with project.db.read() as s:
        rows = [r for r in object_history(s, object_id) if r.status in _SHOWN_IN_HISTORY]
        if not rows:
            raise HTTPException(404, f"no object {object_id}")
        _check_access(s, user, rows[0].item_id)
    return ObjectHistoryOut(
        object_id=object_id, item_id=rows[0].item_id, history=[object_out(r) for r in rows]
    )


def submit_set(
    project: Project, user: User, entry_id: int, body: ObjectsIn, key: str | None
) -> ObjectsOut:
    """Check and submit a leased item's object set (see :func:`router`'s POST)."""
    with project.db.read() as s:
        entry = s.get(QueueEntry, entry_id)
        if entry is None:
            raise HTTPException(404, f"no queue entry {entry_id}")
        item_id = entry.item_id
        item = s.get_one(Item, item_id)
        width, height, uri = item.width, item.height, item.uri
        known = {
            row.object_id: row.geometry
            for row in current_annotations(s, [item_id], statuses=list(VISIBLE_STATUSES))
        }
    check_objects(
        body.objects,
        classes=project.classes,
        width=width,
        height=height,
        item_id=item_id,
        known=known,
    )
    submitted = [
        SubmittedObject(
            object_id=obj.object_id,
            label=obj.label,
            box=obj.box,
            geometry=obj.geometry,
            shape=_shape(obj),
            status=obj.status,
        )
        for obj in body.objects
    ]
    try:
        done = submit_objects(
            project.db,
            entry_id,
            user.name,
            submitted,
            classes=project.classes,
            idempotency_key=None if key is None else f"u{user.id}:{key}",
        )
    except (AnnotationError, UnknownClassError) as exc:
        # what only the store can tell (a mask that does not decode): its message names
        # the item's file, which is never sent to clients
        message = str(exc).replace(f" ({uri})", "").replace(uri, f"item {item_id}")
        raise _invalid(("body", "objects"), message, None) from exc
    return ObjectsOut(
        entry_id=entry_id,
        item_id=done.label.item_id,
        label_id=done.label.id,
        verified=done.verified,
        drawn=done.drawn,
        rejected=done.rejected,
        hard_negative=done.hard_negative,
    )


def _row_key(user: User, key: str | None) -> str | None:
    """The stored idempotency key of a one-object write by ``user`` (None: no key)."""
    return None if key is None else f"o{user.id}:{key}"


def _replayed(s: Session, stored_key: str | None) -> Annotation | None:
    """The row a first attempt with ``stored_key`` wrote, if any (a retry's answer)."""
    if stored_key is None:
        return None
    return s.scalar(
        select(Annotation).where(Annotation.idempotency_key.in_([stored_key, f"{stored_key}#0"]))
    )


def _once(
    project: Project,
    stored_key: str | None,
    write: Callable[[Session], Annotation],
    same: Callable[[Annotation], bool],
) -> ObjectOut:
    """Run ``write`` in one write transaction, unless a first attempt with the same key
    already wrote its row (looked up in that transaction); a concurrent duplicate that loses
    the race on the key's uniqueness (PostgreSQL) gets the winner's row.

    ``same`` tells whether a stored row answers this request (the same object, or the same
    item for a drawing): a key reused for another request is a 409, never another answer.
    """

    def answer(row: Annotation) -> ObjectOut:
        if not same(row):
            raise HTTPException(
                409,
                "this Idempotency-Key was already used for another request (object "
                f"{row.object_id}); send a new key for a new action",
            )
        return object_out(row)

    try:
        with project.db.session() as s:
            done = _replayed(s, stored_key)
            if done is not None:
                return answer(done)
            written = write(s)
            s.flush()
            out = object_out(written)
        return out
    except IntegrityError:
        with project.db.read() as s:
            done = _replayed(s, stored_key)
            if done is None:
                raise
            return answer(done)


def revise_object(
    project: Project,
    user: User,
    object_id: int,
    *,
    status: str | None = None,
    patch: ObjectPatchIn | None = None,
    key: str | None = None,
) -> ObjectOut:
    """Append one row to an object's history: a decision (``status``) or a ``patch``.

    With ``key`` (the ``Idempotency-Key`` header), a retry returns the first answer.
    """
    stored_key = _row_key(user, key)
    return _once(
        project,
        stored_key,
        lambda s: _revise(s, project, user, object_id, status, patch, stored_key),
        lambda row: row.object_id == object_id,
    )


def _revise(
    s: Session,
    project: Project,
    user: User,
    object_id: int,
    status: str | None,
    patch: ObjectPatchIn | None,
    stored_key: str | None,
) -> Annotation:
    row = _current(s, object_id)
    _check_access(s, user, row.item_id)
    changes: dict[str, Any] = {}
    if patch is not None:
        item = s.get_one(Item, row.item_id)
        if patch.label is not None:
            if patch.label not in project.classes:
                message = (
                    f"object {object_id}: unknown class {patch.label!r}; "
                    f"the project's classes are: {', '.join(project.classes)}"
                )
                raise _invalid(("body", "label"), message, patch.label)
            changes["label"] = patch.label
        if patch.box is not None:
            problem = _box_problem(patch.box, item.width, item.height)
            if problem is not None:
                raise _invalid(("body", "box"), f"object {object_id}: {problem}", patch.box)
            changes["box"] = tuple(patch.box)
        if patch.polygons is not None or patch.rle is not None:
            problem = _shape_problem(row.geometry, patch, item.width, item.height)
            if problem is not None:
                raise _invalid(("body",), f"object {object_id}: {problem}", row.geometry)
            changes["shape"] = _shape(patch)
    try:
        written = revise(
            s,
            object_id,
            annotator=user.name,
            status=status,
            classes=project.classes,
            idempotency_key=stored_key,
            **changes,
        )
    except (AnnotationError, UnknownClassError) as exc:
        raise _invalid(("body",), str(exc), None) from exc
    return written


def draw_object(
    project: Project, user: User, item_id: int, body: DrawnObjectIn, key: str | None
) -> ObjectOut:
    """Add one object a person drew on item ``item_id`` (verified, source human)."""
    stored_key = _row_key(user, key)

    def write(s: Session) -> Annotation:
        _check_access(s, user, item_id)
        item = s.get(Item, item_id)
        if item is None:
            raise HTTPException(404, f"no item {item_id}")
        drawn = ObjectIn.model_validate(body.model_dump())
        check_objects(
            [drawn],
            classes=project.classes,
            width=item.width,
            height=item.height,
            item_id=item_id,
            known={},
        )
        try:
            (row,) = add_annotations(
                s,
                item_id,
                [AnnotationIn(body.label, tuple(body.box), body.geometry, _shape(body))],
                status=AnnotationStatus.VERIFIED,
                source=LabelSource.HUMAN,
                annotator=user.name,
                classes=project.classes,
                idempotency_key=stored_key,
            )
        except (AnnotationError, UnknownClassError) as exc:
            message = str(exc).replace(f" ({item.uri})", "")
            raise _invalid(("body",), message, None) from exc
        return row

    return _once(
        project, stored_key, write, lambda row: (row.item_id, row.label) == (item_id, body.label)
    )


#: How far back (rows of one person) undo looks for the action to revert.
UNDO_WINDOW = 500
_UNDO_PREFIX = "undo:"
#: Rows written this close to an item's objects label belong to the submission that
#: finished it.
_SAME_SUBMIT = timedelta(seconds=1)


def _undo_key(target_id: int, user: User, key: str | None) -> str:
    """The stored key of the row that undoes row ``target_id`` (with the request's key)."""
    return f"{_UNDO_PREFIX}{target_id}" + ("" if key is None else f":u{user.id}:{key}")


def _undone_id(stored: str | None) -> int | None:
    """The row an undo row reverted (from its stored key), or None for other rows."""
    if not stored or not stored.startswith(_UNDO_PREFIX):
        return None
    return int(stored[len(_UNDO_PREFIX) :].split(":", 1)[0])


def undo_object_action(
    project: Project, user: User, key: str | None, item_id: int | None = None
) -> ObjectOut:
    """Revert ``user``'s newest object action (on item ``item_id``, when given) that is not
    undone yet: append a row that restores the object as it was before (a drawn object is
    deleted again).

    409 when there is nothing to undo, when someone changed the object since (their change
    is never overwritten), or when the item was finished since (its submitted set stays as
    submitted). A retry with the same ``key`` returns the first answer.
    """
    for _attempt in range(3):
        try:
            return _undo_once(project, user, key, item_id)
        except IntegrityError:  # a concurrent undo of the same row won: look again
            continue
    raise HTTPException(409, "the undo collided with another one; try again")


def _undo_once(project: Project, user: User, key: str | None, item_id: int | None) -> ObjectOut:
    with project.db.session() as s:
        query = select(Annotation).where(Annotation.annotator == user.name)
        if item_id is not None:
            query = query.where(Annotation.item_id == item_id)
        mine = list(s.scalars(query.order_by(Annotation.id.desc()).limit(UNDO_WINDOW)))
        if key is not None:
            for row in mine:
                undone_id = _undone_id(row.idempotency_key)
                if undone_id is not None and row.idempotency_key == _undo_key(undone_id, user, key):
                    return object_out(row)  # a retry: the first attempt's answer
        undone = {i for i in map(_undone_id, (r.idempotency_key for r in mine)) if i is not None}
        target = next(
            (r for r in mine if r.id not in undone and _undone_id(r.idempotency_key) is None),
            None,
        )
        if target is None:
            raise HTTPException(409, "nothing to undo")
        _check_access(s, user, target.item_id)
        lock_item_objects(s, target.item_id)
        history = object_history(s, target.object_id)
        # Only this person's own undone actions (and their undo rows) may follow the target.
        later = [
            r
            for r in history
            if r.id > target.id
            and not (
                r.annotator == user.name
                and (r.id in undone or _undone_id(r.idempotency_key) is not None)
            )
        ]
        if later:
            by = later[-1].annotator or later[-1].source
            raise HTTPException(
                409, f"object {target.object_id} was changed since by {by}; nothing undone"
            )
        finished_at = s.scalar(
            select(func.max(Label.created_at)).where(
                Label.item_id == target.item_id, Label.label == OBJECTS_LABEL
            )
        )
        # the submitted set's own rows are written with its label row, a moment apart
        if finished_at is not None and target.created_at <= finished_at + _SAME_SUBMIT:
            raise HTTPException(
                409,
                f"item {target.item_id} was finished since your change to object "
                f"{target.object_id}; nothing undone (a reviewer can still revise it)",
            )
        before = [r for r in history if r.id < target.id]
        source_row = before[-1] if before else target
        restored = {c: getattr(source_row, c) for c in _RESTORED_COLUMNS}
        if not before:
            restored["status"] = AnnotationStatus.DELETED.value
        written = Annotation(
            **restored,
            object_id=target.object_id,
            item_id=target.item_id,
            geometry=target.geometry,
            track_id=target.track_id,
            annotator=user.name,
            idempotency_key=_undo_key(target.id, user, key),
        )
        s.add(written)
        s.flush()
        out = object_out(written)
    return out


#: What undo copies from the row before the undone one (the object's earlier state).
_RESTORED_COLUMNS = (
    "label",
    "x0",
    "y0",
    "x1",
    "y1",
    "shape",
    "status",
    "source",
    "model_version",
    "confidence",
    "cycle_id",
    "keyframe",
)


def delete_object(project: Project, user: User, object_id: int, key: str | None) -> ObjectOut:
    """Delete an object (a ``deleted`` row: it leaves every current view, its history stays)."""
    return revise_object(project, user, object_id, status=AnnotationStatus.DELETED.value, key=key)


def _http_error(exc: ExemplarError) -> HTTPException:
    """A store error of an objects call as HTTP: 422 for bad objects, the queue's statuses
    (404 unknown entry, 409 lost lease) otherwise; anything else propagates."""
    if isinstance(exc, UnknownClassError):
        return HTTPException(422, str(exc))
    if isinstance(exc, QueueError | StoreError):
        return queue_http_error(exc)
    if isinstance(exc, ValueError):
        return HTTPException(422, str(exc))
    raise exc


# -- the router ------------------------------------------------------------------------------


def router() -> APIRouter:
    """The objects API (every role; what each may touch: see the module docstring)."""
    api = APIRouter(prefix=API_PREFIX, tags=["objects"])

    @api.get("/items/{item_id}/objects", response_model=ItemObjectsOut)
    def get_objects(item_id: PathId, user: Labeler, state: State) -> ItemObjectsOut:
        """The item's current objects (model proposals with confidence and model version,
        and people's verified, rejected and hard-negative objects), its width and height,
        and the project's task and classes. Annotators see the items they hold."""
        return item_objects(state.project, user, item_id)

    @api.get("/objects/{object_id}/history", response_model=ObjectHistoryOut)
    def get_history(object_id: PathId, user: Labeler, state: State) -> ObjectHistoryOut:
        """Every row of the object's append-only history, oldest first."""
        return history(state.project, user, object_id)

    @api.post(
        "/queue/{entry_id}/objects",
        response_model=ObjectsOut,
        responses={
            404: {"description": "no such queue entry"},
            409: {"description": "the lease was lost, or the entry is not the caller's"},
        },
    )
    def post_objects(
        entry_id: PathId,
        body: ObjectsIn,
        user: Labeler,
        state: State,
        idempotency_key: IdempotencyKey = None,
    ) -> ObjectsOut:
        """Submit the whole object set of a leased item in one transaction.

        Objects with an ``object_id`` revise that object (verify, move, relabel, reject,
        hard negative); objects without one are drawn. Every model proposal of the item
        not in the set is recorded as rejected. The item's label row is written and its
        queue entry finished, as for a label. 409 if the lease was lost; 422 (naming the
        object's position) for an unknown class or a box outside the image; nothing is
        written on an error. A retry with the same ``Idempotency-Key`` returns the first
        answer.
        """
        try:
            return submit_set(state.project, user, entry_id, body, idempotency_key)
        except ExemplarError as exc:
            raise _http_error(exc) from exc

    def decide(status: str) -> Callable[..., ObjectOut]:
        def endpoint(
            object_id: PathId, user: Labeler, state: State, idempotency_key: IdempotencyKey = None
        ) -> ObjectOut:
            try:
                return revise_object(
                    state.project, user, object_id, status=status, key=idempotency_key
                )
            except ExemplarError as exc:
                raise _http_error(exc) from exc

        return endpoint

    for path, status, summary in (
        ("verify", AnnotationStatus.VERIFIED, "Verify Object"),
        ("reject", AnnotationStatus.REJECTED, "Reject Object"),
        ("hard-negative", AnnotationStatus.HARD_NEGATIVE, "Hard Negative Object"),
    ):
        api.add_api_route(
            f"/objects/{{object_id}}/{path}",
            decide(str(status)),
            methods=["POST"],
            response_model=ObjectOut,
            summary=summary,
            description=(
                f"Record the object as {status.value.replace('_', ' ')} (a new history row; "
                "one key press on a proposal). The queue entry stays open until the item's "
                "object set is submitted."
            ),
            operation_id=f"{path.replace('-', '_')}_object",
        )

    @api.patch("/objects/{object_id}", response_model=ObjectOut)
    def patch_object(
        object_id: PathId,
        body: ObjectPatchIn,
        user: Labeler,
        state: State,
        idempotency_key: IdempotencyKey = None,
    ) -> ObjectOut:
        """Move or resize (``box``), relabel (``label``) or reshape (``polygons``/``rle``)
        an object: a new history row; the old ones stay."""
        try:
            return revise_object(state.project, user, object_id, patch=body, key=idempotency_key)
        except ExemplarError as exc:
            raise _http_error(exc) from exc

    @api.post("/items/{item_id}/objects", response_model=ObjectOut, status_code=201)
    def post_drawn_object(
        item_id: PathId,
        body: DrawnObjectIn,
        user: Labeler,
        state: State,
        idempotency_key: IdempotencyKey = None,
    ) -> ObjectOut:
        """Add one object a person drew (a box, polygon or brush mask): verified, source
        human, the first row of its own history. The queue entry stays open until the
        item's object set is submitted. 422 for an unknown class or a shape outside the
        item; a retry with the same ``Idempotency-Key`` returns the first answer."""
        try:
            return draw_object(state.project, user, item_id, body, idempotency_key)
        except ExemplarError as exc:
            raise _http_error(exc) from exc

    @api.delete("/objects/{object_id}", response_model=ObjectOut)
    def delete_one(
        object_id: PathId, user: Labeler, state: State, idempotency_key: IdempotencyKey = None
    ) -> ObjectOut:
        """Delete an object: a ``deleted`` row hides it from every current view; its
        history stays (undo brings it back)."""
        try:
            return delete_object(state.project, user, object_id, idempotency_key)
        except ExemplarError as exc:
            raise _http_error(exc) from exc

    @api.post(
        "/objects/undo",
        response_model=ObjectOut,
        responses={409: {"description": "nothing to undo, or changed since by someone else"}},
    )
    def undo_one(
        user: Labeler,
        state: State,
        idempotency_key: IdempotencyKey = None,
        item_id: Annotated[
            int | None,
            Query(ge=1, le=MAX_DB_ID, description="Undo only actions on this item."),
        ] = None,
    ) -> ObjectOut:
        """Undo the caller's newest object action (accept, reject, move, relabel, draw,
        delete, ...) not undone yet, on ``item_id`` when given (the labeling app sends the
        item on screen): a new row restores the object as it was before. Undo again to go
        further back. Someone else's later change is never overwritten, and an item
        finished since stays as submitted (409)."""
        try:
            return undo_object_action(state.project, user, idempotency_key, item_id)
        except ExemplarError as exc:
            raise _http_error(exc) from exc

    return api
