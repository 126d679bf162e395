"""Neutral annotation records every format reads into and writes from, and shared checks.

A reader returns a :class:`ReadResult`: the images it could read, each with the objects that
passed the checks, the class list, and one :class:`FormatProblem` per object or image it
skipped. Boxes are ``x0, y0, x1, y1`` in continuous pixel coordinates (COCO convention, see
:mod:`exemplar.objects`); polygons are flat ``[x, y, x, y, ...]`` lists in pixels and masks
COCO run-length encodings.

Each format keeps its own provenance (ids, flags, attributes) in ``extra`` under its own key
(``extra["coco"]``, ``extra["voc"]``, ``extra["labelstudio"]``), so writing back to the same
format restores it and other formats ignore it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from exemplar.errors import FormatError

__all__ = [
    "IMAGE_SUFFIXES",
    "TOLERANCE",
    "AnnotatedImage",
    "FormatProblem",
    "ObjectRecord",
    "ReadResult",
]

#: How far (pixels) a box or polygon may reach outside its image before it is rejected;
#: within it, coordinates are clipped to the image.
TOLERANCE = 1.0

#: File suffixes taken as images when a format lists a folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: Statuses and sources an :class:`ObjectRecord` may carry (the store's vocabulary).
STATUSES = ("proposed", "verified", "rejected", "hard_negative")
SOURCES = ("human", "model", "import", "simulated")


@dataclass(frozen=True)
class ObjectRecord:
    """One object on an image, as an annotation file states it.

    Parameters
    ----------
    label : str
        Class name.
    box : tuple of 4 floats
        ``x0, y0, x1, y1`` in pixels.
    polygons : list of flat coordinate lists, optional
        ``[[x, y, x, y, ...], ...]`` in pixels (one object may have several parts).
    rle : dict, optional
        COCO run-length encoded mask ``{"size": [h, w], "counts": str}``.
    score : float, optional
        Model confidence, for predictions.
    status, source, annotator, model_version
        Review state and provenance, as the store records them.
    extra : dict
        Format-specific provenance kept for round trips (under the format's own key).
    """

    label: str
    box: tuple[float, float, float, float]
    polygons: list[list[float]] | None = None
    rle: dict[str, Any] | None = None
    score: float | None = None
    status: str = "verified"
    source: str = "import"
    annotator: str | None = None
    model_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnnotatedImage:
    """An image file with its size and objects."""

    path: Path
    width: int
    height: int
    objects: list[ObjectRecord]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FormatProblem:
    """An object or image a reader skipped: which file, which object, and why."""

    file: str
    object: str | None
    message: str

    def __str__(self) -> str:
        if self.object is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}: {self.object}: {self.message}"


@dataclass(frozen=True)
class ReadResult:
    """What a reader got: the images, the class list, and what it skipped."""

    images: list[AnnotatedImage]
    classes: list[str]
    problems: list[FormatProblem]


class Skip(Exception):
    """Raised inside a reader for one bad object or image; the reader records a problem."""


class Problems:
    """Collects :class:`FormatProblem` entries for one read."""

    def __init__(self) -> None:
        self.items: list[FormatProblem] = []

    def add(self, file: Path | str, obj: str | None, message: str) -> None:
        """Record that ``obj`` of ``file`` was skipped because of ``message``."""
        self.items.append(FormatProblem(str(file), obj, message))


def finite(values: Iterable[Any], what: str) -> list[float]:
    """``values`` as floats, or :class:`Skip` when one is not a finite number."""
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise Skip(f"{what} has a value that is not a number: {v!r}")
        try:
            f = float(v)
        except ValueError:
            raise Skip(f"{what} has a value that is not a number: {v!r}") from None
        if not math.isfinite(f):
            raise Skip(f"{what} has a non-finite value: {v!r}")
        out.append(f)
    return out


def check_box(box: Sequence[Any], width: int, height: int) -> tuple[float, float, float, float]:
    """A valid ``x0, y0, x1, y1`` box clipped to the image, or :class:`Skip` saying why not."""
    if len(box) != 4:
        raise Skip(f"box needs 4 values, got {len(box)}")
    x0, y0, x1, y1 = finite(box, "box")
    if x1 <= x0 or y1 <= y0:
        raise Skip(f"box has zero or negative size: {_fmt(x0, y0, x1, y1)}")
    t = TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        raise Skip(f"box {_fmt(x0, y0, x1, y1)} lies outside the {width}x{height} image")
    x0, x1 = max(x0, 0.0), min(x1, float(width))
    y0, y1 = max(y0, 0.0), min(y1, float(height))
    if x1 <= x0 or y1 <= y0:
        raise Skip(f"box has zero size inside the {width}x{height} image")
    return x0, y0, x1, y1


def check_polygons(polygons: Any, width: int, height: int) -> list[list[float]]:
    """Valid polygons (each >= 3 points, inside the image within tolerance), or :class:`Skip`."""
    if not isinstance(polygons, list) or not polygons:
        raise Skip("polygon list is empty or not a list")
    out: list[list[float]] = []
    for i, poly in enumerate(polygons):
        if not isinstance(poly, list):
            raise Skip(f"polygon {i} is not a list of coordinates")
        values = finite(poly, f"polygon {i}")
        if len(values) % 2:
            raise Skip(f"polygon {i} has an odd number of coordinates ({len(values)})")
        if len(values) < 6:
            raise Skip(f"polygon {i} has {len(values) // 2} points, needs at least 3")
        xs, ys = values[0::2], values[1::2]
        t = TOLERANCE
        if min(xs) < -t or min(ys) < -t or max(xs) > width + t or max(ys) > height + t:
            raise Skip(f"polygon {i} lies outside the {width}x{height} image")
        clipped = [
            min(max(v, 0.0), float(width if j % 2 == 0 else height)) for j, v in enumerate(values)
        ]
        out.append(clipped)
    return out


def polygons_box(polygons: list[list[float]]) -> tuple[float, float, float, float]:
    """The bounding box of flat polygons."""
    xs = [v for p in polygons for v in p[0::2]]
    ys = [v for p in polygons for v in p[1::2]]
    return min(xs), min(ys), max(xs), max(ys)


def polygon_area(poly: Sequence[float]) -> float:
    """Shoelace area of a flat ``[x, y, x, y, ...]`` polygon."""
    xs, ys = poly[0::2], poly[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def check_label(label: Any, classes: Sequence[str] | None) -> str:
    """``label`` as a class name, or :class:`Skip` when empty or not in ``classes``."""
    if not isinstance(label, str) or not label.strip():
        raise Skip(f"missing or empty class name: {label!r}")
    if classes is not None and label not in classes:
        raise Skip(f"unknown class {label!r} (not in the {len(classes)} given classes)")
    return label


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (Pillow reads no pixels), or :class:`Skip`."""
    if not path.is_file():
        raise Skip(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError) as exc:
        raise Skip(f"cannot read image {path}: {exc}") from None


def positive_size(width: Any, height: Any) -> tuple[int, int]:
    """A declared image size as two positive ints, or :class:`Skip`."""
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise Skip(f"image size is not a number: {width!r} x {height!r}") from None
    if w <= 0 or h <= 0:
        raise Skip(f"image size must be positive, got {w}x{h}")
    return w, h


def collect_classes(images: Iterable[AnnotatedImage]) -> list[str]:
    """Class names in order of first appearance."""
    seen: dict[str, None] = {}
    for im in images:
        for obj in im.objects:
            seen.setdefault(obj.label, None)
    return list(seen)


def unique_names(paths: Sequence[Path]) -> list[str]:
    """A file name for each path, unique within the list (``name_1.jpg`` on a clash).

    Deterministic in the order of ``paths``, so a reader can recompute what a writer chose.
    """
    taken: set[str] = set()
    names: list[str] = []
    for p in paths:
        name = p.name
        i = 1
        while name.lower() in taken:
            name = f"{p.stem}_{i}{p.suffix}"
            i += 1
        taken.add(name.lower())
        names.append(name)
    return names


def copy_image(src: Path, dest: Path) -> None:
    """Copy an image file (metadata kept), creating the folder."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.resolve() != dest.resolve():
        shutil.copy2(src, dest)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "x") rather than mkstemp: the file gets the umask's permissions, not 0600
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_json(path: Path) -> Any:
    """Parse a JSON file, or :class:`FormatError` naming the file."""
    try:
        with path.open("rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc}") from None


def class_index(classes: Sequence[str]) -> dict[str, int]:
    """Position of each class name."""
    return {c: i for i, c in enumerate(classes)}


def require_label(label: str, index: dict[str, int], image: Path) -> int:
    """The class index of ``label`` for a writer, or :class:`FormatError`."""
    if label not in index:
        raise FormatError(f"{image}: class {label!r} is not in the classes given to the writer")
    return index[label]


def _fmt(*values: float) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
