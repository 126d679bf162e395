"""GeoJSON objects of a whole-slide image, as QuPath exports and imports them: read and write.

QuPath (Bankhead et al., 2017) exports a slide's objects as GeoJSON (RFC 7946 syntax, with
coordinates in the slide's **level-0 pixels**, not longitude and latitude): a
``FeatureCollection`` (or a bare list) of ``Feature`` objects whose ``geometry`` is a
``Polygon`` or ``MultiPolygon``, whose class is ``properties.classification.name`` (some
tools write ``properties.name`` instead) and whose ``properties.objectType`` is
``"annotation"`` (drawn by a person) or ``"detection"`` (found by a QuPath command).

:func:`read_geojson` turns such a file into :class:`~exemplar.formats.base.ObjectRecord`
objects in level-0 pixels. Each polygon's exterior ring becomes one part of the object's
``polygons`` (the ring's closing point dropped) and the box is their bounding box; interior
rings (holes) are kept in ``extra["geojson"]["holes"]`` so that writing the object back
restores them, and are otherwise ignored (an outline with a hole is filled, as COCO polygons
are). A feature that cannot be read (a ``Point`` detection with no outline, a broken
geometry, an unknown class) is reported as a :class:`~exemplar.formats.base.FormatProblem`
and skipped; a file that is not GeoJSON at all raises :class:`~exemplar.errors.FormatError`.

:func:`write_geojson` writes objects back as a ``FeatureCollection`` QuPath opens with
*File > Import objects*: ``Polygon`` features (a box becomes its rectangle), the class in
``properties.classification.name``, ``objectType`` ``"annotation"`` for a person's objects
and ``"detection"`` for a model's proposals, and exemplar's provenance (status, source,
annotator, confidence, model version) under ``properties.exemplar``, so a file read back
keeps it. A feature without that key is read as verified, imported.

References
----------
Bankhead, P., et al. (2017). QuPath: Open source software for digital pathology image
analysis. Scientific Reports 7, 16878.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exemplar.errors import FormatError
from exemplar.formats.base import (
    SOURCES,
    STATUSES,
    FormatProblem,
    ObjectRecord,
    Problems,
    Skip,
    atomic_write_text,
    check_label,
    finite,
    load_json,
    polygon_area,
    polygons_box,
)

__all__ = ["read_geojson", "write_geojson"]

#: Colours QuPath shows the classes in (RGB), cycled by the order classes first appear.
_COLOURS = (
    (200, 0, 0),
    (0, 150, 0),
    (0, 80, 220),
    (220, 160, 0),
    (150, 0, 150),
    (0, 160, 160),
)
#: Namespace of the feature ids :func:`write_geojson` makes (deterministic: the same
#: objects give the same file).
_ID_NAMESPACE = uuid.UUID("6f1d3c58-0f6e-4b7c-9a8e-3c1f2b7d9e41")


def read_geojson(
    path: Path | str, classes: Sequence[str] | None = None
) -> tuple[list[ObjectRecord], list[FormatProblem]]:
    """Read a slide's objects from a GeoJSON file (QuPath's export).

    Parameters
    ----------
    path : path-like
        A ``.geojson`` (or ``.json``) file: a ``FeatureCollection``, a single ``Feature``, or
        a list of features.
    classes : sequence of str, optional
        The project's classes: features of another class are reported and skipped.

    Returns
    -------
    objects : list of ObjectRecord
        In level-0 pixels of the slide, in file order.
    problems : list of FormatProblem
        One per feature skipped, naming it (``feature 3``, or its ``id``/``name``).

    Raises
    ------
    FormatError
        The file is missing, not JSON, or not GeoJSON (no feature list).
    """
    path = Path(path)
    features = _features(load_json(path), path)
    problems = Problems()
    objects: list[ObjectRecord] = []
    for k, feature in enumerate(features):
        try:
            objects.append(_object(feature, classes))
        except Skip as exc:
            problems.add(path, _name(feature, k), str(exc))
    return objects, problems.items


def write_geojson(path: Path | str, objects: Sequence[ObjectRecord]) -> Path:
    """Write ``objects`` (level-0 pixels) as a QuPath-compatible ``FeatureCollection``.

    Boxes become rectangles, polygons ``Polygon`` (one part) or ``MultiPolygon`` features.
    A mask (``rle``) has no place in a slide's coordinates: an object with one and no
    polygons raises :class:`~exemplar.errors.FormatError` (turn masks into polygons first).
    The file is written atomically.
    """
    path = Path(path)
    colours: dict[str, tuple[int, int, int]] = {}
    features = []
    for k, obj in enumerate(objects):
        colour = colours.setdefault(obj.label, _COLOURS[len(colours) % len(_COLOURS)])
        features.append(_feature(obj, k, colour))
    doc = {"type": "FeatureCollection", "features": features}
    atomic_write_text(path, json.dumps(doc, separators=(",", ":")))
    return path


def _features(data: Any, path: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise FormatError(f"{path}: not GeoJSON (a FeatureCollection, Feature or list expected)")
    kind = data.get("type")
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise FormatError(f"{path}: a FeatureCollection needs a 'features' list")
        return features
    if kind == "Feature":
        return [data]
    raise FormatError(
        f"{path}: not GeoJSON (its 'type' is {kind!r}, expected 'FeatureCollection' or 'Feature')"
    )


def _name(feature: Any, k: int) -> str:
    if isinstance(feature, dict):
        props = feature.get("properties")
        name = props.get("name") if isinstance(props, dict) else None
        fid = feature.get("id")
        if isinstance(fid, str | int) and not isinstance(fid, bool):
            return f"feature {k} (id {fid})"
        if isinstance(name, str) and name:
            return f"feature {k} ({name})"
    return f"feature {k}"


def _object(feature: Any, classes: Sequence[str] | None) -> ObjectRecord:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise Skip("not a GeoJSON Feature (an object with type 'Feature')")
    raw_props = feature.get("properties")
    if raw_props is None:
        raw_props = {}
    if not isinstance(raw_props, dict):
        raise Skip("'properties' must be an object")
    props: dict[str, Any] = raw_props
    label = check_label(_class_name(props), classes)
    parts, holes = _geometry(feature.get("geometry"))
    box = polygons_box(parts)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise Skip("the outline has zero width or height")
    raw_meta = props.get("exemplar")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    score = meta.get("confidence")
    if score is not None:
        score = finite([score], "exemplar.confidence")[0]
    status, source = meta.get("status"), meta.get("source")
    if status not in STATUSES:
        status = "proposed" if score is not None and source == "model" else "verified"
    if source not in SOURCES:
        source = "model" if status == "proposed" else "import"
    extra: dict[str, Any] = {}
    for key in ("objectType", "name", "isLocked", "measurements"):
        if key in props:
            extra[key] = props[key]
    if isinstance(feature.get("id"), str):
        extra["id"] = feature["id"]
    if any(holes):
        extra["holes"] = holes
    return ObjectRecord(
        label=label,
        box=box,
        polygons=parts,
        score=score,
        status=status,
        source=source,
        annotator=_str_or_none(meta.get("annotator")),
        model_version=_str_or_none(meta.get("model_version")),
        extra={"geojson": extra},
    )


def _class_name(props: dict[str, Any]) -> Any:
    """The class: ``classification.name`` (QuPath), a plain ``classification`` string, or
    ``name`` (what some tools write instead)."""
    cls = props.get("classification")
    if isinstance(cls, dict):
        name = cls.get("name")
        if name is None and isinstance(cls.get("names"), list) and cls["names"]:
            name = ":".join(str(n) for n in cls["names"])  # QuPath's derived classes
        if name is not None:
            return name
    elif isinstance(cls, str):
        return cls
    return props.get("name")


def _geometry(geometry: Any) -> tuple[list[list[float]], list[list[list[float]]]]:
    """The exterior rings (flat ``[x, y, ...]``) of a Polygon or MultiPolygon, and each
    polygon's interior rings."""
    if not isinstance(geometry, dict):
        raise Skip("no geometry (a Polygon or MultiPolygon is needed)")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind in ("Point", "MultiPoint"):
        raise Skip(f"a {kind} has no outline; only Polygon and MultiPolygon objects are read")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise Skip("a MultiPolygon needs a non-empty list of polygons")
        polygons = coords
    else:
        raise Skip(f"geometry type {kind!r} is not read; only Polygon and MultiPolygon")
    parts: list[list[float]] = []
    holes: list[list[list[float]]] = []
    for i, rings in enumerate(polygons):
        what = "polygon" if kind == "Polygon" else f"polygon {i}"
        if not isinstance(rings, list) or not rings:
            raise Skip(f"{what} needs a list of rings (an exterior ring first)")
        exterior = _ring(rings[0], f"{what} exterior ring")
        if polygon_area(exterior) <= 0:
            raise Skip(f"{what} has zero area")
        parts.append(exterior)
        holes.append([_ring(r, f"{what} ring {j + 1}") for j, r in enumerate(rings[1:])])
    return parts, holes


