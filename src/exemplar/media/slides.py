"""Whole-slide images: open, describe, read regions, plan a slide's regions, find tissue.

Slides are read with openslide-python (:func:`openslide.open_slide`): Aperio SVS,
Hamamatsu NDPI, MIRAX MRXS, Leica SCN, Ventana BIF, generic pyramidal (tiled) TIFF and the
other formats OpenSlide reads. Any other image Pillow reads (PNG, JPEG, plain TIFF) opens as
one level through :class:`openslide.ImageSlide`, decoded once to 8-bit RGB.

Coordinates are OpenSlide's: ``(x, y)`` in **level-0 pixels** (the slide's full
resolution). A region is read at a ``scale`` (level-0 pixels per output pixel): scale 2 on a
40x slide gives the region as a 20x objective shows it. The reader picks the pyramid level
closest below the scale (never a coarser one), reads there and resizes to the exact size.

Open slides are kept in a small, thread-safe LRU (:data:`MAX_OPEN`, and plain images of
:data:`PLAIN_BYTES` decoded bytes in all), keyed by real path, size and modification time,
so a file replaced on disk is opened again. A handle dropped from the LRU is closed when
the last reader lets it go (openslide closes on garbage collection), never under a
reader's feet; what is made from a slide and kept (a Deep Zoom generator) is kept with its
handle (:func:`derived`), so nothing holds a slide open past these bounds.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import openslide
from PIL import Image, UnidentifiedImageError

from exemplar.errors import DatasetError

__all__ = [
    "MAX_OPEN",
    "PLAIN_BYTES",
    "SLIDE_SUFFIXES",
    "SlideInfo",
    "close_all",
    "decoded_bytes",
    "derived",
    "is_slide",
    "open_slide",
    "open_stats",
    "plan_regions",
    "read_region",
    "reopen",
    "scale_for",
    "slide_identity",
    "slide_info",
    "tissue_fraction",
]

#: File types that are always whole-slide images (matched case-insensitively). ``.tif`` and
#: ``.tiff`` files are slides when tiled with several pyramid levels (:func:`is_slide`).
SLIDE_SUFFIXES = frozenset({".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
#: Slides kept open at once.
MAX_OPEN = 16
#: Decoded bytes of the plain images kept open at once (each is decoded whole: a
#: 10,000 x 10,000 image holds 400 MB); the most recently used one is kept, however large.
PLAIN_BYTES = 1 << 30
#: Pixels with every channel at least this bright are background (glass, blank scan area).
WHITE_LEVEL = 220
#: Pixels with every channel at most this dark are empty (black fill, unscanned area).
BLACK_LEVEL = 25

Slide = openslide.OpenSlide | openslide.ImageSlide
T = TypeVar("T")


@dataclass(frozen=True)
class SlideInfo:
    """What a slide says of itself.

    Attributes
    ----------
    width, height : int
        Level-0 size in pixels.
    levels : int
        Pyramid levels (1 for a plain image).
    level_dimensions : tuple of (int, int)
        ``(width, height)`` of each level.
    level_downsamples : tuple of float
        Level-0 pixels per pixel of each level.
    mpp_x, mpp_y : float or None
        Microns per level-0 pixel, when the file records them.
    objective_power : float or None
        The scanner's objective magnification (e.g. 20 or 40), when recorded.
    vendor : str or None
        OpenSlide's format name (``aperio``, ``hamamatsu``, ``generic-tiff``, ...); None
        for a plain image.
    """

    width: int
    height: int
    levels: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    vendor: str | None

    def properties(self) -> dict[str, Any]:
        """The JSON properties of the slide's media row."""
        return {
            "mpp_x": self.mpp_x,
            "mpp_y": self.mpp_y,
            "objective_power": self.objective_power,
            "vendor": self.vendor,
            "levels": self.levels,
        }


# --------------------------------------------------------------------------- open slides


@dataclass
class _Handle:
    """An open slide, its estimated decoded bytes (plain images; 0 for OpenSlide's files)
    and the objects made from it (:func:`derived`), dropped with it."""

    slide: Slide
    cost: int
    derived: dict[Hashable, Any] = field(default_factory=dict)


