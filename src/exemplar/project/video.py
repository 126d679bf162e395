"""Labeling a video: keyframes, interpolated tracks, tracker proposals and finished frames.

A video is imported as frames (:mod:`exemplar.sources.video`): each kept frame is an image
item pointing at the video's media row (``items.media_id``, ``items.frame``). Its objects
are ordinary annotations (:mod:`exemplar.store.annotations`, append-only), with two more
columns: ``track_id`` (the objects of one thing followed across frames share it: the
``object_id`` of the track's first object) and ``keyframe`` (True for a box a person placed
on a keyframe; False for a box interpolated or tracked from keyframes).

The service functions here are the Python API that the CLI (``exemplar video``) and the
server (``/api/v1/videos/...``) call:

- :func:`video_info`, :func:`video_objects`: read;
- :func:`save_keyframe`: a person's box on a keyframe (a new track, or the track's box on
  that frame, moved);
- :func:`interpolate_track`: linear boxes (:func:`exemplar.media.tracking.interpolate_boxes`)
  on every imported frame strictly between consecutive keyframes of a track, one object per
  (track, frame): re-interpolating after a keyframe moved revises the boxes interpolation
  wrote instead of adding more, and keeps those a person changed or decided since;
- :func:`propagate_track`: a tracker (:func:`exemplar.media.tracking.track_boxes`) follows an
  object through the next frames and writes its boxes as the model's proposals, to be
  verified;
- :func:`finish_frames`: a range of frames is done: each gets the item label row
  :data:`~exemplar.store.annotations.OBJECTS_LABEL` (what the queue, the label budget and
  training count, as :func:`~exemplar.store.annotations.submit_objects` writes it), the
  proposals left on them are rejected (or accepted), and their open queue entries close.

Every write is one transaction, checked before anything is written: an unknown class, a
box outside the frame, an unknown track or object writes nothing and raises a subclass of
:class:`~exemplar.errors.ExemplarError` naming what is wrong. The writes respect the
queue's leases as the objects API does: unless ``may_override`` (a reviewer, an admin, the
project owner at the CLI), a write that would change objects on a frame another annotator
holds a lease on (and the caller does not), or finish such a frame, raises
:class:`VideoLeaseError` naming the frames and who holds them, and writes nothing. Frames
that are only queued (pending) or not queued at all are anyone's to label. A write given an
``idempotency_key`` stores it on its rows (``key`` or ``key#i``); a retry with the same key
writes nothing and returns what the first call wrote.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, overload

import numpy as np
from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.orm import Session

from exemplar.errors import ExemplarError
from exemplar.media.tracking import TRACKERS, interpolate_boxes, track_boxes
from exemplar.project.project import Project
from exemplar.sources.annotated import read_pixels
from exemplar.store.annotations import (
    OBJECTS_LABEL,
    TRACKER_VERSION_PREFIX,
    AnnotationIn,
    add_annotations,
    current_annotations,
    revise,
)
from exemplar.store.db import id_chunks
from exemplar.store.labels import add_label, validate_class
from exemplar.store.media import get_media, media_items
from exemplar.store.schema import (
    OPEN_QUEUE_STATUSES,
    Annotation,
    AnnotationStatus,
    Item,
    Label,
    LabelSource,
    LabelStatus,
    Media,
    MediaKind,
    QueueEntry,
    QueueStatus,
    utcnow,
)

__all__ = [
    "INTERPOLATION_VERSION",
    "TRACKER_MIN_SCORE",
    "FrameView",
    "FramesDone",
    "TrackWrite",
    "VideoError",
    "VideoLeaseError",
    "VideoNotFoundError",
    "VideoObject",
    "VideoSummary",
    "VideoView",
    "finish_frames",
    "interpolate_track",
    "list_videos",
    "propagate_track",
    "save_keyframe",
    "video_info",
    "video_objects",
]

#: The tracker stops at the first frame whose match score is below this.
TRACKER_MIN_SCORE = 0.5
#: The ``model_version`` of the rows :func:`interpolate_track` writes (verified, human): the
#: mark that tells its own boxes from a person's. Any other writer's row of the object (a
#: move, relabel, verify or reject, which the store writes with no ``model_version`` for a
#: person's source) drops it, and interpolation then keeps that object as it is.
INTERPOLATION_VERSION = "interpolation:linear"
#: Statuses of the objects a track is made of (never deleted rows or hidden ground truth).
_TRACK_STATUSES = (
    AnnotationStatus.PROPOSED.value,
    AnnotationStatus.VERIFIED.value,
    AnnotationStatus.REJECTED.value,
    AnnotationStatus.HARD_NEGATIVE.value,
)
_A = cast(Table, Annotation.__table__)
Box = tuple[float, float, float, float]


class VideoError(ExemplarError, ValueError):
    """A video request asks the impossible (an empty frame range, an unknown tracker, ...)."""


class VideoNotFoundError(VideoError):
    """A video request names a video, frame item, track or object that does not exist."""


class VideoLeaseError(VideoError):
    """A write would change objects on, or finish, frames another annotator holds a lease on
    (the server answers 403)."""


@dataclass(frozen=True)
class FrameView:
    """One imported frame of a video: its item, index, time, and what is on it.

    ``labeled``: its current label is :data:`OBJECTS_LABEL` (the frame is done);
    ``n_objects``: objects a person confirmed (verified or hard negative); ``n_proposals``:
    the model's or tracker's proposals still open; ``keyframe``: some object on it is a
    keyframe box.
    """

    item_id: int
    frame: int
    time: float
    labeled: bool
    n_objects: int
    n_proposals: int
    keyframe: bool


@dataclass(frozen=True)
class VideoView:
    """A video's properties and its imported frames, in order."""

    media_id: int
    uri: str
    width: int
    height: int
    fps: float
    n_frames: int
    duration: float
    codec: str
    frame_step: int
    frames: list[FrameView]


