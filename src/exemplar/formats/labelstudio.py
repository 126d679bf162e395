"""Label Studio JSON export (a list of tasks): read and write.

Each task names its image in ``data`` and holds ``annotations`` (people's work) and
``predictions`` (a model's). Regions are ``rectanglelabels`` (``x, y, width, height`` in
percent of the image, rotated by ``rotation`` degrees about the top-left corner) and
``polygonlabels`` (``points`` in percent). Annotations are read as verified human labels
with ``completed_by`` (an id or ``{"email": ...}``) as the annotator; predictions as model proposals with their score and
``model_version``. Other region types are reported and skipped; non-region results
(choices, text, ratings) are ignored.

Image references ``/data/local-files/?d=...``, ``/data/upload/...``, plain paths and URLs
are looked up as files: as given, relative to the JSON file, and in an ``images/`` folder
beside it (nothing is downloaded). Written tasks reference images as
``/data/local-files/?d=<absolute path>``, which Label Studio serves with local file serving
on and ``LOCAL_FILES_DOCUMENT_ROOT=/``. Label Studio refuses an import whose ``completed_by``
is not a member of the organization, so written annotations leave it out (the importing user
becomes their annotator) and exemplar's annotator names go in the task's
``meta.exemplar.annotators``, one per annotation, which the reader uses when
``completed_by`` is absent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from exemplar.errors import FormatError
from exemplar.formats.base import (
    IMAGE_SUFFIXES,
    AnnotatedImage,
    ObjectRecord,
    Problems,
    ReadResult,
    Skip,
    atomic_write_text,
    check_box,
    check_label,
    check_polygons,
    collect_classes,
    copy_image,
    finite,
    image_size,
    load_json,
    polygon_area,
    polygons_box,
    unique_names,
)

__all__ = ["read_labelstudio", "write_labelstudio"]

#: Result types that carry no region; they are ignored, not reported.
_NON_REGION = {"choices", "textarea", "rating", "taxonomy", "number", "datetime", "relation"}


def read_labelstudio(path: Path, classes: Sequence[str] | None = None) -> ReadResult:
    """Read a Label Studio JSON export (``[task, ...]`` or one task)."""
    path = Path(path)
    data = _load(path)
    tasks = [data] if isinstance(data, dict) else data
    problems = Problems()
    images: list[AnnotatedImage] = []
    for t, task in enumerate(tasks):
        if not isinstance(task, dict):
            problems.add(path, f"task {t}", "is not an object; skipped")
            continue
        task_id = task.get("id", t)
        try:
            file = _resolve(_image_ref(task.get("data")), path.parent)
            width, height = image_size(file)
        except Skip as exc:
            problems.add(path, f"task {task_id}", f"{exc}; its regions are skipped")
            continue
        objects: list[ObjectRecord] = []
        for kind, group, annotator in _groups(task):
            for r, result in enumerate(group.get("result") or []):
                rid = result.get("id", r) if isinstance(result, dict) else r
                try:
                    obj = _object(result, kind, group, annotator, width, height, classes)
                except Skip as exc:
                    problems.add(path, f"task {task_id} result {rid}", str(exc))
                    continue
                if obj is not None:
                    objects.append(obj)
        extra = {"labelstudio": {"id": task_id}}
        images.append(AnnotatedImage(file, width, height, objects, extra))
    names = list(classes) if classes is not None else collect_classes(images)
    return ReadResult(images, names, problems.items)


def write_labelstudio(
    images: Sequence[AnnotatedImage],
    classes: Sequence[str],
    dest: Path,
    *,
    copy_images: bool = False,
) -> Path:
    """Write ``dest/tasks.json`` for Label Studio's import (and ``dest/images/`` when copying).

    Proposed objects become ``predictions`` (one per model version), all others
    ``annotations`` (one per annotator). An object with polygons is written as its largest
    polygon. Returns the JSON file's path.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    known = set(classes)
    tasks: list[dict[str, Any]] = []
    for i, (im, name) in enumerate(zip(images, unique_names([im.path for im in images]))):
        image = im.path.resolve()
        if copy_images:
            copy_image(im.path, dest / "images" / name)
            image = (dest / "images" / name).resolve()
        annotations: dict[str | None, list[dict[str, Any]]] = {}
        predictions: dict[str | None, list[dict[str, Any]]] = {}
        for n, obj in enumerate(im.objects):
            if obj.label not in known:
                raise FormatError(f"{im.path}: class {obj.label!r} is not in the given classes")
            result = _result(obj, im, n)
            if obj.status == "proposed":
                predictions.setdefault(obj.model_version, []).append(result)
            else:
                annotations.setdefault(obj.annotator, []).append(result)
        task_id = im.extra.get("labelstudio", {}).get("id")
        task: dict[str, Any] = {
            "id": task_id if isinstance(task_id, int) else i + 1,
            "data": {"image": "/data/local-files/?d=" + quote(image.as_posix().lstrip("/"))},
            "annotations": [{"result": res} for res in annotations.values()],
            "predictions": [_prediction(version, res) for version, res in predictions.items()],
        }
        if any(who is not None for who in annotations):
            task["meta"] = {"exemplar": {"annotators": list(annotations)}}
        tasks.append(task)
    out = dest / "tasks.json"
    atomic_write_text(out, json.dumps(tasks, indent=1, ensure_ascii=False))
    return out