def decoded_bytes(slide: Slide) -> int:
    """The memory a slide holds decoded: a plain image's pixels (Pillow keeps RGB as four
    bytes a pixel); 0 for a file OpenSlide reads by tiles (its own cache is bounded)."""
    if isinstance(slide, openslide.ImageSlide):
        width, height = slide.dimensions
        return int(width) * int(height) * 4
    return 0


def slide_identity(path: Path | str) -> tuple[int, int]:
    """``(size, modification time in ns)`` of the real file at ``path``: what the open
    handles are keyed by (with the real path).

    Raises
    ------
    DatasetError
        The file is missing or unreadable.
    """
    try:
        stat = os.stat(os.path.realpath(path, strict=True))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read slide '{path}': {exc}") from exc
    return stat.st_size, stat.st_mtime_ns


class _Handles:
    """An LRU of open slides, safe to share between threads: at most ``capacity`` of them,
    and plain images of at most ``plain_bytes`` decoded bytes in all (the most recently
    used one is always kept, however large)."""

    def __init__(self, capacity: int, plain_bytes: int) -> None:
        self.capacity = capacity
        self.plain_bytes = plain_bytes
        self.plain_total = 0
        self._open: OrderedDict[tuple[str, int, int], _Handle] = OrderedDict()
        self._lock = threading.Lock()

    def entry(self, path: Path | str, identity: tuple[int, int] | None = None) -> _Handle:
        try:
            real = os.path.realpath(path, strict=True)
            stat = os.stat(real)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read slide '{path}': {exc}") from exc
        key = (real, stat.st_size, stat.st_mtime_ns)
        if identity is not None and key[1:] != tuple(identity):
            raise DatasetError(f"cannot read slide '{path}': the file changed since it was opened")
        with self._lock:
            found = self._open.get(key)
            if found is not None:
                self._open.move_to_end(key)
                return found
        slide = _open(real, path)  # outside the lock: opening a large slide takes a while
        with self._lock:
            found = self._open.get(key)
            if found is None:
                found = self._open[key] = _Handle(slide, decoded_bytes(slide))
                self.plain_total += found.cost
            self._open.move_to_end(key)
            self._trim(key)
        return found  # a handle dropped from the LRU closes once no reader holds it

    def _trim(self, keep: tuple[str, int, int]) -> None:
        while len(self._open) > self.capacity:
            self._drop(next(iter(self._open)))
        while self.plain_total > self.plain_bytes:
            oldest = next((k for k, h in self._open.items() if h.cost and k != keep), None)
            if oldest is None:
                break
            self._drop(oldest)

    def _drop(self, key: tuple[str, int, int]) -> None:
        self.plain_total -= self._open.pop(key).cost

    def forget(self, path: Path | str) -> None:
        """Drop every handle of ``path`` (after a read failed: OpenSlide handles that hit
        an error stay in error)."""
        real = os.path.realpath(path)
        with self._lock:
            for key in [k for k in self._open if k[0] == real]:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._open.clear()
            self.plain_total = 0

    def __len__(self) -> int:
        return len(self._open)


def _plain_rgb(im: Image.Image) -> Image.Image:
    """A plain image as 8-bit RGB (16-bit grey scaled by its maximum)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        grey = np.zeros(arr.shape, np.uint8) if top <= 0 else (arr * (255.0 / top)).round()
        return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _open(real: str, shown: Path | str) -> Slide:
    try:
        return openslide.OpenSlide(real)
    except openslide.OpenSlideUnsupportedFormatError:
        pass
    except (openslide.OpenSlideError, OSError) as exc:
        raise DatasetError(f"cannot read slide '{shown}': {exc}") from exc
    try:
        with Image.open(real) as im:
            rgb = _plain_rgb(im)
    except Image.DecompressionBombError as exc:
        raise DatasetError(
            f"cannot read slide '{shown}': {exc}; convert it to a pyramidal tiled TIFF "
            "(for example `vips tiffsave in.png out.tif --tile --pyramid`)"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(
            f"cannot read slide '{shown}': neither OpenSlide nor Pillow can read it ({exc})"
        ) from exc
    return openslide.ImageSlide(rgb)


_HANDLES = _Handles(MAX_OPEN, PLAIN_BYTES)


def open_slide(path: Path | str, identity: tuple[int, int] | None = None) -> Slide:
    """The open slide at ``path`` (shared; do not close it, and do not keep it: a handle
    kept outside the LRU escapes its bounds).

    Parameters
    ----------
    path : path-like
        The slide.
    identity : (int, int), optional
        The file's :func:`slide_identity` when the caller first read it: a file that
        changed since is refused.

    Raises
    ------
    DatasetError
        The file is missing or changed, or neither OpenSlide nor Pillow can read it.
    """
    return _HANDLES.entry(path, identity).slide


def derived(
    path: Path | str,
    name: Hashable,
    make: Callable[[Slide], T],
    identity: tuple[int, int] | None = None,
) -> T:
    """An object made by ``make`` from the open slide at ``path`` (a Deep Zoom generator,
    say), kept with the handle under ``name`` and dropped with it, so that it never keeps
    a slide open past the LRU's bounds. Raises as :func:`open_slide`."""
    handle = _HANDLES.entry(path, identity)
    found = handle.derived.get(name)
    if found is None:
        found = handle.derived[name] = make(handle.slide)
    return cast(T, found)


