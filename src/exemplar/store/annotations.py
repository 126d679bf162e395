"""The objects of image items: boxes, polygons and masks, each with an append-only history.

An object's history is rows of ``annotations`` sharing one ``object_id`` (the id of its first
row); its current state is its newest row (:class:`~exemplar.store.schema.Annotation`). A
model's proposal, a person's confirmation, a moved box, a deletion: each is a new row, with
its provenance (source, annotator, model version, confidence, cycle).

Every function takes the caller's session (or Core connection) and writes nothing outside
its transaction, except :func:`submit_objects`, which is one transaction of its own through
the labeling queue's submit path: the item's objects, and its label row
:data:`OBJECTS_LABEL` that the queue, overlap and the label budget count, are written
together or not at all.

Geometry is checked before anything is written: a box is ``x0, y0, x1, y1`` in pixels with
``x1 >= x0`` and ``y1 >= y0``, finite, and inside the item's ``width`` x ``height`` (when
recorded) with a tolerance of :data:`TOLERANCE_PX`; a polygon is
``{"polygons": [[x, y, x, y, ...], ...]}`` (COCO's polygon convention, at least three
points each); a mask is ``{"rle": {"size": [h, w], "counts": str}}`` (COCO's compressed
run-length encoding, checked by decoding it with :mod:`pycocotools.mask`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Table, func, insert, select, text, update
from sqlalchemy.orm import Session

from exemplar.errors import ExemplarError
from exemplar.store.db import Database
from exemplar.store.labels import UnknownClassError, validate_class
from exemplar.store.queue import submit_in_transaction
from exemplar.store.schema import (
    Annotation,
    AnnotationStatus,
    Item,
    Label,
    LabelSource,
    LabelStatus,
    utcnow,
)

__all__ = [
    "GEOMETRIES",
    "OBJECTS_LABEL",
    "TOLERANCE_PX",
    "TRACKER_VERSION_PREFIX",
    "AnnotationError",
    "AnnotationIn",
    "ObjectsSubmission",
    "SubmittedObject",
    "add_annotations",
    "current_annotations",
    "lock_item_objects",
    "object_history",
    "objects_labeled",
    "revise",
    "submit_objects",
]

#: The class of the label row :func:`submit_objects` writes for an item whose objects were
#: labeled: the queue marks the entry done and the ``items`` budget counts the item.
OBJECTS_LABEL = "<objects>"
#: The ``model_version`` of a tracker's proposals on video frames starts with this (then
#: the method, :mod:`exemplar.project.video`): the loop keeps them when it replaces a
#: model's proposals on a frame it queues.
TRACKER_VERSION_PREFIX = "tracker:"
#: The kinds of geometry an object may have.
GEOMETRIES = ("box", "polygon", "mask")
#: How far (pixels) a box or polygon may reach past the item's edges.
TOLERANCE_PX = 1.0
#: The verdicts a person gives an object in :func:`submit_objects`.
SUBMITTED_STATUSES = (
    AnnotationStatus.VERIFIED.value,
    AnnotationStatus.REJECTED.value,
    AnnotationStatus.HARD_NEGATIVE.value,
)
#: Current statuses and sources of the objects the ``objects`` budget counts.
COUNTED_STATUSES = (AnnotationStatus.VERIFIED.value, AnnotationStatus.HARD_NEGATIVE.value)
COUNTED_SOURCES = (LabelSource.HUMAN.value, LabelSource.SIMULATED.value)

_A = cast(Table, Annotation.__table__)
_COLUMNS = tuple(c.name for c in _A.columns)

Box = tuple[float, float, float, float]


class AnnotationError(ExemplarError, ValueError):
    """An object is malformed (its box, polygon or mask), outside its image, or unknown."""


@dataclass(frozen=True)
class AnnotationIn:
    """A new object of an item: class name, box ``x0, y0, x1, y1`` (pixels) and shape.

    ``shape`` is None for a box, ``{"polygons": [[x, y, ...], ...]}`` for a polygon and
    ``{"rle": {"size": [h, w], "counts": str}}`` for a mask; ``box`` is then the shape's
    bounding box. ``confidence`` is a model's score for a proposal.
    """

    label: str
    box: Sequence[float]
    geometry: str = "box"
    shape: Mapping[str, Any] | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class SubmittedObject:
    """One object as an annotator left it: an existing one (``object_id``) or a new one (None).

    ``status`` is the annotator's verdict: ``verified`` (the object is right, as given),
    ``rejected`` (no such object) or ``hard_negative`` (a region that holds no object, worth
    training against).
    """

    object_id: int | None
    label: str
    box: Sequence[float]
    geometry: str = "box"
    shape: Mapping[str, Any] | None = None
    status: str = AnnotationStatus.VERIFIED.value


@dataclass(frozen=True)
class ObjectsSubmission:
    """What :func:`submit_objects` wrote (or, for a retry, wrote the first time).

    ``verified``: existing objects confirmed; ``drawn``: new objects (verified);
    ``rejected``: objects rejected, including proposals the annotator left unmentioned;
    ``hard_negative``: objects marked as hard negatives.
    """

    label: Label
    annotations: tuple[Annotation, ...]
    verified: int
    drawn: int
    rejected: int
    hard_negative: int


# -- checks -----------------------------------------------------------------------------------


def _check_box(where: str, box: Sequence[float], width: int | None, height: int | None) -> Box:
    """``box`` as four floats, or :class:`AnnotationError` naming ``where``."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{where}: the box must be four numbers, got {box!r}") from exc
    if len(values) != 4:
        raise AnnotationError(f"{where}: the box must be four numbers, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise AnnotationError(f"{where}: the box has a non-finite coordinate: {values}")
    x0, y0, x1, y1 = values
    if x1 < x0 or y1 < y0:
        raise AnnotationError(
            f"{where}: the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has x1 < x0 or y1 < y0"
        )
    _check_inside(where, "box", [x0, x1], [y0, y1], width, height)
    return (x0, y0, x1, y1)


def _check_inside(
    where: str,
    what: str,
    xs: Sequence[float],
    ys: Sequence[float],
    width: int | None,
    height: int | None,
) -> None:
    """Raise if a coordinate lies more than :data:`TOLERANCE_PX` outside the item."""
    if width is not None and (min(xs) < -TOLERANCE_PX or max(xs) > width + TOLERANCE_PX):
        raise AnnotationError(
            f"{where}: the {what} reaches x = {min(xs):g}..{max(xs):g}, outside the image's "
            f"width {width}"
        )
    if height is not None and (min(ys) < -TOLERANCE_PX or max(ys) > height + TOLERANCE_PX):
        raise AnnotationError(
            f"{where}: the {what} reaches y = {min(ys):g}..{max(ys):g}, outside the image's "
            f"height {height}"
        )


def _check_polygons(
    where: str, shape: Mapping[str, Any], width: int | None, height: int | None
) -> dict[str, Any]:
    polygons = shape.get("polygons")
    if not isinstance(polygons, list | tuple) or not polygons:
        raise AnnotationError(f'{where}: a polygon needs shape {{"polygons": [[x, y, ...]]}}')
    out: list[list[float]] = []
    for i, polygon in enumerate(polygons):
        try:
            values = [float(v) for v in polygon]
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{where}: polygon {i} is not a list of numbers") from exc
        if len(values) < 6 or len(values) % 2:
            raise AnnotationError(
                f"{where}: polygon {i} needs at least 3 x, y points, got {len(values)} numbers"
            )
        if not all(math.isfinite(v) for v in values):
            raise AnnotationError(f"{where}: polygon {i} has a non-finite coordinate")
        _check_inside(where, f"polygon {i}", values[0::2], values[1::2], width, height)
        out.append(values)
    return {"polygons": out}


def _check_mask(
    where: str, shape: Mapping[str, Any], width: int | None, height: int | None
) -> dict[str, Any]:
    from pycocotools import mask as mask_utils  # only where masks are used

    rle = shape.get("rle")
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise AnnotationError(
            f'{where}: a mask needs shape {{"rle": {{"size": [h, w], "counts": ...}}}}'
        )
    try:
        h, w = (int(v) for v in rle["size"])
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{where}: the mask's size must be [height, width]") from exc
    if h <= 0 or w <= 0:
        raise AnnotationError(f"{where}: the mask's size [{h}, {w}] is empty")
    if (height is not None and h != height) or (width is not None and w != width):
        raise AnnotationError(
            f"{where}: the mask is {h} x {w} (h x w) but the image is {height} x {width}"
        )
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE: store it compressed
        try:
            counts = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)["counts"]
        except (TypeError, ValueError, OverflowError) as exc:
            raise AnnotationError(f"{where}: the mask's run lengths are malformed") from exc
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="replace")
    if not isinstance(counts, bytes) or not counts:
        raise AnnotationError(f"{where}: the mask's counts must be a non-empty COCO RLE string")
    try:
        decoded = mask_utils.decode({"size": [h, w], "counts": counts})
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{where}: the mask's RLE cannot be decoded: {exc}") from exc
    # pycocotools decodes some malformed strings into garbage: a valid RLE encodes back to
    # itself (the encoding is canonical).
    again = mask_utils.encode(np.asfortranarray(decoded.astype(np.uint8)))["counts"]
    if decoded.shape != (h, w) or again != counts:
        raise AnnotationError(f"{where}: the mask's counts do not describe a {h} x {w} mask")
    return {"rle": {"size": [h, w], "counts": counts.decode("ascii")}}


