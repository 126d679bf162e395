"""A slide's objects (level-0 pixels) cut to its regions (item pixels), and back.

A whole-slide image imports as regions (:mod:`exemplar.sources.slides`): each region item
covers ``size * scale`` level-0 pixels from its ``origin``, shown at ``size`` item pixels.
Objects drawn on the whole slide (a QuPath GeoJSON export, :mod:`exemplar.formats.geojson`)
are in level-0 pixels; :func:`region_objects` gives the ones a region holds, in its item
pixels, by the rule tiles follow (:func:`exemplar.data.detection.tile`):

* an object is kept when at least ``min_visible`` of its **box** area lies inside the
  region (and some of it does), and is clipped to the region;
* an outline (polygons) is clipped to the region (Sutherland and Hodgman, 1974) and the box
  becomes the clipped outline's bounding box; an object whose outline misses the region
  although its box reaches in is dropped, as a tile drops an object whose cropped mask is
  empty;
* coordinates are then ``(X - origin) / scale``.

The rule is the tiles' one, restated here on arrays because :mod:`exemplar.data` sits above
:mod:`exemplar.sources` in the import graph (it reads its files through sources).
:class:`SlideObjects` sorts the objects once so that each region looks only at the objects
near it (a slide holds 10^5 to 10^6 nuclei and thousands of regions).
:func:`to_slide` maps a region's object back to level-0 pixels (the export).

:func:`slide_annotations` finds and reads the GeoJSON an import of a slide is given (an
explicit path, or the sidecar ``<slide>.geojson`` / ``<slide stem>.geojson`` beside it) and
reports its bad features to the import's log.

References
----------
Sutherland, I. E., and Hodgman, G. W. (1974). Reentrant polygon clipping. Communications
of the ACM 17(1), 32-42.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from exemplar.errors import DatasetError
from exemplar.formats.base import ObjectRecord, polygon_area, polygons_box
from exemplar.formats.geojson import read_geojson
from exemplar.sources.base import Log, Problem

__all__ = [
    "SIDECAR_SUFFIXES",
    "SlideObjects",
    "find_sidecar",
    "region_objects",
    "slide_annotations",
    "to_slide",
]

#: Suffixes of a slide's sidecar objects file, looked for beside the slide.
SIDECAR_SUFFIXES = (".geojson",)

Box = tuple[float, float, float, float]


class SlideObjects:
    """A slide's objects (level-0 pixels), indexed for cutting into regions.

    Parameters
    ----------
    objects : sequence of ObjectRecord
        Boxes or polygons in level-0 pixels. A mask (``rle``) cannot be placed on a slide
        and raises :class:`~exemplar.errors.DatasetError`.
    """

    def __init__(self, objects: Sequence[ObjectRecord]) -> None:
        for k, obj in enumerate(objects):
            if obj.rle is not None and not obj.polygons:
                raise DatasetError(
                    f"slide object {k} ({obj.label!r}) is a mask; objects on a slide are "
                    "boxes or polygons in level-0 pixels"
                )
        boxes = np.asarray([o.box for o in objects], np.float64).reshape(-1, 4)
        order = np.argsort(boxes[:, 1], kind="stable")
        self.objects = [objects[int(i)] for i in order]
        self.boxes = boxes[order]
        self.tallest = float((self.boxes[:, 3] - self.boxes[:, 1]).max()) if len(objects) else 0.0

    def __len__(self) -> int:
        return len(self.objects)

    def region(
        self,
        origin: tuple[float, float],
        scale: float,
        size: int | tuple[int, int],
        min_visible: float = 0.5,
    ) -> list[ObjectRecord]:
        """The objects of the region at ``origin`` (level-0 px) shown at ``scale`` level-0 px
        per item px, ``size`` item px (``(width, height)`` or one side), in item pixels."""
        if not scale > 0:
            raise DatasetError(f"a region's scale must be positive, got {scale}")
        if not 0.0 <= min_visible <= 1.0:
            raise DatasetError(f"min_visible must lie in [0, 1], got {min_visible}")
        width, height = (size, size) if isinstance(size, int) else size
        left, top = float(origin[0]), float(origin[1])
        right, bottom = left + width * scale, top + height * scale
        # objects whose box starts above the region's bottom and can reach its top
        lo = int(np.searchsorted(self.boxes[:, 1], top - self.tallest, side="left"))
        hi = int(np.searchsorted(self.boxes[:, 1], bottom, side="left"))
        b = self.boxes[lo:hi]
        cx0, cx1 = np.clip(b[:, 0], left, right), np.clip(b[:, 2], left, right)
        cy0, cy1 = np.clip(b[:, 1], top, bottom), np.clip(b[:, 3], top, bottom)
        inside = (cx1 - cx0) * (cy1 - cy0)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        visible = np.where(area > 0, inside / np.maximum(area, 1e-12), 0.0)
        keep = np.flatnonzero((inside > 0) & (visible >= min_visible))
        out: list[ObjectRecord] = []
        for j in keep:
            obj = self.objects[lo + int(j)]
            clipped = (cx0[j], cy0[j], cx1[j], cy1[j])
            box = _to_item(clipped, left, top, scale, width, height)
            polygons = None
            if obj.polygons:
                polygons = _clip_polygons(obj.polygons, left, top, scale, width, height)
                if not polygons:
                    continue
                box = polygons_box(polygons)
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            out.append(replace(obj, box=box, polygons=polygons, extra={}))
        return out


def region_objects(
    objects: Sequence[ObjectRecord],
    origin: tuple[float, float],
    scale: float,
    size: int | tuple[int, int],
    min_visible: float = 0.5,
) -> list[ObjectRecord]:
    """The slide objects (level-0 px) that lie in a region, in the region's item pixels.

    Parameters
    ----------
    objects : sequence of ObjectRecord
        Boxes or polygons in the slide's level-0 pixels.
    origin : (float, float)
        The region's top-left corner in level-0 pixels (``Item.origin_x``, ``origin_y``).
    scale : float
        Level-0 pixels per item pixel (``Item.scale``).
    size : int or (int, int)
        The region in item pixels: one side, or ``(width, height)``.
    min_visible : float
        An object is kept when at least this share of its box area lies inside (see the
        module docstring); 0 keeps any object that reaches in.

    Returns
    -------
    list of ObjectRecord
        Clipped to the region, ``(X - origin) / scale``, with their label, status, score and
        provenance (format-specific ``extra`` is dropped: it described the whole object).

    For many regions of one slide, build :class:`SlideObjects` once and call its
    :meth:`~SlideObjects.region`.
    """
    return SlideObjects(objects).region(origin, scale, size, min_visible)


def to_slide(obj: ObjectRecord, origin: tuple[float, float], scale: float) -> ObjectRecord:
    """A region's object (item px) in its slide's level-0 pixels: ``origin + x * scale``."""
    x0, y0 = float(origin[0]), float(origin[1])
    bx0, by0, bx1, by1 = obj.box
    box = (x0 + bx0 * scale, y0 + by0 * scale, x0 + bx1 * scale, y0 + by1 * scale)
    polygons = None
    if obj.polygons:
        polygons = [
            [(x0 if j % 2 == 0 else y0) + float(v) * scale for j, v in enumerate(poly)]
            for poly in obj.polygons
        ]
    return replace(obj, box=box, polygons=polygons)


def find_sidecar(slide: Path) -> Path | None:
    """The objects file beside ``slide``: ``<slide>.geojson`` (``a.svs.geojson``), else
    ``<stem>.geojson`` (``a.geojson``, QuPath scripts' usual name); None when neither is."""
    for suffix in SIDECAR_SUFFIXES:
        for candidate in (slide.with_name(slide.name + suffix), slide.with_suffix(suffix)):
            if candidate.is_file():
                return candidate
    return None


def slide_annotations(
    slide: Path, classes: Sequence[str], log: Log, path: Path | None = None
) -> list[ObjectRecord] | None:
    """The objects an import of ``slide`` is given, in level-0 pixels, or None for none.

    ``path`` names the GeoJSON file; without it the sidecar (:func:`find_sidecar`) is read
    when there is one. Each feature that cannot be read (no outline, bad geometry, a class
    not in ``classes``) is reported to ``log`` and skipped; a file that is not GeoJSON
    raises :class:`~exemplar.errors.FormatError` before anything is imported.
    """
    if path is None:
        path = find_sidecar(slide)
        if path is None:
            return None
    objects, problems = read_geojson(path, classes)
    for problem in problems:
        kind = "unknown class" if "class" in problem.message else "bad value"
        log.skip(Problem(f"{problem.file}#{problem.object}", problem.message, kind))
    log.note(f"slide '{slide}': {len(objects)} object(s) read from '{path}'")
    return objects


def _to_item(
    box: Sequence[float], left: float, top: float, scale: float, width: int, height: int
) -> Box:
    x0 = min(max((float(box[0]) - left) / scale, 0.0), float(width))
    y0 = min(max((float(box[1]) - top) / scale, 0.0), float(height))
    x1 = min(max((float(box[2]) - left) / scale, 0.0), float(width))
    y1 = min(max((float(box[3]) - top) / scale, 0.0), float(height))
    return x0, y0, x1, y1


def _clip_polygons(
    polygons: Sequence[Sequence[float]],
    left: float,
    top: float,
    scale: float,
    width: int,
    height: int,
) -> list[list[float]]:
    """Each polygon in item pixels, clipped to ``[0, width] x [0, height]``; parts that
    vanish (fewer than three points or no area left) are dropped."""
    out: list[list[float]] = []
    for poly in polygons:
        points = [
            ((float(poly[j]) - left) / scale, (float(poly[j + 1]) - top) / scale)
            for j in range(0, len(poly) - 1, 2)
        ]
        points = _clip_rect(points, float(width), float(height))
        flat = [
            min(max(v, 0.0), float(width if j % 2 == 0 else height))
            for j, v in enumerate(c for p in points for c in p)
        ]
        if len(flat) >= 6 and polygon_area(flat) > 0:
            out.append(flat)
    return out


def _clip_rect(
    points: list[tuple[float, float]], width: float, height: float
) -> list[tuple[float, float]]:
    """Sutherland-Hodgman clipping of a polygon to the rectangle ``[0, width] x [0, height]``."""
    edges = (
        (0, 0.0, True),  # x >= 0
        (0, width, False),  # x <= width
        (1, 0.0, True),  # y >= 0
        (1, height, False),  # y <= height
    )
    for axis, bound, lower in edges:
        if not points:
            break

        def inside(
            p: tuple[float, float], axis: int = axis, bound: float = bound, lower: bool = lower
        ) -> bool:
            return p[axis] >= bound if lower else p[axis] <= bound

        clipped: list[tuple[float, float]] = []
        prev = points[-1]
        for cur in points:
            if inside(cur):
                if not inside(prev):
                    clipped.append(_cross(prev, cur, axis, bound))
                clipped.append(cur)
            elif inside(prev):
                clipped.append(_cross(prev, cur, axis, bound))
            prev = cur
        points = clipped
    return points


def _cross(
    a: tuple[float, float], b: tuple[float, float], axis: int, bound: float
) -> tuple[float, float]:
    """Where the segment ``a``-``b`` crosses the line ``coordinate[axis] = bound``."""
    t = (bound - a[axis]) / (b[axis] - a[axis])
    point = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]
    point[axis] = bound
    return point[0], point[1]
