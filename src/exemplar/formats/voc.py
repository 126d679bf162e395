"""Pascal VOC XML (Everingham et al., 2010, "The PASCAL Visual Object Classes Challenge").

One XML file per image, in ``Annotations/`` beside ``JPEGImages/`` or in a flat folder with
the images. VOC box corners are 1-based pixel indexes (``xmin = 1`` is the first column), so
``x0 = xmin - 1`` and ``x1 = xmax`` in exemplar's continuous coordinates (as Detectron2
reads them). ``difficult``, ``truncated``, ``occluded`` and ``pose`` are kept in
``extra["voc"]``; an optional ``<score>`` marks a model proposal.

XML is parsed with :mod:`defusedxml` when installed; otherwise with :mod:`xml.etree` after
refusing any document with a DTD, so no entity (external or expanding) is ever resolved.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
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
    collect_classes,
    copy_image,
    finite,
    image_size,
    positive_size,
    unique_names,
)

__all__ = ["read_voc", "write_voc"]

_FLAGS = ("difficult", "truncated", "occluded", "pose")


def read_voc(path: Path, classes: Sequence[str] | None = None) -> ReadResult:
    """Read one VOC XML file or a folder of them (``Annotations/`` or flat)."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif (path / "Annotations").is_dir():
        files = sorted((path / "Annotations").glob("*.xml"))
    elif path.is_dir():
        files = sorted(path.glob("*.xml"))
    else:
        raise FormatError(f"{path}: no such VOC file or folder")
    problems = Problems()
    images: list[AnnotatedImage] = []
    for file in files:
        root = _parse(file)
        try:
            image = _image(root, file)
        except Skip as exc:
            problems.add(file, None, f"{exc}; its objects are skipped")
            continue
        objects: list[ObjectRecord] = []
        for n, node in enumerate(root.findall("object"), 1):
            name = (node.findtext("name") or "").strip()
            try:
                objects.append(_object(node, image.width, image.height, classes))
            except Skip as exc:
                problems.add(file, f"object {n} ({name or 'unnamed'})", str(exc))
        images.append(AnnotatedImage(image.path, image.width, image.height, objects))
    names = list(classes) if classes is not None else collect_classes(images)
    return ReadResult(images, names, problems.items)


def write_voc(
    images: Sequence[AnnotatedImage],
    classes: Sequence[str],
    dest: Path,
    *,
    copy_images: bool = False,
) -> Path:
    """Write ``dest/Annotations/<name>.xml`` (and ``dest/JPEGImages/`` when copying).

    Without copying, each file's ``<path>`` holds the original image's absolute path.
    Returns ``dest``.
    """
    dest = Path(dest)
    (dest / "Annotations").mkdir(parents=True, exist_ok=True)
    known = set(classes)
    for im, name in zip(images, unique_names([im.path for im in images]), strict=True):
        for obj in im.objects:
            if obj.label not in known:
                raise FormatError(f"{im.path}: class {obj.label!r} is not in the given classes")
        if copy_images:
            copy_image(im.path, dest / "JPEGImages" / name)
            image_path = (dest / "JPEGImages" / name).resolve()
        else:
            image_path = im.path.resolve()
        xml = _document(im, name, image_path)
        atomic_write_text(dest / "Annotations" / f"{Path(name).stem}.xml", xml)
    return dest


def _parse(file: Path) -> ET.Element:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise FormatError(f"{file}: cannot read: {exc}") from None
    try:
        import defusedxml.ElementTree as safe_et
    except ImportError:
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            raise FormatError(f"{file}: XML with a DTD or entities is refused") from None
        parse = ET.fromstring
    else:
        parse = safe_et.fromstring
    try:
        root = parse(data)
    except ET.ParseError as exc:
        raise FormatError(f"{file}: not valid XML: {exc}") from None
    except ValueError as exc:  # defusedxml's DTD/entity refusals subclass ValueError
        raise FormatError(f"{file}: unsafe XML refused: {exc}") from None
    if root.tag != "annotation":
        raise FormatError(f"{file}: not a VOC annotation (root element <{root.tag}>)")
    return root


def _image(root: ET.Element, file: Path) -> AnnotatedImage:
    filename = (root.findtext("filename") or "").strip()
    stated = (root.findtext("path") or "").strip()
    image = _resolve(file, filename, stated)
    size = root.find("size")
    width = None if size is None else size.findtext("width")
    height = None if size is None else size.findtext("height")
    if width and height and width.strip() != "0" and height.strip() != "0":
        w, h = positive_size(_number(width), _number(height))
    else:
        w, h = image_size(image)
    return AnnotatedImage(image, w, h, [])


def _resolve(file: Path, filename: str, stated: str) -> Path:
    folder = file.parent
    candidates: list[Path] = []
    for base in (folder.parent / "JPEGImages", folder):
        if filename:
            candidates.append(base / filename)
        candidates += [base / f"{file.stem}{s}" for s in IMAGE_SUFFIXES]
    if stated:
        candidates.insert(0, Path(stated))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise Skip(f"image file not found: {filename or stated or file.stem}")


def _object(
    node: ET.Element, width: int, height: int, classes: Sequence[str] | None
) -> ObjectRecord:
    label = check_label((node.findtext("name") or "").strip(), classes)
    box_node = node.find("bndbox")
    if box_node is None:
        raise Skip("no <bndbox>")
    corners = [box_node.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    if any(c is None for c in corners):
        raise Skip("<bndbox> needs xmin, ymin, xmax, ymax")
    xmin, ymin, xmax, ymax = finite([str(c).strip() for c in corners], "bndbox")
    box = check_box([xmin - 1, ymin - 1, xmax, ymax], width, height)
    voc: dict[str, Any] = {}
    for flag in _FLAGS:
        text = node.findtext(flag)
        if text is not None:
            voc[flag] = text.strip() if flag == "pose" else _flag(text)
    score_text = node.findtext("score")
    if score_text is None:
        return ObjectRecord(label, box, extra={"voc": voc})
    (score,) = finite([score_text.strip()], "score")
    return ObjectRecord(
        label, box, score=score, status="proposed", source="model", extra={"voc": voc}
    )


def _document(im: AnnotatedImage, name: str, image_path: Path) -> str:
    root = ET.Element("annotation")
    _sub(root, "folder", image_path.parent.name)
    _sub(root, "filename", name)
    _sub(root, "path", os.fspath(image_path))
    size = ET.SubElement(root, "size")
    _sub(size, "width", str(im.width))
    _sub(size, "height", str(im.height))
    _sub(size, "depth", "3")
    _sub(root, "segmented", "0")
    for obj in im.objects:
        node = ET.SubElement(root, "object")
        _sub(node, "name", obj.label)
        voc = obj.extra.get("voc", {})
        _sub(node, "pose", str(voc.get("pose", "Unspecified")))
        _sub(node, "truncated", str(int(voc.get("truncated", 0))))
        _sub(node, "difficult", str(int(voc.get("difficult", 0))))
        if "occluded" in voc:
            _sub(node, "occluded", str(int(voc["occluded"])))
        if obj.score is not None:
            _sub(node, "score", _num(obj.score))
        box = ET.SubElement(node, "bndbox")
        x0, y0, x1, y1 = obj.box
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0 + 1, y0 + 1, x1, y1)):
            _sub(box, key, _num(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _sub(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def _num(value: float) -> str:
    """An integer when integral, else up to 4 decimals."""
    rounded = round(float(value), 4)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.4f}".rstrip("0")


def _number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise Skip(f"size is not a number: {text!r}") from None


def _flag(text: str) -> int:
    try:
        return int(float(text.strip()))
    except ValueError:
        return 0
