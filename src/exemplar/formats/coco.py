"""COCO JSON (Lin et al., 2014, "Microsoft COCO: Common Objects in Context"): read and write.

Boxes are COCO ``bbox = [x, y, width, height]``; masks are polygons or run-length encodings
(compressed string counts, or uncompressed integer counts), handled with
:mod:`pycocotools.mask`. An annotation with a ``"score"`` (a predictions file) is read as a
model proposal. exemplar writes each object's status, source, annotator and model version in an
``"exemplar"`` key of its annotation, so an export read back keeps them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from exemplar.errors import FormatError
from exemplar.formats.base import (
    SOURCES,
    STATUSES,
    AnnotatedImage,
    ObjectRecord,
    Problems,
    ReadResult,
    Skip,
    atomic_write_text,
    check_box,
    check_label,
    check_polygons,
    class_index,
    copy_image,
    finite,
    image_size,
    load_json,
    polygons_box,
    positive_size,
    require_label,
    unique_names,
)

__all__ = ["read_coco", "write_coco"]

_ANN_KEYS = {"id", "image_id", "category_id", "bbox", "segmentation", "area", "score", "exemplar"}
_IMAGE_KEYS = {"id", "file_name", "width", "height"}


def read_coco(path: Path, classes: Sequence[str] | None = None) -> ReadResult:
    """Read a COCO annotation (or predictions) JSON file.

    Image files are looked up relative to the JSON file, then in an ``images/`` folder beside
    it. An image that is missing, or an annotation that fails a check, is reported and skipped.
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not ("images" in data or "annotations" in data):
        raise FormatError(f"{path}: not a COCO file (no 'images' or 'annotations' key)")
    sections = {}
    for key in ("images", "annotations", "categories"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise FormatError(f"{path}: '{key}' must be a list of objects")
        sections[key] = value
    problems = Problems()
    categories = _categories(sections["categories"], path, problems)
    names = list(dict.fromkeys(categories.values()))
    wanted = list(classes) if classes is not None else names

    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in sections["annotations"]:
        by_image.setdefault(_hashable(ann.get("image_id")), []).append(ann)

    images: list[AnnotatedImage] = []
    for entry in sections["images"]:
        image_id = _hashable(entry.get("id"))
        anns = by_image.pop(image_id, [])
        try:
            image = _image(entry, path)
        except Skip as exc:
            tail = f"; its {len(anns)} annotations are skipped" if anns else ""
            problems.add(path, f"image id {image_id}", f"{exc}{tail}")
            continue
        objects: list[ObjectRecord] = []
        for ann in anns:
            try:
                objects.append(_object(ann, image.width, image.height, categories, classes))
            except Skip as exc:
                problems.add(path, f"annotation id {ann.get('id')}", str(exc))
        images.append(AnnotatedImage(image.path, image.width, image.height, objects, image.extra))
    for image_id, anns in by_image.items():
        for ann in anns:
            problems.add(path, f"annotation id {ann.get('id')}", f"unknown image id {image_id}")
    return ReadResult(images, wanted, problems.items)


def write_coco(
    images: Sequence[AnnotatedImage],
    classes: Sequence[str],
    dest: Path,
    *,
    copy_images: bool = False,
) -> Path:
    """Write ``dest/annotations.json`` (and ``dest/images/`` when ``copy_images``).

    Without copying, ``file_name`` is relative to ``dest`` when the image lies under it and
    absolute otherwise. Category ids are the class positions plus one.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    index = class_index(classes)
    names = unique_names([im.path for im in images])
    image_ids = _ids([im.extra.get("coco", {}).get("id") for im in images])
    ann_ids = _ids([o.extra.get("coco", {}).get("id") for im in images for o in im.objects])
    out_images: list[dict[str, Any]] = []
    out_anns: list[dict[str, Any]] = []
    for im, name, image_id in zip(images, names, image_ids, strict=True):
        if copy_images:
            copy_image(im.path, dest / "images" / name)
            file_name = name
        else:
            file_name = _file_name(im.path, dest)
        kept = {k: v for k, v in im.extra.get("coco", {}).items() if k not in _IMAGE_KEYS}
        out_images.append(
            {"id": image_id, "file_name": file_name, "width": im.width, "height": im.height} | kept
        )
        for obj in im.objects:
            ann = _annotation(obj, im, index)
            out_anns.append({"id": ann_ids[len(out_anns)], "image_id": image_id} | ann)
    categories = [{"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(classes)]
    doc = {"images": out_images, "annotations": out_anns, "categories": categories}
    out = dest / "annotations.json"
    atomic_write_text(out, json.dumps(doc, separators=(",", ":")))
    return out


def _categories(entries: list[dict[str, Any]], path: Path, problems: Problems) -> dict[Any, str]:
    categories: dict[Any, str] = {}
    for cat in entries:
        cid, name = _hashable(cat.get("id")), cat.get("name")
        if cid is None or not isinstance(name, str) or not name:
            problems.add(path, f"category {cat!r}", "needs an 'id' and a non-empty 'name'")
            continue
        categories[cid] = name
    return dict(sorted(categories.items(), key=lambda kv: str(kv[0]).zfill(12)))


def _image(entry: dict[str, Any], path: Path) -> AnnotatedImage:
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise Skip("no 'file_name'")
    file = _resolve(file_name, path.parent)
    if entry.get("width") is not None and entry.get("height") is not None:
        width, height = positive_size(entry["width"], entry["height"])
    else:
        width, height = image_size(file)
    kept = {k: v for k, v in entry.items() if k not in {"file_name", "width", "height"}}
    return AnnotatedImage(file, width, height, [], {"coco": kept})


def _resolve(file_name: str, base: Path) -> Path:
    name = Path(file_name)
    candidates = (
        [name]
        if name.is_absolute()
        else [base / name, base / "images" / name, base / "images" / name.name]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise Skip(f"image file not found: {file_name}")


def _object(
    ann: dict[str, Any],
    width: int,
    height: int,
    categories: dict[Any, str],
    classes: Sequence[str] | None,
) -> ObjectRecord:
    cid = _hashable(ann.get("category_id"))
    if cid not in categories:
        raise Skip(f"unknown category id {cid!r}")
    label = check_label(categories[cid], classes)
    seg = ann.get("segmentation")
    polygons = rle = None
    if isinstance(seg, list) and seg:
        polygons = check_polygons(seg, width, height)
    elif isinstance(seg, dict):
        rle = _rle(seg, width, height)
    elif seg not in (None, []):
        raise Skip("segmentation must be a list of polygons or an RLE object")
    bbox = ann.get("bbox")
    if bbox is not None:
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise Skip("bbox must be [x, y, width, height]")
        x, y, w, h = finite(bbox, "bbox")
        box = check_box([x, y, x + w, y + h], width, height)
    elif polygons is not None:
        box = check_box(polygons_box(polygons), width, height)
    elif rle is not None:
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        box = check_box([x, y, x + w, y + h], width, height)
    else:
        raise Skip("has neither a bbox nor a segmentation")
    score = None if ann.get("score") is None else finite([ann["score"]], "score")[0]
    raw_meta = ann.get("exemplar")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    status = meta.get("status")
    source = meta.get("source")
    kept = {k: v for k, v in ann.items() if k not in _ANN_KEYS - {"id"}}
    return ObjectRecord(
        label=label,
        box=box,
        polygons=polygons,
        rle=rle,
        score=score,
        status=status if status in STATUSES else ("proposed" if score is not None else "verified"),
        source=source if source in SOURCES else ("model" if score is not None else "import"),
        annotator=_str_or_none(meta.get("annotator")),
        model_version=_str_or_none(meta.get("model_version")),
        extra={"coco": kept},
    )


def _rle(seg: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """A compressed RLE with string counts, from compressed or uncompressed COCO RLE."""
    size, counts = seg.get("size"), seg.get("counts")
    if not isinstance(size, list) or [*size] != [height, width]:
        raise Skip(f"RLE size {size!r} does not match the image ({height}, {width})")
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise Skip("uncompressed RLE counts must be non-negative integers")
        if sum(counts) != width * height:
            raise Skip(f"uncompressed RLE counts sum to {sum(counts)}, not {width * height}")
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    elif isinstance(counts, str | bytes):
        text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts
        total = _rle_string_total(text)
        if total != width * height:
            got = "cannot be parsed" if total is None else f"cover {total} pixels"
            raise Skip(f"invalid RLE counts: they {got}, not {width * height}")
        rle = {"size": [height, width], "counts": text}
    else:
        raise Skip("RLE counts must be a string or a list of integers")
    c = rle["counts"]
    return {"size": [height, width], "counts": c.decode("ascii") if isinstance(c, bytes) else c}


def _rle_string_total(counts: str) -> int | None:
    """Pixels covered by the runs of a compressed COCO RLE string, or None if malformed.

    Only a check before :mod:`pycocotools.mask` takes the string: its decoder does not notice
    runs that stop short of ``h * w`` (it leaves the rest of the mask unset). The string
    holds 5-bit groups offset by 48, continued while bit 0x20 is set, sign in bit 0x10 of
    the last group; from the third run on, each value is a delta from the run two before
    (``rleFrString`` in pycocotools' ``maskApi.c``).
    """
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            if p >= len(counts) or not 48 <= ord(counts[p]) < 112:
                return None
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x -= 1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return sum(runs)


def _annotation(obj: ObjectRecord, im: AnnotatedImage, index: dict[str, int]) -> dict[str, Any]:
    x0, y0, x1, y1 = obj.box
    ann: dict[str, Any] = {
        "category_id": require_label(obj.label, index, im.path) + 1,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": (x1 - x0) * (y1 - y0),
        "iscrowd": 0,
        "segmentation": [],
    }
    if obj.polygons:
        ann["segmentation"] = [list(p) for p in obj.polygons]
        rles = mask_utils.frPyObjects(ann["segmentation"], im.height, im.width)
        ann["area"] = float(mask_utils.area(mask_utils.merge(rles)))
    elif obj.rle is not None:
        counts = obj.rle["counts"]
        text = counts.decode("ascii") if isinstance(counts, bytes) else counts
        ann["segmentation"] = {"size": list(obj.rle["size"]), "counts": text}
        ann["area"] = float(mask_utils.area({"size": list(obj.rle["size"]), "counts": text}))
    ann |= {k: v for k, v in obj.extra.get("coco", {}).items() if k not in _ANN_KEYS}
    if obj.score is not None:
        ann["score"] = float(obj.score)
    meta = {
        "status": obj.status,
        "source": obj.source,
        "annotator": obj.annotator,
        "model_version": obj.model_version,
    }
    ann["exemplar"] = {k: v for k, v in meta.items() if v is not None}
    return ann


def _ids(given: list[Any]) -> list[int]:
    """The given ids when all are distinct integers, else 1..n."""
    ints = all(isinstance(i, int) and not isinstance(i, bool) for i in given)
    if given and ints and len(set(given)) == len(given):
        return list(given)
    return list(range(1, len(given) + 1))


def _file_name(image: Path, dest: Path) -> str:
    image, dest = image.resolve(), dest.resolve()
    if image.is_relative_to(dest):
        return image.relative_to(dest).as_posix()
    return os.fspath(image)


def _hashable(value: Any) -> Any:
    return value if isinstance(value, int | str | float | type(None)) else repr(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