def _check_object(
    where: str,
    box: Sequence[float],
    geometry: str,
    shape: Mapping[str, Any] | None,
    width: int | None,
    height: int | None,
) -> tuple[Box, dict[str, Any] | None]:
    """The checked box and shape of one object (``where`` names it in errors)."""
    if geometry not in GEOMETRIES:
        raise AnnotationError(
            f"{where}: unknown geometry {geometry!r}; expected one of {', '.join(GEOMETRIES)}"
        )
    checked_box = _check_box(where, box, width, height)
    if geometry == "box":
        if shape is not None:
            raise AnnotationError(f"{where}: a box has no shape (geometry 'box'), got {shape!r}")
        return checked_box, None
    if not isinstance(shape, Mapping):
        raise AnnotationError(f"{where}: geometry {geometry!r} needs a shape, got {shape!r}")
    if geometry == "polygon":
        return checked_box, _check_polygons(where, shape, width, height)
    return checked_box, _check_mask(where, shape, width, height)


def _shape_box(shape: dict[str, Any]) -> Box:
    """The bounding box of a checked polygon or mask shape."""
    if "polygons" in shape:
        xs = [x for p in shape["polygons"] for x in p[0::2]]
        ys = [y for p in shape["polygons"] for y in p[1::2]]
        return (min(xs), min(ys), max(xs), max(ys))
    from pycocotools import mask as mask_utils

    rle = shape["rle"]
    x, y, w, h = (float(v) for v in mask_utils.toBbox({**rle, "counts": rle["counts"].encode()}))
    return (x, y, x + w, y + h)