@dataclass(frozen=True)
class VideoSummary:
    """One of the project's videos, as :func:`list_videos` lists it.

    ``name``: the file name (the last part of ``uri``); ``width``, ``height``: the frame size
    in px; ``n_frames``: the frames in the file; ``imported``: the frames imported as items;
    ``labeled``: the imported frames that are done (see :attr:`FrameView.labeled`).
    """

    media_id: int
    uri: str
    name: str
    width: int
    height: int
    fps: float
    n_frames: int
    imported: int
    labeled: int


@dataclass(frozen=True)
class VideoObject:
    """An object on a frame: its current annotation row and the frame it is on."""

    frame: int
    annotation: Annotation

    @property
    def track_id(self) -> int | None:
        return self.annotation.track_id


@dataclass
class TrackWrite:
    """What :func:`interpolate_track` or :func:`propagate_track` wrote.

    ``added``: new objects; ``revised``: new rows of objects the track already had on those
    frames; ``unchanged``: frames whose object already had that box (nothing written);
    ``kept``: frames whose object interpolation left alone because a person changed or
    decided it since interpolation wrote it (see :func:`interpolate_track`);
    ``stopped_at``: the frame where the tracker lost the object or met a person's box
    (None: it went as far as asked); ``retry``: a retry of an earlier call with the same
    key (nothing written now).
    """

    track_id: int
    added: list[Annotation] = field(default_factory=list)
    revised: list[Annotation] = field(default_factory=list)
    unchanged: int = 0
    kept: int = 0
    stopped_at: int | None = None
    retry: bool = False


@dataclass(frozen=True)
class FramesDone:
    """What :func:`finish_frames` did: frames in the range, frames newly labeled, queue
    entries closed, proposals accepted or rejected."""

    frames: int
    labeled: int
    closed: int
    accepted: int
    rejected: int


# -- reading ----------------------------------------------------------------------------------


def _video(s: Session, media_id: int) -> Media:
    media = get_media(s, int(media_id))
    if media is None or media.kind != MediaKind.VIDEO:
        raise VideoNotFoundError(f"no video {media_id}")
    return media


def _frame_item(s: Session, item_id: int) -> tuple[Item, Media]:
    item = s.get(Item, int(item_id))
    if item is None:
        raise VideoNotFoundError(f"no item {item_id}")
    if item.media_id is None or item.frame is None:
        raise VideoError(f"item {item_id} is not a video frame")
    return item, _video(s, item.media_id)


def _labeled_items(s: Session, item_ids: Sequence[int]) -> set[int]:
    """Of ``item_ids``, those whose newest label row is :data:`OBJECTS_LABEL`, verified."""
    if not item_ids:
        return set()
    newest = (
        select(func.max(Label.id).label("id"))
        .where(Label.item_id.in_([int(i) for i in item_ids]))
        .group_by(Label.item_id)
        .subquery()
    )
    rows = s.execute(
        select(Label.item_id, Label.label, Label.status).join(newest, Label.id == newest.c.id)
    )
    return {int(i) for i, label, status in rows if label == OBJECTS_LABEL and status == "verified"}


def _objects(s: Session, items: Sequence[Item]) -> list[VideoObject]:
    frame_of = {i.id: int(i.frame or 0) for i in items}
    rows = current_annotations(s, list(frame_of), statuses=_TRACK_STATUSES) if items else []
    return [VideoObject(frame_of[r.item_id], r) for r in _fill_track(s, rows)]


