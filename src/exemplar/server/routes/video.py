"""The video API: a video's frames and objects, keyframes, interpolation, tracker
propagation and finished frames (the routes over :mod:`exemplar.project.video`).

- ``GET /api/v1/videos``: the project's videos (file name, size, fps, frames imported and
  labeled).
- ``GET /api/v1/videos/{media_id}``: the video's properties and its imported frames (item,
  index, time, labeled, objects, proposals, keyframe).
- ``GET /api/v1/videos/{media_id}/objects``: the current objects of every frame.
- ``POST /api/v1/videos/{media_id}/keyframes``: a person's box on a keyframe (201).
- ``POST /api/v1/videos/{media_id}/tracks/{track_id}/interpolate``: linear boxes between
  the track's keyframes.
- ``POST /api/v1/videos/{media_id}/tracks/propagate``: a tracker follows an object and
  proposes its boxes on the next frames.
- ``POST /api/v1/videos/{media_id}/frames/done``: a range of frames is labeled.

Every write is one transaction and takes an optional ``Idempotency-Key`` header: a retry
with the same key writes nothing and returns the first answer (finishing frames twice
changes nothing either way). Any logged-in user may label a video (annotators included):
a clip is labeled as a whole, not one leased frame at a time; but an annotator may not
change objects on, or finish, a frame another annotator holds a lease on (403 naming the
frames and who holds them, nothing written), as the objects API refuses; reviewers and
admins may. Bad input (an unknown class,
a box outside the frame, an unknown track or object, a frame of another video) is a 422
or 404 with the reason, and writes nothing.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import APIRouter, Header, HTTPException

from exemplar.errors import ExemplarError, StoreError
from exemplar.media.tracking import TrackingError
from exemplar.project.video import (
    TrackWrite,
    VideoError,
    VideoLeaseError,
    VideoNotFoundError,
    VideoObject,
    finish_frames,
    interpolate_track,
    list_videos,
    propagate_track,
    save_keyframe,
    video_info,
    video_objects,
)
from exemplar.server.deps import API_PREFIX, Labeler, PathId, State
from exemplar.server.routes.objects import object_out
from exemplar.server.video_schemas import (
    FrameOut,
    FramesDoneIn,
    FramesDoneOut,
    KeyframeIn,
    PropagateIn,
    TrackWriteOut,
    VideoListOut,
    VideoObjectOut,
    VideoObjectsOut,
    VideoOut,
    VideoSummaryOut,
)
from exemplar.store.accounts import Role, User
from exemplar.store.annotations import AnnotationError
from exemplar.store.labels import UnknownClassError
from exemplar.store.schema import Annotation, Item

__all__ = ["router"]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Makes a retry of the same write return the first answer.",
    ),
]


def _fail(exc: Exception) -> NoReturn:
    """Map the service's errors to HTTP statuses with their message."""
    message = str(exc)
    if isinstance(exc, VideoNotFoundError):
        raise HTTPException(404, message) from exc
    if isinstance(exc, VideoLeaseError):
        raise HTTPException(403, message) from exc
    if isinstance(exc, VideoError | AnnotationError | UnknownClassError | TrackingError):
        raise HTTPException(422, message) from exc
    if isinstance(exc, StoreError):
        raise HTTPException(503, message) from exc
    raise exc


#: Roles whose video writes may change or finish frames other annotators hold leases on.
_OVERRIDE_ROLES = frozenset({Role.REVIEWER.value, Role.ADMIN.value})


def _may_override(user: User) -> bool:
    """Whether ``user`` may write on frames leased to others (a reviewer or an admin)."""
    return user.role in _OVERRIDE_ROLES


def _key(user_id: int, key: str | None) -> str | None:
    """The stored idempotency key: the client's, scoped to the user and to video writes."""
    return None if key is None else f"v{user_id}:{key}"


def _object_out(row: Annotation, frame: int) -> VideoObjectOut:
    return VideoObjectOut(**object_out(row).model_dump(), frame=frame)


def _frames_of(state: State, media_id: int) -> dict[int, int]:
    """item id -> frame index, for the frames of video ``media_id``."""
    return {f.item_id: f.frame for f in video_info(state.project, media_id).frames}


def _track_out(write: TrackWrite, frames: dict[int, int]) -> TrackWriteOut:
    return TrackWriteOut(
        track_id=write.track_id,
        added=[_object_out(r, frames[r.item_id]) for r in write.added],
        revised=[_object_out(r, frames[r.item_id]) for r in write.revised],
        unchanged=write.unchanged,
        kept=write.kept,
        stopped_at=write.stopped_at,
        retry=write.retry,
    )


def _check_frame(state: State, media_id: int, item_id: int) -> int:
    """The frame index of item ``item_id``; 404/422 unless it is a frame of the video."""
    with state.project.db.read() as s:
        item = s.get(Item, item_id)
        if item is None:
            raise HTTPException(404, f"no item {item_id}")
        if item.media_id != media_id or item.frame is None:
            raise HTTPException(422, f"item {item_id} is not a frame of video {media_id}")
        return int(item.frame)