def open_stats() -> tuple[int, int]:
    """``(slides open, decoded bytes of the plain images among them)`` in the LRU."""
    return len(_HANDLES), _HANDLES.plain_total


def reopen(path: Path | str) -> Slide:
    """A new handle of ``path`` (shared from now on), after the current one failed."""
    _HANDLES.forget(path)
    return _HANDLES.entry(path).slide


def close_all() -> None:
    """Drop every open slide (they close once no reader holds them)."""
    _HANDLES.clear()


def _float(properties: Any, name: str) -> float | None:
    value = properties.get(name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def slide_info(path: Path | str) -> SlideInfo:
    """Size, levels, resolution and objective power of the slide at ``path``."""
    slide = open_slide(path)
    props = slide.properties
    width, height = slide.dimensions
    return SlideInfo(
        width=int(width),
        height=int(height),
        levels=int(slide.level_count),
        level_dimensions=tuple((int(w), int(h)) for w, h in slide.level_dimensions),
        level_downsamples=tuple(float(d) for d in slide.level_downsamples),
        mpp_x=_float(props, openslide.PROPERTY_NAME_MPP_X),
        mpp_y=_float(props, openslide.PROPERTY_NAME_MPP_Y),
        objective_power=_float(props, openslide.PROPERTY_NAME_OBJECTIVE_POWER),
        vendor=props.get(openslide.PROPERTY_NAME_VENDOR),
    )


def is_slide(path: Path | str) -> bool:
    """Whether ``path`` is a whole-slide image: a slide file type, or a TIFF that is tiled
    with several pyramid levels (a plain or single-level TIFF is an ordinary image)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES or not path.is_file():
        return False
    try:
        detected = openslide.OpenSlide.detect_format(str(path))
    except (openslide.OpenSlideError, OSError):
        return False
    if detected is None:
        return False
    try:
        slide = open_slide(path)
    except DatasetError:
        return False
    return bool(slide.level_count > 1)


# --------------------------------------------------------------------------- regions


def scale_for(info: SlideInfo, magnification: float | None) -> float:
    """Level-0 pixels per item pixel for regions cut at ``magnification`` (None: 1.0).

    Raises
    ------
    DatasetError
        The slide records no objective power (then pass no magnification: regions at full
        resolution), or the magnification is not positive or exceeds the objective's.
    """
    if magnification is None:
        return 1.0
    if not math.isfinite(magnification) or magnification <= 0:
        raise DatasetError(f"magnification must be a positive number, got {magnification}")
    if info.objective_power is None:
        raise DatasetError(
            f"the slide records no objective power, so magnification {magnification:g}x "
            "cannot be converted to a resolution; import it without a magnification "
            "(regions at full resolution)"
        )
    if magnification > info.objective_power:
        raise DatasetError(
            f"magnification {magnification:g}x exceeds the slide's objective power "
            f"{info.objective_power:g}x (it was scanned at that resolution); choose "
            f"{info.objective_power:g}x or less"
        )
    return info.objective_power / magnification


def _starts(length: int, size: int, step: int) -> list[int]:
    """Starts every ``step`` of windows of ``size``; the last shifted inward to end at
    ``length`` (as :func:`exemplar.data.detection.tile_starts`)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, step))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def plan_regions(
    info: SlideInfo, scale: float, size: int, overlap: int = 0
) -> list[tuple[int, int]]:
    """Level-0 origins ``(x, y)`` of the regions that cover the slide, row by row.

    A region is ``size`` item pixels square, ``size * scale`` level-0 pixels. Neighbours
    share ``overlap`` item pixels; the last region of a row or column is shifted inward to
    end at the slide's edge (every region is whole), as :func:`exemplar.data.detection.tile`
    cuts images. A slide smaller than one region gives one region at (0, 0).
    """
    if size < 1:
        raise DatasetError(f"region size must be a positive number of pixels, got {size}")
    if not 0 <= overlap < size:
        raise DatasetError(f"region overlap must be at least 0 and below {size}, got {overlap}")
    if not math.isfinite(scale) or scale <= 0:
        raise DatasetError(f"scale must be a positive number, got {scale}")
    extent = max(1, round(size * scale))
    step = max(1, round((size - overlap) * scale))
    xs = _starts(info.width, extent, step)
    ys = _starts(info.height, extent, step)
    return [(x, y) for y in ys for x in xs]