def _check_label(where: str, label: str, classes: Sequence[str]) -> None:
    try:
        validate_class(label, classes)
    except UnknownClassError as exc:
        raise UnknownClassError(f"{where}: {exc}") from None


def _check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    if str(value) not in allowed:
        raise AnnotationError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return str(value)


# -- reading and writing ----------------------------------------------------------------------


def _conn(s: Session | Connection) -> Connection:
    if isinstance(s, Session):
        s.flush()  # items the caller added in this session are visible to the statements
        return s.connection()
    return s


def _item(conn: Connection, item_id: int) -> tuple[str, int | None, int | None]:
    """The item's uri, width and height."""
    row = conn.execute(select(Item.uri, Item.width, Item.height).where(Item.id == item_id)).first()
    if row is None:
        raise AnnotationError(f"no item {item_id}")
    return row[0], row[1], row[2]


def _rows(conn: Connection, query: Any) -> list[Annotation]:
    """Annotation rows of ``query`` as detached :class:`Annotation` objects."""
    return [Annotation(**dict(row)) for row in conn.execute(query).mappings()]


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> list[Annotation]:
    """Append ``rows``; those with ``object_id`` None start a new object (their own id)."""
    if not rows:
        return []
    now = utcnow()
    values = [{**r, "object_id": r["object_id"] or 0, "created_at": now} for r in rows]
    ids = [
        int(i)
        for i in conn.execute(
            insert(_A).returning(_A.c.id, sort_by_parameter_order=True), values
        ).scalars()
    ]
    new = [i for i, r in zip(ids, rows, strict=True) if r["object_id"] is None]
    if new:
        conn.execute(update(_A).where(_A.c.id.in_(new)).values(object_id=_A.c.id))
    return [
        Annotation(**{**v, "id": i, "object_id": r["object_id"] or i})
        for i, v, r in zip(ids, values, rows, strict=True)
    ]


