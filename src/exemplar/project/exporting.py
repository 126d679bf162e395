"""``exemplar export``: the project's labels as CSV or JSON, with their provenance.

Each row says which item was labeled (id, content hash, source URI), with what, how sure the
label is (status), who made it (source and annotator), when (ISO 8601, UTC), and why the
item was asked for: the cycle number, the strategy that selected it and its score. By default
the current label of each labeled item is written (the newest entry of its history, whatever
its status); ``history=True`` writes every entry of the append-only history instead.

The file is written atomically (a temporary file beside it, fsync'ed, then renamed), so a
reader never sees half an export.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from sqlalchemy import func, select

from exemplar.errors import DatasetError, ProjectError
from exemplar.formats import FORMATS, AnnotatedImage, ObjectRecord, write_annotations
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationStatus, current_annotations
from exemplar.store.labels import current_labels
from exemplar.store.schema import Annotation, Cycle, Item, Label

if TYPE_CHECKING:  # the facade imports this module when it exports
    from exemplar.project.project import Project

__all__ = ["EXPORT_COLUMNS", "ObjectsExport", "export_labels", "export_objects"]

#: Columns of an export, in order (``ground_truth`` is added last when asked for).
EXPORT_COLUMNS = (
    "label_id",
    "item_id",
    "uid",
    "uri",
    "kind",
    "label",
    "status",
    "source",
    "annotator",
    "created_at",
    "cycle",
    "strategy",
    "score",
)
_FORMATS = ("csv", "json")
_YIELD_PER = 5000


def export_labels(
    project: Project,
    path: Path | str,
    *,
    fmt: Literal["csv", "json"] | None = None,
    history: bool = False,
    include_ground_truth: bool = False,
) -> int:
    """Write the project's labels with provenance to ``path``; return the rows written.

    Parameters
    ----------
    project : Project
        The open project.
    path : path-like
        The output file (its folder is created if missing; an existing file is replaced).
    fmt : {"csv", "json"}, optional
        The format; by default taken from the suffix of ``path`` (``.csv`` or ``.json``).
        CSV has a header row and leaves missing values empty; JSON is one array of objects
        with ``null`` for missing values.
    history : bool
        Write every label ever recorded (ordered by when it was written) instead of the
        current label of each item (ordered by the item's feature row).
    include_ground_truth : bool
        Add a ``ground_truth`` column (the hidden labels of simulated projects).

    Returns
    -------
    int
        The number of label rows written.

    Raises
    ------
    DatasetError
        If the format is unknown or cannot be inferred, or the file cannot be written.
    """
    path = Path(path)
    kind = _resolve_format(path, fmt)
    columns = [*EXPORT_COLUMNS, *(["ground_truth"] if include_ground_truth else [])]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            rows = _rows(project, history=history, include_ground_truth=include_ground_truth)
            if kind == "csv":
                count = _write_csv(fh, columns, rows)
            else:
                count = _write_json(fh, rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise DatasetError(f"cannot write '{path}': {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is None:
        suffix = path.suffix.lower().lstrip(".")
        if suffix not in _FORMATS:
            raise DatasetError(
                f"cannot tell the export format from '{path}'; name it .csv or .json, "
                "or pass fmt='csv' or fmt='json'"
            )
        return suffix
    if fmt not in _FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; choose 'csv' or 'json'")
    return fmt


def _rows(
    project: Project, *, history: bool, include_ground_truth: bool
) -> Iterator[dict[str, Any]]:
    """Export rows, streamed from the database in chunks."""
    query = (
        select(
            Label.id,
            Label.item_id,
            Item.uid,
            Item.uri,
            Item.kind,
            Label.label,
            Label.status,
            Label.source,
            Label.annotator,
            Label.created_at,
            Cycle.number,
            Label.strategy,
            Label.score,
            Item.ground_truth,
        )
        .join(Item, Item.id == Label.item_id)
        .outerjoin(Cycle, Cycle.id == Label.cycle_id)
    )
    if history:
        query = query.order_by(Label.id)
    else:
        newest = select(func.max(Label.id).label("label_id")).group_by(Label.item_id).subquery()
        query = query.join(newest, newest.c.label_id == Label.id).order_by(Item.row)
    with project.db.session() as s:
        result = s.execute(query.execution_options(yield_per=_YIELD_PER))
        for row in result:
            out: dict[str, Any] = {
                "label_id": row[0],
                "item_id": row[1],
                "uid": row[2],
                "uri": row[3],
                "kind": row[4],
                "label": row[5],
                "status": row[6],
                "source": row[7],
                "annotator": row[8],
                "created_at": _iso_utc(row[9]),
                "cycle": row[10],
                "strategy": row[11],
                "score": _finite(row[12]),
            }
            if include_ground_truth:
                out["ground_truth"] = row[13]
            yield out


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix (SQLite returns naive datetimes, stored as UTC)."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _write_csv(fh: TextIO, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        count += 1
    return count


def _write_json(fh: TextIO, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    fh.write("[")
    for row in rows:
        fh.write(",\n  " if count else "\n  ")
        fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
        count += 1
    fh.write("\n]\n" if count else "]\n")
    return count


@dataclass(frozen=True)
class ObjectsExport:
    """What :func:`export_objects` wrote: where, and how many images and objects."""

    path: Path
    images: int
    objects: int


def export_objects(
    project: Project,
    dest: Path | str,
    fmt: str,
    *,
    proposals: bool = False,
    copy_images: bool = False,
) -> ObjectsExport:
    """Write a detection or segmentation project's labeled objects in an annotation format.

    Every labeled image is written with its current verified objects and hard negatives
    (formats that carry a status keep it, with the source, annotator and model version:
    COCO and Label Studio; YOLO and VOC hold the verified objects only). With
    ``proposals``, the model's open proposals are written too, on any image (as Label
    Studio predictions, or with a score in COCO), so another tool can review them.
    ``geojson`` writes one file per slide in its level-0 pixels, for QuPath
    (:mod:`exemplar.project.slide_export`; ``images`` then counts slides).

    Raises
    ------
    ProjectError
        The project does not label objects, or ``fmt`` is not an annotation format.
    """
    if not project.config.project.objects:
        raise ProjectError(
            f"format {fmt!r} exports objects; this project's task is "
            f"{project.config.project.task!r} (export its labels as .csv or .json)"
        )
    if fmt == "geojson":  # slides: one file per slide, in level-0 pixels (QuPath)
        from exemplar.project.slide_export import export_slides_geojson

        out = export_slides_geojson(project, Path(dest), proposals=proposals)
        return ObjectsExport(out.path, out.images, out.objects)
    if fmt not in FORMATS:
        raise ProjectError(
            f"unknown annotation format {fmt!r}; choose one of: {', '.join(FORMATS)}, "
            "or geojson for slides"
        )
    keep = {AnnotationStatus.VERIFIED.value, AnnotationStatus.HARD_NEGATIVE.value}
    if fmt in ("yolo", "voc"):
        keep = {AnnotationStatus.VERIFIED.value}
    with project.db.read() as s:
        labeled = {c.item_id for c in current_labels(s) if c.label == OBJECTS_LABEL}
        statuses = [*keep, *([AnnotationStatus.PROPOSED.value] if proposals else [])]
        found = current_annotations(s, None, statuses=statuses)
        wanted = labeled | {a.item_id for a in found if a.status == "proposed"}
        items = (
            {item.id: item for item in s.scalars(select(Item).where(Item.id.in_(sorted(wanted))))}
            if wanted
            else {}
        )
    by_item: dict[int, list[ObjectRecord]] = {i: [] for i in items}
    for ann in found:
        if ann.item_id in items and (ann.item_id in labeled or ann.status == "proposed"):
            by_item[ann.item_id].append(_record(ann))
    images = [
        AnnotatedImage(Path(items[i].uri), items[i].width or 0, items[i].height or 0, objs)
        for i, objs in sorted(by_item.items())
    ]
    path = write_annotations(images, project.classes, Path(dest), fmt, copy_images=copy_images)
    return ObjectsExport(path, len(images), sum(len(i.objects) for i in images))


def _record(ann: Annotation) -> ObjectRecord:
    shape = ann.shape or {}
    return ObjectRecord(
        label=ann.label,
        box=(ann.x0, ann.y0, ann.x1, ann.y1),
        polygons=shape.get("polygons"),
        rle=shape.get("rle"),
        score=ann.confidence,
        status=ann.status,
        source=ann.source,
        annotator=ann.annotator,
        model_version=ann.model_version,
        extra={"exemplar": {"object_id": ann.object_id}},
    )