def _rgb(region: Image.Image) -> np.ndarray:
    """An OpenSlide RGBA read as RGB over white (transparent = outside the scanned area)."""
    arr = np.asarray(region)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4]
        if alpha.min() == 255:
            return np.ascontiguousarray(arr[..., :3])
        a = alpha.astype(np.uint16)
        blended = (arr[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
        return blended.astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def _read(slide: Slide, x: int, y: int, scale: float, width: int, height: int) -> Image.Image:
    level = int(slide.get_best_level_for_downsample(scale)) if scale > 1 else 0
    downsample = float(slide.level_downsamples[level])
    read_w = max(1, math.ceil(width * scale / downsample))
    read_h = max(1, math.ceil(height * scale / downsample))
    return slide.read_region((x, y), level, (read_w, read_h))


def read_region(
    path: Path | str,
    origin: Sequence[int],
    scale: float,
    size: Sequence[int] | int,
) -> np.ndarray:
    """The pixels of a region of a slide, ``(h, w, 3)`` uint8.

    Parameters
    ----------
    path : path-like
        The slide.
    origin : (int, int)
        The region's top-left corner ``(x, y)`` in level-0 pixels.
    scale : float
        Level-0 pixels per output pixel (1: full resolution).
    size : int or (int, int)
        The output's ``(width, height)`` (an int: a square).

    Pixels outside the slide (or its scanned area) are white.

    Raises
    ------
    DatasetError
        The slide cannot be read.
    """
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width < 1 or height < 1:
        raise DatasetError(f"region size must be positive, got {width}x{height}")
    if not math.isfinite(scale) or scale <= 0:
        raise DatasetError(f"scale must be a positive number, got {scale}")
    x, y = int(origin[0]), int(origin[1])
    try:
        region = _read(open_slide(path), x, y, scale, width, height)
    except (openslide.OpenSlideError, OSError, ValueError):
        # An OpenSlide handle that failed once fails every call after, the other threads'
        # included: drop it, and read again with a handle of this call's own, so that only
        # a region that itself cannot be decoded is reported.
        _HANDLES.forget(path)
        try:
            region = _read(_open(os.path.realpath(path), path), x, y, scale, width, height)
        except (openslide.OpenSlideError, OSError, ValueError) as exc:
            raise DatasetError(f"cannot read slide '{path}' at ({x}, {y}): {exc}") from exc
    if region.size != (width, height):
        region = region.resize((width, height), Image.Resampling.BILINEAR)
    return _rgb(region)


def tissue_fraction(rgb: np.ndarray, stride: int = 4) -> float:
    """The share of a region's pixels that show something: neither near-white background
    (glass; every channel at least :data:`WHITE_LEVEL`) nor empty black (every channel at
    most :data:`BLACK_LEVEL`).

    A cheap threshold on every ``stride``-th pixel in each direction: enough to skip the
    empty parts of a slide, not a segmentation. Grey ``(h, w)`` input is accepted.
    """
    arr = np.asarray(rgb)
    if arr.size == 0:
        return 0.0
    sample = arr[::stride, ::stride]
    if sample.ndim == 2:
        low = high = sample
    else:
        low, high = sample.min(axis=2), sample.max(axis=2)
    shown = (low < WHITE_LEVEL) & (high > BLACK_LEVEL)
    return float(shown.mean())