def video_info(project: Project, media_id: int) -> VideoView:
    """The video's properties and every imported frame (see :class:`FrameView`).

    Raises
    ------
    VideoError
        ``media_id`` is not a video.
    """
    with project.db.read() as s:
        media = _video(s, media_id)
        items = media_items(s, media.id)
        objects = _objects(s, items)
        labeled = _labeled_items(s, [i.id for i in items])
    props = dict(media.properties or {})
    fps = float(props.get("fps") or 0.0)
    counts: dict[int, list[int]] = {i.id: [0, 0, 0] for i in items}
    for obj in objects:
        row = obj.annotation
        tally = counts[row.item_id]
        if row.status in (AnnotationStatus.VERIFIED, AnnotationStatus.HARD_NEGATIVE):
            tally[0] += 1
        elif row.status == AnnotationStatus.PROPOSED:
            tally[1] += 1
        if row.keyframe:
            tally[2] += 1
    frames = [
        FrameView(
            item_id=i.id,
            frame=int(i.frame or 0),
            time=(int(i.frame or 0) / fps) if fps else 0.0,
            labeled=i.id in labeled,
            n_objects=counts[i.id][0],
            n_proposals=counts[i.id][1],
            keyframe=counts[i.id][2] > 0,
        )
        for i in items
    ]
    return VideoView(
        media_id=media.id,
        uri=media.uri,
        width=media.width,
        height=media.height,
        fps=fps,
        n_frames=int(props.get("n_frames") or 0),
        duration=float(props.get("duration") or 0.0),
        codec=str(props.get("codec") or ""),
        frame_step=int(props.get("frame_step") or 1),
        frames=frames,
    )


def list_videos(project: Project) -> list[VideoSummary]:
    """The project's videos, by media id, with their frames imported and labeled (an empty
    list when the project has none)."""
    video = MediaKind.VIDEO.value
    with project.db.read() as s:
        found = s.execute(
            select(Media, func.count(Item.id))
            .outerjoin(Item, Item.media_id == Media.id)
            .where(Media.kind == video)
            .group_by(Media.id)
            .order_by(Media.id)
        ).all()
        newest = (
            select(func.max(Label.id).label("id"))
            .join(Item, Item.id == Label.item_id)
            .join(Media, Media.id == Item.media_id)
            .where(Media.kind == video)
            .group_by(Label.item_id)
            .subquery()
        )
        labeled = {
            int(media_id or 0): int(n)
            for media_id, n in s.execute(
                select(Item.media_id, func.count())
                .select_from(Label)
                .join(newest, Label.id == newest.c.id)
                .join(Item, Item.id == Label.item_id)
                .where(Label.label == OBJECTS_LABEL, Label.status == LabelStatus.VERIFIED.value)
                .group_by(Item.media_id)
            )
        }
    summaries: list[VideoSummary] = []
    for media, imported in found:
        props = dict(media.properties or {})
        summaries.append(
            VideoSummary(
                media_id=media.id,
                uri=media.uri,
                name=Path(media.uri).name,
                width=media.width,
                height=media.height,
                fps=float(props.get("fps") or 0.0),
                n_frames=int(props.get("n_frames") or 0),
                imported=int(imported),
                labeled=int(labeled.get(media.id, 0)),
            )
        )
    return summaries


def video_objects(project: Project, media_id: int) -> list[VideoObject]:
    """The current objects of every frame (not deleted ones, never hidden ground truth),
    ordered by frame then object.

    Raises
    ------
    VideoError
        ``media_id`` is not a video.
    """
    with project.db.read() as s:
        media = _video(s, media_id)
        objects = _objects(s, media_items(s, media.id))
    return sorted(objects, key=lambda o: (o.frame, o.annotation.object_id))


# -- writing helpers ----------------------------------------------------------------------------


def _set(conn: Connection, row: Annotation, **values: Any) -> Annotation:
    """Set columns the store's writers do not take (``track_id``, ``keyframe``, a new
    confidence, the idempotency key) on the row just written, in the same transaction."""
    conn.execute(update(_A).where(_A.c.id == row.id).values(**values))
    for name, value in values.items():
        setattr(row, name, value)
    return row


def _keyed(s: Session, key: str) -> list[Annotation]:
    """The rows written with idempotency key ``key`` or ``key#i``, oldest first."""
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = s.execute(
        select(_A)
        .where((_A.c.idempotency_key == key) | _A.c.idempotency_key.like(f"{escaped}#%", "\\"))
        .order_by(_A.c.id)
    ).mappings()
    return [Annotation(**dict(r)) for r in rows]


