"""``exemplar export --format geojson``: a slide project's objects, one GeoJSON per slide.

Pathologists come from QuPath and go back to it. Every slide of the project is written as
``<dest>/<slide stem>.geojson`` (:func:`exemplar.formats.geojson.write_geojson`), which
QuPath opens with *File > Import objects* on the same slide: the verified objects of every
labeled region (and, with ``proposals``, the model's open proposals on any region, as
QuPath detections with their confidence), mapped from the region's item pixels back to the
slide's level-0 pixels (:func:`exemplar.sources.slide_objects.to_slide`).

Regions may overlap (``region_overlap``), and an object cut by a region's edge lies in
both: objects of the same class from **different** regions whose boxes overlap with an IoU
above :data:`DEDUP_IOU` are one object, and the one kept is the verified one before a
proposal, then the larger (the less clipped). Two overlapping objects a person drew in
one region are both kept.

Hard negatives (a person's "this is not a nucleus") are left out: QuPath has no such state
and would show them as objects of their class. A brush mask is written as its outline
(OpenCV's contours, when ``opencv`` is installed) or else as its box.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from exemplar.errors import ProjectError
from exemplar.formats.base import ObjectRecord, unique_names
from exemplar.formats.geojson import write_geojson
from exemplar.objects import box_iou
from exemplar.sources.slide_objects import to_slide
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationStatus, current_annotations
from exemplar.store.labels import current_labels
from exemplar.store.schema import Annotation, Item, Media, MediaKind

if TYPE_CHECKING:
    from exemplar.project.project import Project

__all__ = ["DEDUP_IOU", "SlideExport", "dedupe", "export_slides_geojson"]

#: Objects of one class from different regions overlapping more than this are one object.
DEDUP_IOU = 0.5
#: Side (level-0 px) of the grid cells :func:`dedupe` buckets boxes in.
_CELL = 512.0


class SlideExport:
    """What :func:`export_slides_geojson` wrote: the folder, the files, the objects."""

    def __init__(self, path: Path, files: list[Path], objects: int, duplicates: int) -> None:
        self.path = path
        self.files = files
        self.images = len(files)
        self.objects = objects
        self.duplicates = duplicates


def export_slides_geojson(
    project: Project, dest: Path | str, *, proposals: bool = False
) -> SlideExport:
    """Write ``dest/<slide>.geojson`` for every slide of ``project`` (see the module).

    Raises
    ------
    ProjectError
        The project holds no slide.
    """
    dest = Path(dest)
    statuses = [AnnotationStatus.VERIFIED.value]
    if proposals:
        statuses.append(AnnotationStatus.PROPOSED.value)
    with project.db.read() as s:
        slides = list(
            s.scalars(select(Media).where(Media.kind == MediaKind.SLIDE.value).order_by(Media.id))
        )
        if not slides:
            raise ProjectError(
                "this project holds no slide; export its images' objects as coco, yolo, voc "
                "or labelstudio"
            )
        regions = {
            item.id: item
            for item in s.scalars(select(Item).where(Item.media_id.in_([m.id for m in slides])))
        }
        labeled = {c.item_id for c in current_labels(s) if c.label == OBJECTS_LABEL}
        found = current_annotations(s, sorted(regions), statuses=statuses) if regions else []
    by_slide: dict[int, list[tuple[int, ObjectRecord]]] = defaultdict(list)
    for ann in found:
        item = regions[ann.item_id]
        if ann.status == AnnotationStatus.VERIFIED and item.id not in labeled:
            continue  # a region not labeled yet: its objects are work in progress
        if item.origin_x is None or item.origin_y is None or not item.scale:
            continue
        record = to_slide(_record(ann), (item.origin_x, item.origin_y), item.scale)
        assert item.media_id is not None
        by_slide[item.media_id].append((item.id, record))
    names = unique_names([Path(m.uri).with_suffix(".geojson") for m in slides])
    files: list[Path] = []
    written = duplicates = 0
    for media, name in zip(slides, names, strict=True):
        objects = by_slide.get(media.id, [])
        kept = dedupe(objects)
        duplicates += len(objects) - len(kept)
        written += len(kept)
        files.append(write_geojson(dest / name, kept))
    return SlideExport(dest, files, written, duplicates)


def dedupe(
    objects: Sequence[tuple[int, ObjectRecord]], iou: float = DEDUP_IOU
) -> list[ObjectRecord]:
    """One of each object that neighbouring regions both hold.

    ``objects`` are ``(region id, object)`` pairs in one slide's level-0 pixels. An object
    is dropped when a kept object of the same class from another region overlaps its box
    with an IoU above ``iou``; verified objects are kept before proposals, larger boxes
    before smaller. The kept objects are returned in the order they were given.
    """
    if not objects:
        return []

    def rank(k: int) -> tuple[int, float, int]:
        _, obj = objects[k]
        x0, y0, x1, y1 = obj.box
        return (obj.status == AnnotationStatus.PROPOSED, -(x1 - x0) * (y1 - y0), k)

    kept: list[int] = []
    grid: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for k in sorted(range(len(objects)), key=rank):
        region, obj = objects[k]
        cells = _cells(obj.label, obj.box)
        near = {j for cell in cells for j in grid.get(cell, ())}
        others = [j for j in near if objects[j][0] != region]
        if others:
            boxes = np.asarray([objects[j][1].box for j in others], np.float64)
            if (box_iou(np.asarray([obj.box]), boxes) > iou).any():
                continue
        kept.append(k)
        for cell in cells:
            grid[cell].append(k)
    return [objects[k][1] for k in sorted(kept)]


def _cells(label: str, box: tuple[float, float, float, float]) -> list[tuple[str, int, int]]:
    x0, y0, x1, y1 = (int(v // _CELL) for v in box)
    return [(label, cx, cy) for cx in range(x0, x1 + 1) for cy in range(y0, y1 + 1)]


def _record(ann: Annotation) -> ObjectRecord:
    """A stored object (item px) as a record; a mask becomes its outline polygons."""
    shape: dict[str, Any] = ann.shape or {}
    polygons = shape.get("polygons")
    if not polygons and shape.get("rle") is not None:
        polygons = _outline(shape["rle"])
    return ObjectRecord(
        label=ann.label,
        box=(ann.x0, ann.y0, ann.x1, ann.y1),
        polygons=polygons or None,
        score=ann.confidence,
        status=ann.status,
        source=ann.source,
        annotator=ann.annotator,
        model_version=ann.model_version,
    )


def _outline(rle: dict[str, Any]) -> list[list[float]] | None:
    """The outer contours of a COCO RLE mask as flat polygons through its edge pixels'
    centres (``index + 0.5`` in continuous pixels), or None when OpenCV is not installed or
    the mask holds no polygon of three points."""
    try:
        import cv2
    except ImportError:
        return None
    from pycocotools import mask as mask_utils

    mask = np.ascontiguousarray(mask_utils.decode(dict(rle)).astype(np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out: list[list[float]] = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64) + 0.5
        if len(points) >= 3:
            out.append([float(v) for v in points.ravel()])
    return out or None