def _ring(ring: Any, what: str) -> list[float]:
    """A linear ring as a flat ``[x, y, x, y, ...]`` list without its closing point."""
    if not isinstance(ring, list):
        raise Skip(f"{what} is not a list of positions")
    flat: list[float] = []
    for position in ring:
        if not isinstance(position, list) or len(position) < 2:
            raise Skip(f"{what} has a position that is not [x, y]: {position!r}")
        flat.extend(finite(position[:2], what))
    if len(flat) >= 4 and flat[:2] == flat[-2:]:
        flat = flat[:-2]
    points = {(flat[j], flat[j + 1]) for j in range(0, len(flat), 2)}
    if len(points) < 3:
        raise Skip(f"{what} has {len(points)} distinct points, needs at least 3")
    return flat


def _feature(obj: ObjectRecord, k: int, colour: tuple[int, int, int]) -> dict[str, Any]:
    if obj.polygons:
        parts = [list(p) for p in obj.polygons]
    elif obj.rle is not None:
        raise FormatError(
            f"object {k} ({obj.label!r}) is a mask; GeoJSON holds outlines: "
            "convert it to polygons first"
        )
    else:
        x0, y0, x1, y1 = obj.box
        parts = [[x0, y0, x1, y0, x1, y1, x0, y1]]
    for values in [*parts, list(obj.box)]:
        if not all(math.isfinite(v) for v in values):
            raise FormatError(f"object {k} ({obj.label!r}) has a non-finite coordinate")
    kept: dict[str, Any] = obj.extra.get("geojson", {})
    holes = kept.get("holes")
    if not (isinstance(holes, list) and len(holes) == len(parts)):
        holes = [[] for _ in parts]
    polygons = [
        [_closed(part), *(_closed(h) for h in part_holes)]
        for part, part_holes in zip(parts, holes, strict=True)
    ]
    geometry: dict[str, Any] = (
        {"type": "Polygon", "coordinates": polygons[0]}
        if len(polygons) == 1
        else {"type": "MultiPolygon", "coordinates": polygons}
    )
    proposal = obj.status == "proposed"
    props: dict[str, Any] = {
        "objectType": "detection" if proposal else "annotation",
        "classification": {"name": obj.label, "color": list(colour)},
    }
    for key in ("name", "isLocked", "measurements"):
        if key in kept:
            props[key] = kept[key]
    meta = {
        "status": obj.status,
        "source": obj.source,
        "annotator": obj.annotator,
        "confidence": obj.score,
        "model_version": obj.model_version,
    }
    props["exemplar"] = {k2: v for k2, v in meta.items() if v is not None}
    fid = kept.get("id")
    if not isinstance(fid, str):
        fid = str(uuid.uuid5(_ID_NAMESPACE, json.dumps([k, obj.label, polygons])))
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": props}


def _closed(flat: Sequence[float]) -> list[list[float]]:
    points = [[float(flat[j]), float(flat[j + 1])] for j in range(0, len(flat) - 1, 2)]
    if points and points[0] != points[-1]:
        points.append(list(points[0]))
    return points


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
