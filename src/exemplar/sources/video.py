"""A video file, imported as frames: every ``frame_step``-th frame is an image item.

The video is decoded once with PyAV (:mod:`exemplar.media.video`). Each kept frame is
written as a JPEG (quality 95) to ``options.media_dir / "video-<uid[:12]>" /
"frame-<index:06d>.jpg"`` (an atomic replace; a file already holding the same bytes is
left alone, so importing the video again rewrites nothing and adds nothing), and becomes
an item:

* ``uid``: the SHA-256 of the video's content hash and the frame's index (two identical
  frames of one video stay two items, and one frame is one item however often it is
  imported);
* ``uri``: the frame file (the labeling app serves it like any image), ``file_id`` that
  file's identity (:func:`exemplar.sources.images.file_id`), ``width``/``height`` the
  frame size;
* ``media``: the video's media row (kind ``video``, ``uri`` the video file, properties
  ``fps``, ``n_frames``, ``duration``, ``codec`` and ``frame_step``), ``frame`` the index.

The video's content hash is the SHA-256 of the whole file. Feature rows are computed (in
the import's thread pool, by the project's ``rows``) from the written JPEG files, only for
frames not stored yet: the detector and the annotator see the same pixels. A video whose
end cannot be decoded keeps the frames before the damage (reported as a problem); one whose
first frame cannot be decoded raises :class:`~exemplar.errors.DatasetError`.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from exemplar.errors import DatasetError
from exemplar.media.video import VideoInfo, iter_frames, probe
from exemplar.sources.annotated import PixelRows, read_pixels
from exemplar.sources.base import Chunk, Log, Problem, Record, Source, SourceOptions
from exemplar.sources.images import file_id
from exemplar.store.media import MediaRecord
from exemplar.store.schema import MediaKind

__all__ = ["FRAMES_PER_CHUNK", "JPEG_QUALITY", "VideoSource", "frame_uid", "video_uid"]

#: JPEG quality of the frame files.
JPEG_QUALITY = 95
#: Decoded frames held at once (a chunk is at most this many frames, whatever its size).
FRAMES_PER_CHUNK = 32


def video_uid(path: Path) -> str:
    """The content hash of a video: the SHA-256 of its bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_uid(video: str, index: int) -> str:
    """The content hash of a frame item: its video's hash and its index."""
    return hashlib.sha256(f"frame\0{video}\0{index}".encode()).hexdigest()


