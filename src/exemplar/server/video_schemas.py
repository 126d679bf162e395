"""Request and response bodies of the video API (:mod:`exemplar.server.routes.video`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from exemplar.server.schemas import MAX_DB_ID, MIN_DB_ID, Box, ObjectOut

__all__ = [
    "FrameOut",
    "FramesDoneIn",
    "FramesDoneOut",
    "KeyframeIn",
    "PropagateIn",
    "TrackWriteOut",
    "VideoListOut",
    "VideoObjectOut",
    "VideoObjectsOut",
    "VideoOut",
    "VideoSummaryOut",
]

#: The largest frame index a request may name.
MAX_FRAME = 10**9


class VideoSummaryOut(BaseModel):
    """One of the project's videos: its file name (never the server's path), frame size
    (px), frame rate, frames in the file, frames imported, and imported frames done."""

    media_id: int
    name: str
    width: int
    height: int
    fps: float
    n_frames: int
    imported: int
    labeled: int


class VideoListOut(BaseModel):
    """The project's videos, by media id (empty when it has none)."""

    videos: list[VideoSummaryOut]


class FrameOut(BaseModel):
    """One imported frame: its item, index in the video, time (s), and what is on it."""

    item_id: int
    frame: int
    time: float
    labeled: bool
    n_objects: int
    n_proposals: int
    keyframe: bool


class VideoOut(BaseModel):
    """A video's properties and its imported frames, in order."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "media_id": 3,
                    "width": 256,
                    "height": 256,
                    "fps": 12.0,
                    "n_frames": 48,
                    "duration": 4.0,
                    "codec": "h264",
                    "frame_step": 1,
                    "frames": [
                        {
                            "item_id": 41,
                            "frame": 0,
                            "time": 0.0,
                            "labeled": False,
                            "n_objects": 1,
                            "n_proposals": 0,
                            "keyframe": True,
                        }
                    ],
                }
            ]
        }
    }

    media_id: int
    width: int
    height: int
    fps: float
    n_frames: int
    duration: float
    codec: str
    frame_step: int
    frames: list[FrameOut]


class VideoObjectOut(ObjectOut):
    """An object of a video frame (an :class:`ObjectOut`) and the frame it is on."""

    frame: int


class VideoObjectsOut(BaseModel):
    """The current objects of every frame of a video, by frame then object."""

    media_id: int
    objects: list[VideoObjectOut]


class KeyframeIn(BaseModel):
    """A person's box on a keyframe: a new track (neither id), the track's box on this
    frame (``track_id``), or one object of the frame moved (``object_id``)."""

    model_config = {
        "json_schema_extra": {
            "examples": [{"item_id": 41, "label": "nucleus", "box": [60, 9, 88, 32]}]
        }
    }

    item_id: int = Field(ge=MIN_DB_ID, le=MAX_DB_ID)
    label: str = Field(min_length=1, max_length=255)
    box: Box
    track_id: int | None = Field(default=None, ge=MIN_DB_ID, le=MAX_DB_ID)
    object_id: int | None = Field(default=None, ge=MIN_DB_ID, le=MAX_DB_ID)


class PropagateIn(BaseModel):
    """Follow an object with a tracker through the next ``frames`` imported frames."""

    model_config = {
        "json_schema_extra": {
            "examples": [{"item_id": 41, "object_id": 17, "frames": 10, "method": "template"}]
        }
    }

    item_id: int = Field(ge=MIN_DB_ID, le=MAX_DB_ID)
    object_id: int = Field(ge=MIN_DB_ID, le=MAX_DB_ID)
    frames: int = Field(default=10, ge=1, le=1000)
    method: Literal["template", "mil"] = "template"
    min_score: float = Field(default=0.5, ge=-1.0, le=1.0)


class TrackWriteOut(BaseModel):
    """What an interpolation or a propagation wrote (see
    :class:`exemplar.project.video.TrackWrite`)."""

    track_id: int
    added: list[VideoObjectOut]
    revised: list[VideoObjectOut]
    unchanged: int
    kept: int = Field(
        0,
        description="In-between objects interpolation left alone: a person moved, relabeled, "
        "verified or rejected them since (always 0 for a propagation).",
    )
    stopped_at: int | None
    retry: bool


class FramesDoneIn(BaseModel):
    """Frames ``first_frame..last_frame`` (inclusive) are done; their open proposals are
    rejected, or verified with ``accept_proposals``."""

    first_frame: int = Field(ge=0, le=MAX_FRAME)
    last_frame: int = Field(ge=0, le=MAX_FRAME)
    accept_proposals: bool = False


class FramesDoneOut(BaseModel):
    """What marking frames done changed (zeros when they were done already)."""

    frames: int
    labeled: int
    closed: int
    accepted: int
    rejected: int