def _load(path: Path) -> Any:
    data = load_json(path)
    if isinstance(data, dict) and "data" in data:
        return data
    if not isinstance(data, list):
        raise FormatError(f"{path}: not a Label Studio export (expected a list of tasks)")
    return data


def _groups(task: dict[str, Any]) -> list[tuple[str, dict[str, Any], str | None]]:
    """(kind, annotation or prediction, annotator) for each group that is not cancelled."""
    meta = task.get("meta")
    ours = meta.get("exemplar") if isinstance(meta, dict) else None
    listed = ours.get("annotators") if isinstance(ours, dict) else None
    listed = listed if isinstance(listed, list) else []
    groups: list[tuple[str, dict[str, Any], str | None]] = []
    for kind in ("annotations", "predictions"):
        for i, group in enumerate(task.get(kind) or []):
            if not isinstance(group, dict) or group.get("was_cancelled"):
                continue
            who = group.get("completed_by")
            who = who.get("email", who.get("id")) if isinstance(who, dict) else who
            if who is None and kind == "annotations" and i < len(listed):
                who = listed[i]
            groups.append((kind, group, None if who is None else str(who)))
    return groups


def _image_ref(data: Any) -> str:
    if not isinstance(data, dict):
        raise Skip("task has no 'data' object")
    ref = data.get("image")
    if not isinstance(ref, str):
        ref = next(
            (
                v
                for v in data.values()
                if isinstance(v, str) and Path(urlsplit(v).path).suffix.lower() in IMAGE_SUFFIXES
            ),
            None,
        )
    if not ref:
        raise Skip("task data names no image")
    return ref


def _resolve(ref: str, base: Path) -> Path:
    parts = urlsplit(ref)
    candidates: list[Path] = []
    if parts.path.startswith("/data/local-files"):
        d = parse_qs(parts.query).get("d", [""])[0]
        candidates += [Path("/" + d.lstrip("/")), base / d]
        name = Path(d).name
    elif parts.scheme in ("", "file") and not parts.path.startswith("/data/upload"):
        local = Path(unquote(parts.path))
        candidates += [local] if local.is_absolute() else [base / local]
        name = local.name
    else:
        name = Path(unquote(parts.path)).name
    stripped = re.sub(r"^[0-9a-f]{8}-", "", name)
    for n in dict.fromkeys([name, stripped]):
        candidates += [base / n, base / "images" / n]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise Skip(f"image file not found: {ref}")


