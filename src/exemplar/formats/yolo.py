"""YOLO text labels (Redmon et al., 2016, "You Only Look Once"; the Ultralytics layout): read and write.

A dataset is a folder with ``images/`` and ``labels/`` (one ``.txt`` per image, same relative
path), class names in ``data.yaml`` (``names`` as a list or an index map) or ``classes.txt``.
Each label line is ``class cx cy w h`` (normalized to [0, 1]), optionally followed by a
confidence (predictions), or ``class x1 y1 x2 y2 ...`` for a segmentation polygon (no
confidence column: an even number of values after the class is read as a malformed polygon).

Written without copying images, the dataset lists the original image paths in
``images.txt`` (``train: images.txt`` in ``data.yaml``), and image ``i``'s labels are
``labels/<name>.txt`` with the name :func:`~exemplar.formats.base.unique_names` gives it.
YOLO carries no review status: lines with a confidence are read as model proposals, the
others as verified imports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    class_index,
    copy_image,
    finite,
    image_size,
    polygon_area,
    polygons_box,
    require_label,
    unique_names,
)
from exemplar.formats.yamlish import YamlError, dump_simple, load_yaml

__all__ = ["read_yolo", "write_yolo"]

_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")
_SPLITS = ("train", "val", "test")


def read_yolo(path: Path, classes: Sequence[str] | None = None) -> ReadResult:
    """Read a YOLO dataset folder (or its ``data.yaml``).

    Class names come from ``data.yaml``, then ``classes.txt``, then ``classes``. Images
    without a label file have no objects; a label file without an image is reported.
    """
    path = Path(path)
    root = path.parent if path.is_file() else path
    if not root.is_dir():
        raise FormatError(f"{path}: no such YOLO dataset folder")
    yaml_file = path if path.is_file() else _first_existing(root, _YAML_NAMES)
    config = _config(yaml_file) if yaml_file else {}
    names = _names(config, root, classes, yaml_file)
    wanted = list(classes) if classes is not None else names
    problems = Problems()
    pairs = _pairs(root, config, yaml_file, problems)
    images: list[AnnotatedImage] = []
    used: set[Path] = set()
    for image, label in pairs:
        try:
            width, height = image_size(image)
        except Skip as exc:
            problems.add(label if label.is_file() else image, None, str(exc))
            used.add(label.resolve())
            continue
        objects: list[ObjectRecord] = []
        if label.is_file():
            used.add(label.resolve())
            objects = _read_label(label, width, height, names, classes, problems)
        images.append(AnnotatedImage(image.resolve(), width, height, objects))
    labels_dir = root / "labels"
    if labels_dir.is_dir():
        for orphan in sorted(labels_dir.rglob("*.txt")):
            if orphan.resolve() not in used:
                problems.add(orphan, None, "no image for this label file; skipped")
    return ReadResult(images, wanted, problems.items)


def write_yolo(
    images: Sequence[AnnotatedImage],
    classes: Sequence[str],
    dest: Path,
    *,
    copy_images: bool = False,
) -> Path:
    """Write ``dest/labels/``, ``dest/data.yaml`` and ``dest/images/`` or ``dest/images.txt``.

    An object with polygons is written as its largest polygon (YOLO has one per line); a
    box with a score gets the confidence column. Returns ``dest``.
    """
    dest = Path(dest)
    (dest / "labels").mkdir(parents=True, exist_ok=True)
    index = class_index(classes)
    names = unique_names([im.path for im in images])
    for im, name in zip(images, names, strict=True):
        if copy_images:
            copy_image(im.path, dest / "images" / name)
        lines = [_line(obj, im, index) for obj in im.objects]
        atomic_write_text(dest / "labels" / f"{Path(name).stem}.txt", "".join(lines))
    source = "images"
    if not copy_images:
        source = "images.txt"
        listing = "".join(f"{os.fspath(im.path.resolve())}\n" for im in images)
        atomic_write_text(dest / "images.txt", listing)
    config = {
        "path": os.fspath(dest.resolve()),
        "train": source,
        "val": source,
        "nc": len(classes),
        "names": dict(enumerate(classes)),
    }
    atomic_write_text(dest / "data.yaml", dump_simple(config))
    return dest


def _first_existing(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def _config(yaml_file: Path) -> dict[str, Any]:
    try:
        data = load_yaml(yaml_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YamlError) as exc:
        raise FormatError(f"{yaml_file}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise FormatError(f"{yaml_file}: expected a mapping of keys (names, train, ...)")
    return data


def _names(
    config: dict[str, Any], root: Path, classes: Sequence[str] | None, yaml_file: Path | None
) -> list[str]:
    names = config.get("names")
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            ordered = sorted((int(k), str(v)) for k, v in names.items())
        except (TypeError, ValueError):
            raise FormatError(f"{yaml_file}: 'names' keys must be class indexes") from None
        if [k for k, _ in ordered] != list(range(len(ordered))):
            raise FormatError(f"{yaml_file}: 'names' indexes must be 0..n-1")
        return [v for _, v in ordered]
    if names is not None:
        raise FormatError(f"{yaml_file}: 'names' must be a list or an index map")
    classes_txt = root / "classes.txt"
    if classes_txt.is_file():
        return [ln.strip() for ln in classes_txt.read_text(encoding="utf-8").splitlines() if ln]
    if classes is not None:
        return list(classes)
    raise FormatError(f"{root}: no class names (data.yaml 'names' or classes.txt)")


def _pairs(
    root: Path, config: dict[str, Any], yaml_file: Path | None, problems: Problems
) -> list[tuple[Path, Path]]:
    """(image, label file) pairs, each image once."""
    pairs: list[tuple[Path, Path]] = []
    if yaml_file is not None and any(config.get(s) for s in _SPLITS):
        base = Path(str(config.get("path") or "."))
        base = base if base.is_absolute() else yaml_file.parent / base
        base = base if base.is_dir() else yaml_file.parent
        for split in _SPLITS:
            value = config.get(split)
            for entry in value if isinstance(value, list) else [value] if value else []:
                source = base / str(entry)
                if not source.exists() and str(entry).startswith("../"):
                    source = base / str(entry)[3:]  # Roboflow's "../train/images" from the root
                pairs += _source(source, root, problems)
    elif (root / "images").is_dir():
        pairs = _source(root / "images", root, problems)
    elif (root / "images.txt").is_file():
        pairs = _source(root / "images.txt", root, problems)
    else:
        pairs = [(p, p.with_suffix(".txt")) for p in _image_files(root, recursive=False)]
    seen: set[Path] = set()
    unique = []
    for image, label in pairs:
        if image.resolve() not in seen:
            seen.add(image.resolve())
            unique.append((image, label))
    return unique


def _source(source: Path, root: Path, problems: Problems) -> list[tuple[Path, Path]]:
    if source.is_dir():
        return [(p, _label_for(p, None)) for p in _image_files(source, recursive=True)]
    if source.is_file() and source.suffix == ".txt":
        text = source.read_text(encoding="utf-8")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        images = [Path(ln) if Path(ln).is_absolute() else source.parent / ln for ln in lines]
        names = unique_names(images)
        own = root / "labels"
        return [
            (p, _label_for(p, own / f"{Path(n).stem}.txt"))
            for p, n in zip(images, names, strict=True)
        ]
    problems.add(source, None, "image folder or list not found; skipped")
    return []


def _image_files(folder: Path, *, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _label_for(image: Path, preferred: Path | None) -> Path:
    """The label file of ``image``: ``preferred`` if it exists, the Ultralytics rule, or beside."""
    if preferred is not None and preferred.is_file():
        return preferred
    parts = image.parts
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        candidate = Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")
        if candidate.is_file() or preferred is None:
            return candidate
    beside = image.with_suffix(".txt")
    return beside if beside.is_file() or preferred is None else preferred


def _read_label(
    label: Path,
    width: int,
    height: int,
    names: list[str],
    classes: Sequence[str] | None,
    problems: Problems,
) -> list[ObjectRecord]:
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{label}: cannot read: {exc}") from None
    objects: list[ObjectRecord] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            objects.append(_parse_line(line.split(), width, height, names, classes))
        except Skip as exc:
            problems.add(label, f"line {n}", str(exc))
    return objects


def _parse_line(
    tokens: list[str], width: int, height: int, names: list[str], classes: Sequence[str] | None
) -> ObjectRecord:
    if len(tokens) < 5:
        raise Skip(f"expected 'class cx cy w h', got {len(tokens)} values")
    (cls,) = finite(tokens[:1], "class")
    if cls != int(cls) or not 0 <= cls < len(names):
        raise Skip(f"class index {tokens[0]} out of range ({len(names)} classes)")
    label = check_label(names[int(cls)], classes)
    values = finite(tokens[1:], "coordinates")
    if len(values) in (4, 5):
        cx, cy, w, h = values[:4]
        x0, y0 = (cx - w / 2) * width, (cy - h / 2) * height
        box = check_box([x0, y0, x0 + w * width, y0 + h * height], width, height)
        score = values[4] if len(values) == 5 else None
        return _record(label, box, None, score)
    pixels = [v * (width if i % 2 == 0 else height) for i, v in enumerate(values)]
    polygons = check_polygons([pixels], width, height)
    return _record(label, check_box(polygons_box(polygons), width, height), polygons, None)


def _record(
    label: str,
    box: tuple[float, float, float, float],
    polygons: list[list[float]] | None,
    score: float | None,
) -> ObjectRecord:
    if score is None:
        return ObjectRecord(label, box, polygons)
    return ObjectRecord(label, box, polygons, score=score, status="proposed", source="model")


def _line(obj: ObjectRecord, im: AnnotatedImage, index: dict[str, int]) -> str:
    cls = require_label(obj.label, index, im.path)
    w, h = im.width, im.height
    if obj.polygons:
        poly = max(obj.polygons, key=polygon_area)
        coords = " ".join(f"{v / (w if i % 2 == 0 else h):.6f}" for i, v in enumerate(poly))
        return f"{cls} {coords}\n"
    x0, y0, x1, y1 = obj.box
    values = [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
    if obj.score is not None:
        values.append(obj.score)
    return f"{cls} " + " ".join(f"{v:.6f}" for v in values) + "\n"