def _newest_rows(s: Session, object_ids: Sequence[int]) -> list[Annotation]:
    """The newest row of each of ``object_ids`` (any status), oldest object first."""
    out: list[Annotation] = []
    for part in id_chunks(sorted({int(i) for i in object_ids})):
        newest = (
            select(func.max(_A.c.id).label("id"))
            .where(_A.c.object_id.in_(part))
            .group_by(_A.c.object_id)
            .subquery()
        )
        query = select(_A).join(newest, _A.c.id == newest.c.id).order_by(_A.c.object_id)
        out += [Annotation(**dict(r)) for r in s.execute(query).mappings()]
    return out


def _fill_track(s: Session, rows: Sequence[Annotation]) -> list[Annotation]:
    """``rows`` with ``track_id`` and ``keyframe`` taken from their object's history where
    the current row lacks them (a revision written elsewhere, e.g. a verify through the
    objects API, may not repeat them)."""
    missing = [r.object_id for r in rows if r.track_id is None or r.keyframe is None]
    if not missing:
        return list(rows)
    known: dict[int, dict[str, Any]] = {}
    for part in id_chunks(sorted(set(missing))):
        query = (
            select(_A.c.object_id, _A.c.track_id, _A.c.keyframe)
            .where(
                _A.c.object_id.in_(part),
                (_A.c.track_id.is_not(None)) | (_A.c.keyframe.is_not(None)),
            )
            .order_by(_A.c.id)
        )
        for object_id, track, keyframe in s.execute(query):
            seen = known.setdefault(int(object_id), {})
            if track is not None:
                seen["track_id"] = int(track)
            if keyframe is not None:
                seen["keyframe"] = bool(keyframe)
    for row in rows:
        for name, value in known.get(row.object_id, {}).items():
            if getattr(row, name) is None:
                setattr(row, name, value)
    return list(rows)


def _track_objects(s: Session, media_id: int, track_id: int) -> dict[int, Annotation]:
    """The track's current object on each frame (frame -> row); VideoError if it has none."""
    items = media_items(s, media_id)
    frame_of = {i.id: int(i.frame or 0) for i in items}
    members = s.scalars(select(_A.c.object_id).where(_A.c.track_id == int(track_id)).distinct())
    rows = _newest_rows(s, list(members))
    rows = [r for r in rows if r.item_id in frame_of and r.status in _TRACK_STATUSES]
    if not rows:
        raise VideoNotFoundError(f"video {media_id} has no track {track_id}")
    out: dict[int, Annotation] = {}
    for row in sorted(_fill_track(s, rows), key=lambda r: r.id):
        row.track_id = int(track_id)
        out[frame_of[row.item_id]] = row  # one object per (track, frame): the newest wins
    return out


def _same_box(row: Annotation, box: Sequence[float]) -> bool:
    return all(
        math.isclose(a, float(b), abs_tol=1e-6)
        for a, b in zip((row.x0, row.y0, row.x1, row.y1), box, strict=True)
    )