def _object(
    result: Any,
    kind: str,
    group: dict[str, Any],
    annotator: str | None,
    width: int,
    height: int,
    classes: Sequence[str] | None,
) -> ObjectRecord | None:
    if not isinstance(result, dict):
        raise Skip("result is not an object")
    rtype = result.get("type")
    if rtype in _NON_REGION:
        return None
    value = result.get("value")
    if not isinstance(value, dict):
        raise Skip("result has no 'value' object")
    if rtype not in ("rectanglelabels", "polygonlabels"):
        raise Skip(f"unsupported result type {rtype!r}")
    labels = value.get(rtype)
    if not isinstance(labels, list) or not labels:
        raise Skip(f"no label in {rtype}")
    label = check_label(labels[0], classes)
    polygons = None
    if rtype == "rectanglelabels":
        box = check_box(_rectangle(value, width, height), width, height)
    else:
        points = value.get("points")
        if not isinstance(points, list) or not all(isinstance(p, list) for p in points):
            raise Skip("polygon points must be a list of [x, y] pairs")
        if any(len(p) != 2 for p in points):
            raise Skip("polygon has a point without exactly 2 coordinates")
        scale = (width / 100, height / 100)
        flat = [v * scale[i] for p in points for i, v in enumerate(finite(p, "point"))]
        polygons = check_polygons([flat], width, height)
        box = check_box(polygons_box(polygons), width, height)
    extra = {k: result[k] for k in ("id", "from_name", "to_name") if k in result}
    if value.get("rotation"):
        extra["rotation"] = value["rotation"]
    if kind == "annotations":
        return ObjectRecord(
            label,
            box,
            polygons,
            status="verified",
            source="human",
            annotator=annotator,
            extra={"labelstudio": extra},
        )
    raw = result.get("score", group.get("score"))
    score = None if raw is None else finite([raw], "score")[0]
    version = group.get("model_version")
    return ObjectRecord(
        label,
        box,
        polygons,
        score=score,
        status="proposed",
        source="model",
        model_version=None if version in (None, "") else str(version),
        extra={"labelstudio": extra},
    )


def _rectangle(value: dict[str, Any], width: int, height: int) -> list[float]:
    """Pixel bounds of a (possibly rotated) percent rectangle."""
    if any(k not in value for k in ("x", "y", "width", "height")):
        raise Skip("rectangle needs x, y, width, height")
    x, y, w, h = finite([value[k] for k in ("x", "y", "width", "height")], "rectangle")
    x, w = x * width / 100, w * width / 100
    y, h = y * height / 100, h * height / 100
    if w <= 0 or h <= 0:
        raise Skip(f"rectangle has zero or negative size ({w:g} x {h:g} px)")
    (angle,) = finite([value.get("rotation") or 0], "rotation")
    if not angle:
        return [x, y, x + w, y + h]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = [(dx * c - dy * s, dx * s + dy * c) for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    xs = [x + px for px, _ in corners]
    ys = [y + py for _, py in corners]
    return [min(xs), min(ys), max(xs), max(ys)]


def _result(obj: ObjectRecord, im: AnnotatedImage, n: int) -> dict[str, Any]:
    ls = obj.extra.get("labelstudio", {})
    w, h = im.width, im.height
    if obj.polygons:
        poly = max(obj.polygons, key=polygon_area)
        points = [[poly[i] / w * 100, poly[i + 1] / h * 100] for i in range(0, len(poly), 2)]
        rtype, value = "polygonlabels", {"points": points, "closed": True}
    else:
        x0, y0, x1, y1 = obj.box
        rtype = "rectanglelabels"
        value = {
            "x": x0 / w * 100,
            "y": y0 / h * 100,
            "width": (x1 - x0) / w * 100,
            "height": (y1 - y0) / h * 100,
            "rotation": 0,
        }
    value[rtype] = [obj.label]
    result: dict[str, Any] = {
        "id": str(ls.get("id", f"r{n}")),
        "type": rtype,
        "from_name": ls.get("from_name", "label"),
        "to_name": ls.get("to_name", "image"),
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": value,
    }
    if obj.score is not None:
        result["score"] = float(obj.score)
    return result


def _prediction(version: str | None, results: list[dict[str, Any]]) -> dict[str, Any]:
    scores = [r["score"] for r in results if "score" in r]
    pred: dict[str, Any] = {"result": results}
    if version is not None:
        pred["model_version"] = version
    if scores:
        pred["score"] = sum(scores) / len(scores)
    return pred
