"""Images with objects: COCO, YOLO, Pascal VOC and Label Studio inputs of detection projects.

The annotation file is read by :mod:`exemplar.formats` (its problems, such as a box outside
its image, an unknown class or a missing image, are reported per file and object and
skipped). Each image becomes an item whose feature row is its pixels, scaled to fit the
project's ``[data] image_side`` and padded (the detector's input), and whose objects are
stored as annotations by the batch writer. A folder of plain images, with no annotation
file, imports as unlabeled images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from exemplar.errors import DatasetError, FormatError
from exemplar.formats import AnnotatedImage, detect_format, read_annotations
from exemplar.formats.base import IMAGE_SUFFIXES
from exemplar.sources.base import Chunk, Log, Problem, Record, Source
from exemplar.store.annotations import OBJECTS_LABEL

__all__ = ["AnnotatedSource", "PixelRows", "counts_as_labeled", "read_pixels"]


#: Turns decoded images into the detector's input rows (``(n, C * S * S)`` float32).
PixelRows = Callable[[Sequence[np.ndarray]], np.ndarray]


def read_pixels(path: Path) -> np.ndarray:
    """An image file's pixels: ``(h, w)`` for grey (8 or 16 bits), ``(h, w, 3)`` for color."""
    with Image.open(path) as im:
        if im.mode.startswith("I;16"):
            return np.asarray(im).astype(np.uint16)
        if im.mode == "I":
            return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
        if im.mode in ("L", "1"):
            return np.asarray(im.convert("L"))
        if im.mode == "LA":
            return np.asarray(im.getchannel(0))
        return np.asarray(im.convert("RGB"))


class AnnotatedSource(Source):
    """An annotation file (or folder) and its images, for a detection or segmentation project.

    Parameters
    ----------
    path : Path
        A COCO or Label Studio JSON file, a YOLO or VOC folder, or a folder of plain images.
    classes : sequence of str
        The project's classes: objects of other classes are reported and skipped.
    rows : PixelRows
        Turns decoded images into feature rows.
    dim : int
        Features per image (``channels * image_side ** 2``).
    log : Log
        Receives the skipped objects and images.
    fmt : str, optional
        The annotation format; detected when None.
    expand : callable, optional
        Turns one image into the items imported for it (e.g. its tiles); an image it cannot
        read is reported and skipped.
    """

    def __init__(
        self,
        path: Path,
        classes: Sequence[str],
        rows: PixelRows,
        dim: int,
        log: Log,
        fmt: str | None = None,
        expand: Callable[[AnnotatedImage], list[AnnotatedImage]] | None = None,
    ) -> None:
        self.what = str(path)
        self.dim = dim
        self.rows = rows
        self.log = log
        self.expand = expand
        self.annotated = True
        try:
            fmt = fmt or detect_format(path)
        except FormatError:
            if not path.is_dir():
                raise
            fmt = None
        if fmt is None:  # plain images: unlabeled
            self.annotated = False
            self.images = _plain_images(path)
            log.note(f"no annotation file found in {path}: its images are imported unlabeled")
        else:
            result = read_annotations(path, fmt, classes=classes)
            for problem in result.problems:
                where = (
                    problem.file if problem.object is None else f"{problem.file}#{problem.object}"
                )
                log.skip(Problem(where, problem.message, _kind(problem.message)))
            self.images = result.images
            log.note(f"read {len(self.images)} image(s) from {fmt} annotations at {path}")
        self.total = len(self.images)

    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        for start in range(0, len(self.images), size):
            part = self.images[start : start + size]
            records = []
            for image in part:
                for item in self._items(image):
                    record = self._record(item)
                    if record is not None:
                        records.append(record)
            yield Chunk(records, None, start + len(part), featurize=self._featurize)

    def _items(self, image: AnnotatedImage) -> list[AnnotatedImage]:
        if self.expand is None:
            return [image]
        try:
            return self.expand(image)
        except (OSError, UnidentifiedImageError, ValueError, DatasetError) as exc:
            self.log.skip(
                Problem(str(image.path), f"cannot cut into tiles: {exc}", "unreadable file")
            )
            return []

    def _record(self, image: AnnotatedImage) -> Record | None:
        path = image.path
        try:
            data = path.read_bytes()
            stat = path.stat()
        except OSError as exc:
            self.log.skip(Problem(str(path), f"cannot read the image: {exc}", "unreadable file"))
            return None
        return Record(
            uid=hashlib.sha256(data).hexdigest(),
            uri=str(path.resolve()),
            where=str(path),
            kind="image",
            label=OBJECTS_LABEL if self.annotated and counts_as_labeled(image) else None,
            path=path,
            file_id=f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}",
            objects=list(image.objects) if self.annotated else None,
            width=image.width or None,
            height=image.height or None,
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
            height, width = decoded.shape[:2]
            declared = (records[i].width, records[i].height)
            if declared != (None, None) and declared != (width, height):
                why = (
                    f"the annotations say the image is {declared[0]}x{declared[1]}, the file is "
                    f"{width}x{height}: its objects would be misplaced"
                )
                self.log.skip(Problem(records[i].where, why, "bad value"))
                continue
            records[i].height, records[i].width = height, width
            done.append(i)
            pixels.append(decoded)
        if not pixels:
            return done, np.empty((0, self.dim), np.float32)
        return done, self.rows(pixels)


def counts_as_labeled(image: AnnotatedImage) -> bool:
    """An image counts as labeled unless all its objects are a model's proposals; a tile
    counts as its image does (``extra["labeled"]``), even with no objects of its own."""
    if "labeled" in image.extra:
        return bool(image.extra["labeled"])
    return not image.objects or any(o.status != "proposed" for o in image.objects)


def _decode(path: Path | None) -> np.ndarray | str:
    assert path is not None
    try:
        return read_pixels(path)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        return f"not a readable image: {exc}"


def _plain_images(folder: Path) -> list[AnnotatedImage]:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DatasetError(f"cannot import '{folder}': no annotation file and no images in it")
    return [AnnotatedImage(p, 0, 0, []) for p in files]


def _kind(message: str) -> str:
    text = message.lower()
    if "class" in text or "category" in text:
        return "unknown class"
    if "missing" in text or "not found" in text or "no such" in text:
        return "unreadable file"
    return "bad value"