def _clip(box: Sequence[float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (
        min(max(x0, 0.0), width),
        min(max(y0, 0.0), height),
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
    )


def _lease_holders(s: Session, item_ids: Sequence[int], *, lock: bool) -> dict[int, set[str]]:
    """item id -> the annotators holding a lease in force (not expired) on one of its queue
    entries. With ``lock`` the entries are locked for the write transaction (PostgreSQL;
    SQLite's writer turn already excludes other writers), so no lease is taken between the
    check and the write."""
    now = utcnow()
    held: dict[int, set[str]] = {}
    for part in id_chunks(sorted({int(i) for i in item_ids})):
        query = select(QueueEntry.item_id, QueueEntry.annotator).where(
            QueueEntry.item_id.in_(part),
            QueueEntry.status == QueueStatus.LEASED.value,
            QueueEntry.lease_expires.is_(None) | (QueueEntry.lease_expires > now),
        )
        for item_id, annotator in s.execute(query.with_for_update() if lock else query):
            held.setdefault(int(item_id), set()).add(str(annotator))
    return held


def _check_leases(
    s: Session,
    user_name: str,
    frames: dict[int, int],
    *,
    may_override: bool,
    finishing: bool = False,
    lock: bool = True,
) -> None:
    """Refuse a write on frames (frame -> item id) leased to someone else.

    Changing objects is refused on a frame another annotator holds a lease on unless the
    caller holds one on it too (as the objects API allows); finishing is refused on a frame
    with any other annotator's lease in force (it would close their entry). Expired leases
    are the queue's to hand out again and refuse nothing; ``may_override`` skips the check.
    ``lock``: lock the entries (in a write transaction; see :func:`_lease_holders`).

    Raises
    ------
    VideoLeaseError
        Naming each refused frame and who holds it.
    """
    if may_override or not frames:
        return
    held = _lease_holders(s, list(frames.values()), lock=lock)
    refused: list[str] = []
    for frame, item_id in sorted(frames.items()):
        holders = held.get(item_id, set())
        others = sorted(holders - {user_name})
        if others and (finishing or user_name not in holders):
            refused.append(f"frame {frame} (item {item_id}) to {', '.join(map(repr, others))}")
    if refused:
        action = "finish" if finishing else "change objects on"
        raise VideoLeaseError(
            f"{user_name!r} may not {action} frames leased to another annotator: "
            f"{'; '.join(refused)}. Only the annotator holding the lease, a reviewer or an "
            "admin may; nothing was written"
        )


# -- keyframes ----------------------------------------------------------------------------------


def save_keyframe(
    project: Project,
    user_name: str,
    item_id: int,
    *,
    label: str,
    box: Sequence[float],
    track_id: int | None = None,
    object_id: int | None = None,
    idempotency_key: str | None = None,
    may_override: bool = False,
) -> Annotation:
    """A person's box on a keyframe (status verified, source human, ``keyframe`` True).

    With ``object_id``: that object of this frame moves to ``box`` (and ``label``). With
    ``track_id``: the track's object on this frame moves there (it becomes a keyframe), or
    the track gets a new object on this frame. With neither: a new object starting a new
    track (its ``track_id`` is its own ``object_id``). ``may_override``: the caller may
    change frames other annotators hold leases on (a reviewer, an admin, the CLI).

    Returns
    -------
    Annotation
        The row written (a retry with the same ``idempotency_key``: the first one).

    Raises
    ------
    VideoError
        The item is not a video frame, or the object or track is not one of this video's
        (or the object belongs to another track than ``track_id``).
    VideoLeaseError
        Another annotator holds a lease on the frame (and the caller neither does nor
        ``may_override``).
    AnnotationError, UnknownClassError
        The box is malformed or outside the frame, or the class is unknown.
    """
    classes = project.classes
    validate_class(label, classes)
    with project.db.session() as s:
        if idempotency_key is not None:
            done = _keyed(s, idempotency_key)
            if done:
                return done[0]
        item, media = _frame_item(s, item_id)
        _check_leases(s, user_name, {int(item.frame or 0): item.id}, may_override=may_override)
        conn = s.connection()
        target: Annotation | None = None
        if object_id is not None:
            target = _object_on(s, item, object_id)
            if track_id is not None and target.track_id not in (None, int(track_id)):
                raise VideoError(
                    f"object {object_id} belongs to track {target.track_id}, not {track_id}"
                )
            track_id = target.track_id if target.track_id is not None else target.object_id
        elif track_id is not None:
            target = _track_objects(s, media.id, track_id).get(int(item.frame or 0))
        values: dict[str, Any] = {"keyframe": True, "idempotency_key": idempotency_key}
        if target is None:
            row = add_annotations(
                s,
                item.id,
                [AnnotationIn(label, box)],
                status=AnnotationStatus.VERIFIED,
                source=LabelSource.HUMAN,
                annotator=user_name,
                classes=classes,
            )[0]
            values["track_id"] = row.object_id if track_id is None else int(track_id)
        else:
            row = revise(
                s,
                target.object_id,
                annotator=user_name,
                status=AnnotationStatus.VERIFIED,
                label=label,
                box=box,
                source=LabelSource.HUMAN,
                classes=classes,
            )
            values["track_id"] = int(track_id) if track_id is not None else target.object_id
        return _set(conn, row, **values)


# -- interpolation ------------------------------------------------------------------------------


def interpolate_track(
    project: Project,
    user_name: str,
    media_id: int,
    track_id: int,
    *,
    idempotency_key: str | None = None,
    may_override: bool = False,
) -> TrackWrite:
    """Linear boxes on every imported frame strictly between consecutive keyframes of the
    track (status verified, source human, ``keyframe`` False, the earlier keyframe's class,
    ``model_version`` :data:`INTERPOLATION_VERSION`).

    A frame where the track has no object gets a new object of the track. A frame where it
    has one is revised only when that object's newest row is interpolation's own box (the
    :data:`INTERPOLATION_VERSION` mark) or an open model or tracker proposal, and when the
    box, class or status differs (else it is ``unchanged``). Any other newest row is a
    person's work done after the interpolation that wrote the box, or instead of it: a move
    or relabel (on ``/annotate`` or the video page), a verify, a reject or a hard negative
    (every such revision drops the mark); that object is ``kept`` as it is, so a corrected
    box stays where the person put it and a rejected one stays rejected. Frames outside
    the keyframes' span are left alone.

    Raises
    ------
    VideoError
        ``media_id`` is not a video or has no such track.
    VideoLeaseError
        A frame it would write on is leased to another annotator (unless ``may_override``);
        nothing is written.
    """
    classes = project.classes
    with project.db.session() as s:
        if idempotency_key is not None:
            done = _keyed(s, idempotency_key)
            if done:
                return _from_rows(int(track_id), done)
        media = _video(s, media_id)
        track = _track_objects(s, media.id, track_id)
        keys = {f: r for f, r in track.items() if r.keyframe}
        items = {int(i.frame or 0): i for i in media_items(s, media.id)}
        boxes = interpolate_boxes(
            {f: (r.x0, r.y0, r.x1, r.y1) for f, r in keys.items()},
            [f for f in items if f not in keys],
        )
        ordered = sorted(keys)
        result = TrackWrite(int(track_id))
        planned: list[tuple[int, Box, str, Annotation | None]] = []
        for frame, box in sorted(boxes.items()):
            label = keys[ordered[bisect_left(ordered, frame) - 1]].label  # the keyframe before
            old = track.get(frame)
            if old is not None and not _interpolation_may_revise(old):
                result.kept += 1
            elif (
                old is not None
                and old.model_version == INTERPOLATION_VERSION
                and old.status == AnnotationStatus.VERIFIED
                and _same_box(old, box)
                and old.label == label
            ):
                result.unchanged += 1
            else:
                planned.append((frame, box, label, old))
        _check_leases(
            s, user_name, {f: items[f].id for f, *_ in planned}, may_override=may_override
        )
        conn = s.connection()
        for n, (frame, box, label, old) in enumerate(planned):
            values = {
                "track_id": int(track_id),
                "keyframe": False,
                "model_version": INTERPOLATION_VERSION,
                "idempotency_key": None if idempotency_key is None else f"{idempotency_key}#{n}",
            }
            if old is not None:
                row = revise(
                    s,
                    old.object_id,
                    annotator=user_name,
                    status=AnnotationStatus.VERIFIED,
                    label=label,
                    box=box,
                    source=LabelSource.HUMAN,
                    classes=classes,
                )
                result.revised.append(_set(conn, row, **values))
            else:
                row = add_annotations(
                    s,
                    items[frame].id,
                    [AnnotationIn(label, box)],
                    status=AnnotationStatus.VERIFIED,
                    source=LabelSource.HUMAN,
                    annotator=user_name,
                    classes=classes,
                )[0]
                result.added.append(_set(conn, row, **values))
        return result


def _interpolation_may_revise(row: Annotation) -> bool:
    """Whether interpolation may replace an in-between object's newest row: a box it wrote
    itself (verified, still marked :data:`INTERPOLATION_VERSION`) or an open proposal of a
    model or the tracker. Anything else is a person's decision or edit and is kept."""
    if row.keyframe:
        return False
    if row.status == AnnotationStatus.PROPOSED:
        return row.source == LabelSource.MODEL
    return (
        row.status == AnnotationStatus.VERIFIED
        and row.source == LabelSource.HUMAN
        and row.model_version == INTERPOLATION_VERSION
    )


def _from_rows(track_id: int, rows: Sequence[Annotation]) -> TrackWrite:
    """A retry's answer: the rows the first call wrote."""
    added = [r for r in rows if r.id == r.object_id]
    revised = [r for r in rows if r.id != r.object_id]
    return TrackWrite(track_id, added=added, revised=revised, retry=True)


# -- tracker ------------------------------------------------------------------------------------


def propagate_track(
    project: Project,
    user_name: str,
    item_id: int,
    object_id: int,
    *,
    frames: int,
    method: Literal["template", "mil"] = "template",
    min_score: float = TRACKER_MIN_SCORE,
    idempotency_key: str | None = None,
    may_override: bool = False,
) -> TrackWrite:
    """Follow object ``object_id`` of frame ``item_id`` through the next ``frames`` imported
    frames with a tracker, and write its boxes as proposals.

    Each box is the model's proposal (source model, status proposed, ``model_version``
    ``"tracker:<method>"``, ``confidence`` the tracker's score, ``keyframe`` False) of the
    object's track. Tracking stops where the tracker loses the object (score below
    ``min_score``, or the box leaves the frame) and at the track's next keyframe or
    person's box (never overwritten); the track's earlier proposals on the frames it
    passes are revised, not duplicated. An object with no track starts one (its
    ``object_id``), recorded by a new row of it.

    The frames it may write on are the next ``frames`` frames up to the track's next
    person's box (and the start frame when the object gets its track): unless
    ``may_override``, it refuses to run when one of them is leased to another annotator,
    before tracking and again before writing, whatever the tracker would have reached.

    Raises
    ------
    VideoError
        The item is not a video frame, the object is not on it, ``frames`` is below 1, or
        ``method`` is unknown.
    VideoLeaseError
        A frame it may write on is leased to another annotator; nothing is written.
    """
    if method not in TRACKERS:
        raise VideoError(f"unknown tracker {method!r}; expected one of {', '.join(TRACKERS)}")
    if frames < 1:
        raise VideoError(f"frames must be at least 1, got {frames}")
    classes = project.classes
    # Read the pixels outside the write transaction (decoding is the slow part).
    with project.db.read() as s:
        if idempotency_key is not None:
            done = _keyed(s, idempotency_key)
            if done:  # a retry: the first answer, before any check or tracking
                return _from_rows(int(done[0].track_id or 0), done)
        item, media = _frame_item(s, item_id)
        start = _object_on(s, item, object_id)
        items = media_items(s, media.id)
        after = [i for i in items if int(i.frame or 0) > int(item.frame or 0)][:frames]
        track_id = start.track_id if start.track_id is not None else start.object_id
        stops = {
            f
            for f, r in _track_rows_or_empty(s, media.id, track_id).items()
            if r.keyframe or r.source == LabelSource.HUMAN
        }
        window: list[Item] = []
        blocked: int | None = None  # the frame of the person's box the tracker stops before
        for i in after:
            if int(i.frame or 0) in stops:
                blocked = int(i.frame or 0)
                break
            window.append(i)
        writes_on = {int(i.frame or 0): i.id for i in window}
        if start.track_id is None:
            writes_on[int(item.frame or 0)] = item.id
        _check_leases(s, user_name, writes_on, may_override=may_override, lock=False)
    pixels = _FrameFiles([Path(item.uri), *(Path(i.uri) for i in window)])
    tracked = track_boxes(
        pixels, (start.x0, start.y0, start.x1, start.y1), method, min_score=min_score
    )
    model_version = f"{TRACKER_VERSION_PREFIX}{method}"
    with project.db.session() as s:
        if idempotency_key is not None:
            done = _keyed(s, idempotency_key)
            if done:
                return _from_rows(track_id, done)
        conn = s.connection()
        current = _object_on(s, item, object_id)  # still there, as it was read
        if current.track_id is None:
            writes_on[int(item.frame or 0)] = item.id
        _check_leases(s, user_name, writes_on, may_override=may_override)
        if current.track_id is None:
            row = revise(  # the same state, now in a track
                s,
                current.object_id,
                annotator=current.annotator,
                source=current.source,
                classes=classes,
            )
            _set(
                conn,
                row,
                track_id=track_id,
                keyframe=current.keyframe,
                model_version=current.model_version,
                confidence=current.confidence,
            )
        track = _track_rows_or_empty(s, media.id, track_id)
        result = TrackWrite(track_id)
        width, height = int(media.width), int(media.height)
        for n, (position, box, score) in enumerate(tracked):
            frame_item = window[position - 1]
            frame = int(frame_item.frame or 0)
            box = _clip(box, width, height)
            old = track.get(frame)
            key = None if idempotency_key is None else f"{idempotency_key}#{n}"
            values = {
                "track_id": track_id,
                "keyframe": False,
                "model_version": model_version,
                "confidence": float(score),
                "idempotency_key": key,
            }
            if old is not None and (old.keyframe or old.source == LabelSource.HUMAN):
                result.stopped_at = frame  # a person's box since: keep it
                break
            if old is not None:
                if (
                    _same_box(old, box)
                    and old.status == AnnotationStatus.PROPOSED
                    and old.model_version == model_version
                ):
                    result.unchanged += 1
                    continue
                row = revise(
                    s,
                    old.object_id,
                    annotator=None,
                    status=AnnotationStatus.PROPOSED,
                    label=current.label,
                    box=box,
                    source=LabelSource.MODEL,
                    classes=classes,
                )
                result.revised.append(_set(conn, row, annotator=user_name, **values))
            else:
                row = add_annotations(
                    s,
                    frame_item.id,
                    [AnnotationIn(current.label, box, confidence=float(score))],
                    status=AnnotationStatus.PROPOSED,
                    source=LabelSource.MODEL,
                    annotator=user_name,
                    model_version=model_version,
                    classes=classes,
                )[0]
                result.added.append(_set(conn, row, **values))
        if result.stopped_at is None:
            lost = len(tracked) < len(window)
            result.stopped_at = int(window[len(tracked)].frame or 0) if lost else blocked
        return result


class _FrameFiles(Sequence[np.ndarray]):
    """Frame files decoded when the tracker reaches them (one at a time in memory)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        try:
            return read_pixels(self.paths[index])
        except (OSError, ValueError) as exc:
            raise VideoError(f"cannot read the frame file {self.paths[index]}: {exc}") from exc


def _object_on(s: Session, item: Item, object_id: int) -> Annotation:
    for row in current_annotations(s, [item.id], statuses=_TRACK_STATUSES):
        if row.object_id == int(object_id):
            return _fill_track(s, [row])[0]
    raise VideoNotFoundError(f"no object {object_id} on frame {item.frame} (item {item.id})")


def _track_rows_or_empty(s: Session, media_id: int, track_id: int) -> dict[int, Annotation]:
    try:
        return _track_objects(s, media_id, track_id)
    except VideoError:
        return {}


# -- finished frames ----------------------------------------------------------------------------


def finish_frames(
    project: Project,
    user_name: str,
    media_id: int,
    first_frame: int,
    last_frame: int,
    *,
    accept_proposals: bool = False,
    idempotency_key: str | None = None,
    may_override: bool = False,
) -> FramesDone:
    """Mark the imported frames ``first_frame..last_frame`` (inclusive) done, in one
    transaction.

    Each frame not labeled yet gets the label row :data:`OBJECTS_LABEL` (verified, human,
    with its open queue entry's cycle, strategy and score), as submitting its objects
    would; the proposals still open on them are rejected (``accept_proposals``: verified)
    by ``user_name``, as a submit rejects the proposals it does not mention; and every
    open queue entry of those frames is closed (``done``). Calling it again changes
    nothing (and reports zeros); ``idempotency_key`` keys the label rows.

    Pending (queued, not leased) entries and the caller's own leases close; a lease another
    annotator holds is never closed: unless ``may_override``, a range with such a frame is
    refused as a whole, naming the frames and who holds them, and nothing is written.

    Raises
    ------
    VideoError
        ``media_id`` is not a video, or the range is empty or holds no imported frame.
    VideoLeaseError
        A frame of the range is leased to another annotator.
    """
    if last_frame < first_frame:
        raise VideoError(f"the frames {first_frame}..{last_frame} are an empty range")
    classes = project.classes
    with project.db.session() as s:
        media = _video(s, media_id)
        items = [
            i for i in media_items(s, media.id) if first_frame <= int(i.frame or 0) <= last_frame
        ]
        if not items:
            raise VideoError(
                f"video {media_id} has no imported frame in {first_frame}..{last_frame}"
            )
        ids = [i.id for i in items]
        _check_leases(
            s,
            user_name,
            {int(i.frame or 0): i.id for i in items},
            may_override=may_override,
            finishing=True,
        )
        labeled = _labeled_items(s, ids)
        entries = list(
            s.scalars(
                select(QueueEntry)
                .where(QueueEntry.item_id.in_(ids), QueueEntry.status.in_(OPEN_QUEUE_STATUSES))
                .order_by(QueueEntry.id)
            )
        )
        entry_of = {e.item_id: e for e in entries}
        conn = s.connection()
        n_labeled = 0
        for n, item in enumerate(items):
            if item.id in labeled:
                continue
            entry = entry_of.get(item.id)
            add_label(
                conn,
                item.id,
                OBJECTS_LABEL,
                classes=(*classes, OBJECTS_LABEL),
                source=LabelSource.HUMAN,
                status=LabelStatus.VERIFIED,
                annotator=user_name,
                cycle_id=None if entry is None else entry.cycle_id,
                strategy=None if entry is None else entry.strategy,
                score=None if entry is None else entry.score,
                idempotency_key=None if idempotency_key is None else f"{idempotency_key}#{n}",
            )
            n_labeled += 1
        verdict = AnnotationStatus.VERIFIED if accept_proposals else AnnotationStatus.REJECTED
        decided = 0
        for row in current_annotations(s, ids, statuses=(AnnotationStatus.PROPOSED.value,)):
            new = revise(
                s,
                row.object_id,
                annotator=user_name,
                status=verdict,
                source=LabelSource.HUMAN,
                classes=classes,
            )
            _set(conn, new, track_id=row.track_id, keyframe=row.keyframe)
            decided += 1
        now = utcnow()
        for entry in entries:
            entry.status = QueueStatus.DONE.value
            entry.updated_at = now
        return FramesDone(
            frames=len(items),
            labeled=n_labeled,
            closed=len(entries),
            accepted=decided if accept_proposals else 0,
            rejected=0 if accept_proposals else decided,
        )