def _newest(item_ids: Sequence[int] | None = None) -> Any:
    """The id of every object's newest row (of ``item_ids``' objects)."""
    query = select(func.max(_A.c.id).label("id")).group_by(_A.c.object_id)
    if item_ids is not None:
        query = query.where(_A.c.item_id.in_([int(i) for i in item_ids]))
    return query.subquery()


#: PostgreSQL advisory-lock space of :func:`lock_item_objects` (consensus uses 0x0E7A).
_OBJECTS_LOCK_SPACE = 0x0B1E


def lock_item_objects(s: Session | Connection, item_id: int) -> None:
    """Serialize writes to the objects of one item until commit, so a check of an object's
    history and the row written after it see the same history (PostgreSQL: an advisory
    transaction lock; SQLite: a no-op, its writers are serialized by ``BEGIN IMMEDIATE``)."""
    conn = _conn(s)
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:item AS integer), CAST(:space AS integer))"),
            {"item": int(item_id) % (1 << 31), "space": _OBJECTS_LOCK_SPACE},
        )


def _current(conn: Connection, object_id: int) -> Annotation:
    rows = _rows(conn, select(_A).where(_A.c.object_id == object_id).order_by(_A.c.id.desc()))
    if not rows:
        raise AnnotationError(f"no object {object_id}")
    return rows[0]


def add_annotations(
    s: Session | Connection,
    item_id: int,
    objs: Sequence[AnnotationIn],
    *,
    status: AnnotationStatus | str,
    source: LabelSource | str,
    annotator: str | None = None,
    model_version: str | None = None,
    cycle_id: int | None = None,
    classes: Sequence[str],
    track_id: int | None = None,
    keyframe: bool | None = None,
    idempotency_key: str | None = None,
) -> list[Annotation]:
    """Append new objects to item ``item_id``, each the first row of its own history.

    Video frames: ``track_id`` puts the objects on a track, ``keyframe`` marks boxes a
    person placed on a keyframe. ``idempotency_key`` is stored on the rows (with the
    object's index after the first), so a retry can find what the first attempt wrote.

    Every object is checked before anything is written, so one bad object writes nothing.

    Raises
    ------
    UnknownClassError
        An object's class is not one of ``classes``.
    AnnotationError
        The item does not exist, or an object's box, polygon or mask is malformed or lies
        outside the item (the message names the item and the object).
    """
    status = _check_choice(status, [str(v) for v in AnnotationStatus], "annotation status")
    source = _check_choice(source, [str(v) for v in LabelSource], "label source")
    conn = _conn(s)
    uri, width, height = _item(conn, item_id)
    rows: list[dict[str, Any]] = []
    for i, obj in enumerate(objs):
        where = f"item {item_id} ({uri}): object {i} ({obj.label!r})"
        _check_label(where, obj.label, classes)
        box, shape = _check_object(where, obj.box, obj.geometry, obj.shape, width, height)
        confidence = None if obj.confidence is None else float(obj.confidence)
        if confidence is not None and not math.isfinite(confidence):
            raise AnnotationError(f"{where}: the confidence {confidence} is not finite")
        rows.append(
            _row(None, item_id, obj.label, obj.geometry, box, shape, status, source)
            | {
                "annotator": annotator,
                "model_version": model_version,
                "confidence": confidence,
                "cycle_id": cycle_id,
                "track_id": track_id,
                "keyframe": keyframe,
                "idempotency_key": _key(idempotency_key, i),
            }
        )
    return _insert(conn, rows)


def _row(
    object_id: int | None,
    item_id: int,
    label: str,
    geometry: str,
    box: Box,
    shape: dict[str, Any] | None,
    status: str,
    source: str,
    **more: Any,
) -> dict[str, Any]:
    x0, y0, x1, y1 = box
    row = dict.fromkeys(_COLUMNS)
    del row["id"]
    row.update(
        object_id=object_id,
        item_id=item_id,
        label=label,
        geometry=geometry,
        x0=x0,
        y0=y0,
        x1=x1,
        y1=y1,
        shape=shape,
        status=status,
        source=source,
        **more,
    )
    return row


