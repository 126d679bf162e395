"""Video files read with PyAV (FFmpeg): their properties and their frames as RGB arrays.

A frame's **index** is its position in presentation order, counted from 0 over the decoded
frames of the file's first video stream; :func:`iter_frames` and :func:`read_frames` count
the same way, so an index names the same picture in both. Frames are decoded in order
(no seeking: a seek lands on a keyframe and the count would have to be rebuilt from
timestamps, which some containers do not carry reliably).

Every failure to open or decode a file raises :class:`~exemplar.errors.DatasetError`
naming the file (and the frame, when decoding fails part way).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from exemplar.errors import DatasetError

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "iter_frames", "probe", "read_frames"]

#: File types imported as videos (matched case-insensitively).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})

#: What PyAV raises for a file it cannot open or decode (FFmpeg errors, and OSError for
#: a missing or unreadable file).
_ERRORS = (av.FFmpegError, OSError, ValueError, IndexError)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says of itself.

    Attributes
    ----------
    fps : float
        Frames per second (the stream's average rate; its base rate when no average).
    n_frames : int
        Frames in the stream (from the header, else counted from its packets).
    width, height : int
        The frame size in pixels.
    duration : float
        Seconds (``n_frames / fps`` when the container does not say).
    codec : str
        The codec's FFmpeg name (``h264``, ``mpeg4``, ``vp9``, ...).
    """

    fps: float
    n_frames: int
    width: int
    height: int
    duration: float
    codec: str


@contextmanager
def _open(path: Path) -> Iterator[tuple[Any, Any]]:
    """The open container and its first video stream, or DatasetError."""
    try:
        container = av.open(str(path), mode="r")
    except _ERRORS as exc:
        raise DatasetError(f"cannot read the video '{path}': {exc}") from exc
    try:
        if not container.streams.video:
            raise DatasetError(f"'{path}' holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream
    finally:
        container.close()


def _fps(stream: Any) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def probe(path: Path) -> VideoInfo:
    """The properties of the video at ``path``.

    Raises
    ------
    DatasetError
        The file is missing, not a video, or has no video stream.
    """
    path = Path(path)
    with _open(path) as (container, stream):
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if width <= 0 or height <= 0:
            raise DatasetError(f"'{path}': the video stream has no frame size")
        fps = _fps(stream)
        n_frames = int(stream.frames or 0)
        if n_frames <= 0:  # not in the header (mkv, webm): count the stream's packets
            try:
                n_frames = sum(1 for packet in container.demux(stream) if packet.size)
            except _ERRORS as exc:
                raise DatasetError(f"cannot read the video '{path}': {exc}") from exc
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = float(container.duration) / av.time_base
        else:
            duration = n_frames / fps if fps else 0.0
        return VideoInfo(
            fps=fps,
            n_frames=n_frames,
            width=width,
            height=height,
            duration=duration,
            codec=str(stream.codec_context.name),
        )


def iter_frames(
    path: Path, step: int = 1, max_frames: int | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Every ``step``-th frame of the video: ``(index, time_s, rgb)``.

    ``rgb`` is ``(height, width, 3)`` uint8; ``time_s`` is the frame's presentation time
    (``index / fps`` when the frame carries none). At most ``max_frames`` frames are
    yielded.

    Raises
    ------
    DatasetError
        The file cannot be opened, or decoding fails (the message names the last frame
        read).
    """
    if step < 1:
        raise DatasetError(f"the frame step must be at least 1, got {step}")
    if max_frames is not None and max_frames <= 0:
        return
    path = Path(path)
    with _open(path) as (container, stream):
        fps = _fps(stream)
        yielded = 0
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if index % step:
                    continue
                time_s = float(frame.time) if frame.time is not None else index / (fps or 1.0)
                yield index, time_s, frame.to_ndarray(format="rgb24")
                yielded += 1
                if max_frames is not None and yielded >= max_frames:
                    return
        except _ERRORS as exc:
            raise DatasetError(
                f"cannot decode the video '{path}' after frame {index}: {exc}"
            ) from exc


def read_frames(path: Path, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """The frames at ``indices`` (RGB uint8), decoded in one pass up to the largest.

    Raises
    ------
    DatasetError
        The file cannot be read, an index is negative, or the video has fewer frames than
        an index asks for.
    """
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return {}
    if wanted[0] < 0:
        raise DatasetError(f"frame indices start at 0, got {wanted[0]}")
    out: dict[int, np.ndarray] = {}
    last = wanted[-1]
    todo = set(wanted)
    seen = 0
    for index, _, rgb in iter_frames(path):
        seen = index + 1
        if index in todo:
            out[index] = rgb
        if index >= last:
            break
    missing = [i for i in wanted if i not in out]
    if missing:
        raise DatasetError(f"'{path}' has no frame {missing[0]}: it has {seen} frames")
    return out