def router() -> APIRouter:
    """The video routes (tag ``video``)."""
    api = APIRouter(prefix=f"{API_PREFIX}/videos", tags=["video"])

    @api.get("")
    def get_videos(user: Labeler, state: State) -> VideoListOut:
        """The project's videos, by media id: file name, size, frames imported and labeled."""
        try:
            found = list_videos(state.project)
        except ExemplarError as exc:
            _fail(exc)
        return VideoListOut(
            videos=[
                VideoSummaryOut(
                    media_id=v.media_id,
                    name=v.name,
                    width=v.width,
                    height=v.height,
                    fps=v.fps,
                    n_frames=v.n_frames,
                    imported=v.imported,
                    labeled=v.labeled,
                )
                for v in found
            ]
        )

    @api.get("/{media_id}")
    def get_video(media_id: PathId, user: Labeler, state: State) -> VideoOut:
        """The video's properties and every imported frame."""
        try:
            view = video_info(state.project, media_id)
        except ExemplarError as exc:
            _fail(exc)
        return VideoOut(
            media_id=view.media_id,
            width=view.width,
            height=view.height,
            fps=view.fps,
            n_frames=view.n_frames,
            duration=view.duration,
            codec=view.codec,
            frame_step=view.frame_step,
            frames=[FrameOut(**f.__dict__) for f in view.frames],
        )

    @api.get("/{media_id}/objects")
    def get_objects(media_id: PathId, user: Labeler, state: State) -> VideoObjectsOut:
        """The current objects of every frame (never deleted ones or hidden ground truth)."""
        try:
            found: list[VideoObject] = video_objects(state.project, media_id)
        except ExemplarError as exc:
            _fail(exc)
        return VideoObjectsOut(
            media_id=media_id,
            objects=[_object_out(o.annotation, o.frame) for o in found],
        )

    @api.post("/{media_id}/keyframes", status_code=201)
    def post_keyframe(
        media_id: PathId,
        body: KeyframeIn,
        user: Labeler,
        state: State,
        idempotency_key: IdempotencyKey = None,
    ) -> VideoObjectOut:
        """A person's box on a keyframe: a new track, or a track's (or object's) box on
        this frame moved there. Status verified, source human, keyframe true."""
        frame = _check_frame(state, media_id, body.item_id)
        try:
            row = save_keyframe(
                state.project,
                user.name,
                body.item_id,
                label=body.label,
                box=body.box,
                track_id=body.track_id,
                object_id=body.object_id,
                idempotency_key=_key(user.id, idempotency_key),
                may_override=_may_override(user),
            )
        except ExemplarError as exc:
            _fail(exc)
        return _object_out(row, frame)

    @api.post("/{media_id}/tracks/{track_id}/interpolate")
    def post_interpolate(
        media_id: PathId,
        track_id: PathId,
        user: Labeler,
        state: State,
        idempotency_key: IdempotencyKey = None,
    ) -> TrackWriteOut:
        """Linear boxes on every imported frame between consecutive keyframes of the track
        (one object per frame: interpolation's own boxes and open proposals are revised,
        unchanged ones left alone, and those a person changed or decided since are kept)."""
        try:
            done = interpolate_track(
                state.project,
                user.name,
                media_id,
                track_id,
                idempotency_key=_key(user.id, idempotency_key),
                may_override=_may_override(user),
            )
        except ExemplarError as exc:
            _fail(exc)
        return _track_out(done, _frames_of(state, media_id))

    @api.post("/{media_id}/tracks/propagate")
    def post_propagate(
        media_id: PathId,
        body: PropagateIn,
        user: Labeler,
        state: State,
        idempotency_key: IdempotencyKey = None,
    ) -> TrackWriteOut:
        """Follow an object with a tracker (template matching or MIL) and propose its box
        on the next frames (source model, status proposed, confidence the match score)."""
        _check_frame(state, media_id, body.item_id)
        try:
            done = propagate_track(
                state.project,
                user.name,
                body.item_id,
                body.object_id,
                frames=body.frames,
                method=body.method,
                min_score=body.min_score,
                idempotency_key=_key(user.id, idempotency_key),
                may_override=_may_override(user),
            )
        except ExemplarError as exc:
            _fail(exc)
        return _track_out(done, _frames_of(state, media_id))

    @api.post("/{media_id}/frames/done")
    def post_done(
        media_id: PathId,
        body: FramesDoneIn,
        user: Labeler,
        state: State,
        idempotency_key: IdempotencyKey = None,
    ) -> FramesDoneOut:
        """Frames ``first_frame..last_frame`` are labeled: each gets its objects label,
        its open proposals are rejected (or accepted) and its queue entries close."""
        try:
            done = finish_frames(
                state.project,
                user.name,
                media_id,
                body.first_frame,
                body.last_frame,
                accept_proposals=body.accept_proposals,
                idempotency_key=_key(user.id, idempotency_key),
                may_override=_may_override(user),
            )
        except ExemplarError as exc:
            _fail(exc)
        return FramesDoneOut(**done.__dict__)

    return api