def _revised_row(
    conn: Connection,
    where: str,
    old: Annotation,
    *,
    annotator: str | None,
    status: str,
    label: str | None,
    box: Sequence[float] | None,
    shape: Mapping[str, Any] | None,
    source: str,
    classes: Sequence[str],
    cycle_id: int | None,
    size: tuple[int | None, int | None] | None = None,
    keyframe: bool | None = None,
) -> dict[str, Any]:
    """The row that revises ``old`` (checked), keeping its object, item, geometry and track
    (and whether it is a keyframe, unless ``keyframe`` says)."""
    if (old.status == AnnotationStatus.GROUND_TRUTH) != (status == AnnotationStatus.GROUND_TRUTH):
        raise AnnotationError(
            f"{where}: ground truth is hidden from labels: a ground_truth object stays one, "
            "and no label becomes ground truth"
        )
    label = old.label if label is None else label
    _check_label(where, label, classes)
    width, height = _item(conn, old.item_id)[1:] if size is None else size
    new_shape = old.shape if shape is None else shape
    if box is None:
        box = (old.x0, old.y0, old.x1, old.y1)
        if shape is not None and old.geometry != "box":
            _, checked = _check_object(where, box, old.geometry, new_shape, None, None)
            box = _shape_box(cast(dict[str, Any], checked))
    checked_box, checked_shape = _check_object(where, box, old.geometry, new_shape, width, height)
    model = source == LabelSource.MODEL
    return _row(
        old.object_id,
        old.item_id,
        label,
        old.geometry,
        checked_box,
        checked_shape,
        status,
        source,
        annotator=annotator,
        model_version=old.model_version if model else None,
        confidence=old.confidence if model else None,
        cycle_id=cycle_id,
        track_id=old.track_id,
        keyframe=old.keyframe if keyframe is None else keyframe,
    )


def revise(
    s: Session | Connection,
    object_id: int,
    *,
    annotator: str | None,
    status: AnnotationStatus | str | None = None,
    label: str | None = None,
    box: Sequence[float] | None = None,
    shape: Mapping[str, Any] | None = None,
    source: LabelSource | str = LabelSource.HUMAN,
    classes: Sequence[str],
    cycle_id: int | None = None,
    keyframe: bool | None = None,
    idempotency_key: str | None = None,
) -> Annotation:
    """Append a new state of object ``object_id``: what is not given stays as it was.

    ``keyframe`` marks (or unmarks) a video box as a person's keyframe; the object keeps
    its track. With ``idempotency_key``, the row carries the key (the caller looks it up
    first to answer a retry; a second row with the same key is refused by the database).

    The new row keeps the object's cycle unless ``cycle_id`` names the cycle that changes
    it (curation's expiry records the cycle that withdrew a proposal).

    The object keeps its id, item and geometry. A new ``shape`` without a ``box`` takes the
    shape's bounding box. Ground-truth objects (hidden truth for simulation) can only be
    revised as ground truth, and no object becomes ground truth.

    Raises
    ------
    AnnotationError
        No such object, or the new box or shape is malformed or outside the item.
    UnknownClassError
        ``label`` is not one of ``classes``.
    """
    source = _check_choice(source, [str(v) for v in LabelSource], "label source")
    conn = _conn(s)
    item_id = conn.scalar(select(_A.c.item_id).where(_A.c.object_id == object_id).limit(1))
    if item_id is not None:
        lock_item_objects(conn, int(item_id))
    old = _current(conn, object_id)
    new_status = old.status if status is None else str(status)
    _check_choice(new_status, [str(v) for v in AnnotationStatus], "annotation status")
    where = f"item {old.item_id}: object {object_id} ({(label or old.label)!r})"
    row = _revised_row(
        conn,
        where,
        old,
        annotator=annotator,
        status=new_status,
        label=label,
        box=box,
        shape=shape,
        source=source,
        classes=classes,
        cycle_id=old.cycle_id if cycle_id is None else cycle_id,
        keyframe=keyframe,
    )
    row["idempotency_key"] = idempotency_key
    return _insert(conn, [row])[0]