def _jpeg(rgb: np.ndarray) -> bytes:
    out = BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` unless it already holds them (a temporary file, then a
    rename: a reader never sees half a frame)."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".frame-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class VideoSource(Source):
    """A video's frames, each an image item (see the module docstring).

    Parameters
    ----------
    path : Path
        The video file (anything FFmpeg reads: ``.mp4``, ``.avi``, ``.mov``, ``.mkv``,
        ``.webm``, ...).
    options : SourceOptions
        ``frame_step`` (import every n-th frame) and ``media_dir`` (where frame files go).
    rows : PixelRows
        Turns decoded frames into feature rows.
    dim : int
        Features per frame.
    log : Log
        Receives a note on the video and the frames that could not be written or read.

    Raises
    ------
    DatasetError
        The video is missing or unreadable, ``frame_step`` is below 1, or no
        ``media_dir`` was given.
    """

    def __init__(
        self, path: Path, options: SourceOptions, rows: PixelRows, dim: int, log: Log
    ) -> None:
        if options.frame_step < 1:
            raise DatasetError(f"frame_step must be at least 1, got {options.frame_step}")
        if options.media_dir is None:
            raise DatasetError(f"importing the video '{path}' needs a folder for its frames")
        try:
            real = Path(os.path.realpath(path, strict=True))
            stat = real.stat()
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read the video '{path}': {exc}") from exc
        self.path = Path(path)
        self.real = real
        self.rows = rows
        self.dim = dim
        self.log = log
        self.step = int(options.frame_step)
        self.info: VideoInfo = probe(real)
        self.uid = video_uid(real)
        self.folder = Path(options.media_dir) / f"video-{self.uid[:12]}"
        self.media = MediaRecord(
            uid=self.uid,
            kind=MediaKind.VIDEO.value,
            uri=str(real),
            file_id=file_id(stat),
            width=self.info.width,
            height=self.info.height,
            properties={
                "fps": self.info.fps,
                "n_frames": self.info.n_frames,
                "duration": self.info.duration,
                "codec": self.info.codec,
                "frame_step": self.step,
            },
        )
        self.what = f"frames of the video '{path}'"
        self.total = max(1, math.ceil(self.info.n_frames / self.step))
        log.note(
            f"video '{path}': {self.info.width}x{self.info.height}, {self.info.n_frames} "
            f"frame(s) at {self.info.fps:g} fps ({self.info.codec}); importing every "
            f"{self._nth()} frame as an image in {self.folder}"
        )

    def _nth(self) -> str:
        if self.step == 1:
            return "single"
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(self.step % 10, "th")
        return f"{self.step}{'th' if 10 <= self.step % 100 <= 20 else suffix}"

    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        self.folder.mkdir(parents=True, exist_ok=True)
        per_chunk = max(1, min(int(size), FRAMES_PER_CHUNK))
        batch: list[tuple[int, np.ndarray]] = []
        seen = 0
        frames = iter_frames(self.real, self.step)
        while True:
            try:
                index, _, rgb = next(frames)
            except StopIteration:
                break
            except DatasetError as exc:
                if not seen and not batch:
                    raise
                # a damaged tail: keep the frames before it, and say where it stopped
                self.log.skip(Problem(str(self.path), str(exc), "unreadable file"))
                break
            batch.append((index, rgb))
            if len(batch) == per_chunk:
                seen += len(batch)
                yield self._chunk(batch, seen, pool)
                batch = []
        if batch:
            seen += len(batch)
            yield self._chunk(batch, seen, pool)

    def _chunk(
        self, batch: list[tuple[int, np.ndarray]], seen: int, pool: ThreadPoolExecutor
    ) -> Chunk:
        records = [r for r in pool.map(lambda frame: self._record(*frame), batch) if r is not None]
        return Chunk(records, None, seen, featurize=self._featurize)

    def _where(self, index: int) -> str:
        return f"{self.path}#frame={index}"

    def _record(self, index: int, rgb: np.ndarray) -> Record | None:
        target = self.folder / f"frame-{index:06d}.jpg"
        try:
            _write_atomic(target, _jpeg(rgb))
            stat = target.stat()
        except OSError as exc:
            why = f"cannot write the frame file {target}: {exc}"
            self.log.skip(Problem(self._where(index), why, "unreadable file"))
            return None
        return Record(
            uid=frame_uid(self.uid, index),
            uri=str(target.resolve()),
            where=self._where(index),
            kind="image",
            label=None,
            path=target,
            file_id=file_id(stat),
            width=int(rgb.shape[1]),
            height=int(rgb.shape[0]),
            media=self.media,
            frame=index,
        )

    def _featurize(
        self, records: list[Record], pool: ThreadPoolExecutor
    ) -> tuple[list[int], np.ndarray]:
        done: list[int] = []
        pixels: list[np.ndarray] = []
        for i, decoded in enumerate(pool.map(_decode, [r.path for r in records])):
            if isinstance(decoded, str):
                self.log.skip(Problem(records[i].where, decoded, "unreadable file"))
                continue
            done.append(i)
            pixels.append(decoded)
        if not pixels:
            return done, np.empty((0, self.dim), np.float32)
        return done, self.rows(pixels)


def _decode(path: Path | None) -> np.ndarray | str:
    assert path is not None
    try:
        return read_pixels(path)
    except (OSError, ValueError) as exc:
        return f"cannot read the frame file {path}: {exc}"