def current_annotations(
    s: Session | Connection,
    item_ids: Sequence[int] | None = None,
    *,
    statuses: Sequence[str] | None = None,
) -> list[Annotation]:
    """The current state (newest row) of every object, ordered by item then object id.

    Objects whose current status is ``deleted`` are left out unless ``statuses`` names it;
    ``statuses`` keeps only objects whose current status is one of them (ground-truth
    objects are included unless ``statuses`` leaves them out: filter what you train on).
    Many ``item_ids`` are read in chunks (an ``IN`` list stays below bind-parameter limits).
    """
    if item_ids is not None and len(item_ids) > _CHUNK:
        ordered = sorted({int(i) for i in item_ids})
        return [
            row
            for start in range(0, len(ordered), _CHUNK)
            for row in current_annotations(s, ordered[start : start + _CHUNK], statuses=statuses)
        ]
    newest = _newest(item_ids)
    query = select(_A).join(newest, _A.c.id == newest.c.id).order_by(_A.c.item_id, _A.c.object_id)
    if statuses is None:
        query = query.where(_A.c.status != AnnotationStatus.DELETED.value)
    else:
        query = query.where(_A.c.status.in_([str(v) for v in statuses]))
    return _rows(_conn(s), query)


#: Item ids per query of :func:`current_annotations`.
_CHUNK = 500


def object_history(s: Session | Connection, object_id: int) -> list[Annotation]:
    """Every row of object ``object_id``, oldest first (empty for an unknown object)."""
    return _rows(_conn(s), select(_A).where(_A.c.object_id == object_id).order_by(_A.c.id))


def objects_labeled(s: Session | Connection, *, splits: Sequence[str] | None = None) -> int:
    """Objects confirmed or drawn by people or simulation: the ``objects`` budget unit.

    An object counts when its current status is ``verified`` or ``hard_negative`` and its
    current row's source is ``human`` or ``simulated`` (never a model's proposal, an import
    or ground truth). ``splits`` counts only objects of items in those splits.
    """
    newest = _newest()
    query = (
        select(func.count())
        .select_from(_A.join(newest, _A.c.id == newest.c.id))
        .where(_A.c.status.in_(COUNTED_STATUSES), _A.c.source.in_(COUNTED_SOURCES))
    )
    if splits is not None:
        query = query.join(Item, Item.id == _A.c.item_id).where(
            Item.split.in_([str(v) for v in splits])
        )
    return int(_conn(s).scalar(query) or 0)


# -- the annotator's submit -------------------------------------------------------------------


def _key(idempotency_key: str | None, i: int) -> str | None:
    return None if idempotency_key is None else f"{idempotency_key}#{i}"


def _like_prefix(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}#%"


def _submission(label: Label, rows: Sequence[Annotation]) -> ObjectsSubmission:
    """Counts of what a submit wrote (the same for its first call and its retries)."""
    by_status = [r.status for r in rows]
    drawn = sum(1 for r in rows if r.status == AnnotationStatus.VERIFIED and r.id == r.object_id)
    return ObjectsSubmission(
        label=label,
        annotations=tuple(rows),
        verified=by_status.count(AnnotationStatus.VERIFIED.value) - drawn,
        drawn=drawn,
        rejected=by_status.count(AnnotationStatus.REJECTED.value),
        hard_negative=by_status.count(AnnotationStatus.HARD_NEGATIVE.value),
    )


def submit_objects(
    db: Database,
    entry_id: int,
    annotator: str,
    objects: Sequence[SubmittedObject],
    *,
    classes: Sequence[str],
    idempotency_key: str | None = None,
    source: LabelSource | str = LabelSource.HUMAN,
) -> ObjectsSubmission:
    """Write ``annotator``'s objects for queue entry ``entry_id`` and mark the entry done.

    One transaction, through the queue's submit path (:func:`exemplar.store.queue.submit`'s
    lease checks, idempotency and ``done`` status): each object with an ``object_id`` gets a
    new row with the annotator's verdict, each without one becomes a new object, every
    proposal of the item left unmentioned becomes ``rejected``, and the item gets a label
    row :data:`OBJECTS_LABEL` (``verified``). A retry with the same ``idempotency_key``
    writes nothing and returns what the first call wrote. ``source`` is ``human``, or
    ``simulated`` for a simulated annotator.

    Raises
    ------
    UnknownClassError
        An object's class is not one of ``classes``. Nothing is written.
    AnnotationError
        An object is malformed, outside the image, not one of the item's objects, ground
        truth, or named twice. Nothing is written.
    LeaseLostError
        Another annotator has taken the entry. Nothing is written.
    QueueError
        The entry does not exist, is not leased to ``annotator`` or is already done.
    """
    source = _check_choice(source, COUNTED_SOURCES, "annotator source")
    mentioned: set[int] = set()
    for i, obj in enumerate(objects):  # everything that needs no database, before the lock
        where = f"queue entry {entry_id}: object {i} ({obj.label!r})"
        _check_label(where, obj.label, classes)
        if obj.status not in SUBMITTED_STATUSES:
            raise AnnotationError(
                f"{where}: unknown verdict {obj.status!r}; expected one of "
                f"{', '.join(SUBMITTED_STATUSES)}"
            )
        if obj.object_id is None or obj.shape is not None:
            _check_object(where, obj.box, obj.geometry, obj.shape, None, None)
        else:  # an existing object keeps its shape: only its box is given
            _check_box(where, obj.box, None, None)
        if obj.object_id is not None:
            if obj.object_id in mentioned:
                raise AnnotationError(f"{where}: object {obj.object_id} is named twice")
            mentioned.add(obj.object_id)
    written: list[Annotation] = []

    def write_objects(conn: Connection, label: Label) -> None:
        item_id = label.item_id
        lock_item_objects(conn, item_id)
        uri, width, height = _item(conn, item_id)
        current = {a.object_id: a for a in _rows(conn, _item_current(item_id))}
        rows: list[dict[str, Any]] = []
        for i, obj in enumerate(objects):
            name = "new" if obj.object_id is None else str(obj.object_id)
            where = f"item {item_id} ({uri}): object {i} ({name}, {obj.label!r})"
            if obj.object_id is None:
                box, shape = _check_object(where, obj.box, obj.geometry, obj.shape, width, height)
                rows.append(
                    _row(None, item_id, obj.label, obj.geometry, box, shape, obj.status, source)
                    | {"annotator": annotator, "cycle_id": label.cycle_id}
                )
                continue
            old = current.get(obj.object_id)
            if old is None:
                raise AnnotationError(f"{where}: not an object of this item")
            if obj.geometry != old.geometry:
                raise AnnotationError(
                    f"{where}: the object is a {old.geometry}, not a {obj.geometry}"
                )
            rows.append(
                _revised_row(
                    conn,
                    where,
                    old,
                    annotator=annotator,
                    status=obj.status,
                    label=obj.label,
                    box=obj.box,
                    shape=obj.shape,
                    source=source,
                    classes=classes,
                    cycle_id=label.cycle_id,
                    size=(width, height),
                )
            )
        for object_id, old in current.items():
            if object_id not in mentioned and old.status == AnnotationStatus.PROPOSED:
                rows.append(
                    _row(
                        object_id,
                        item_id,
                        old.label,
                        old.geometry,
                        (old.x0, old.y0, old.x1, old.y1),
                        old.shape,
                        AnnotationStatus.REJECTED.value,
                        source,
                        annotator=annotator,
                        cycle_id=label.cycle_id,
                    )
                )
        for i, row in enumerate(rows):
            row["idempotency_key"] = _key(idempotency_key, i)
        written.extend(_insert(conn, rows))

    label = submit_in_transaction(
        db,
        entry_id,
        annotator,
        OBJECTS_LABEL,
        classes=(*classes, OBJECTS_LABEL),
        idempotency_key=idempotency_key,
        status=LabelStatus.VERIFIED,
        source=source,
        on_write=write_objects,
    )
    if not written and idempotency_key is not None:  # a retry: what the first call wrote
        with db.read() as s:
            written = _rows(
                s.connection(),
                select(_A)
                .where(
                    _A.c.item_id == label.item_id,
                    _A.c.idempotency_key.like(_like_prefix(idempotency_key), escape="\\"),
                )
                .order_by(_A.c.id),
            )
    return _submission(label, written)


def _item_current(item_id: int) -> Any:
    """The current rows of every object of ``item_id`` (all statuses)."""
    newest = _newest([item_id])
    return select(_A).join(newest, _A.c.id == newest.c.id).order_by(_A.c.object_id)
