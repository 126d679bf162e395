"""Annotation file formats: COCO, YOLO, Pascal VOC and Label Studio, read and written.

:func:`read_annotations` turns a file or folder into neutral :class:`AnnotatedImage` records
(a bad object is reported as a :class:`FormatProblem` and skipped; a file that cannot be
parsed at all raises :class:`~exemplar.errors.FormatError`). :func:`write_annotations`
writes records back out in any of :data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from exemplar.errors import FormatError
from exemplar.formats.base import AnnotatedImage, FormatProblem, ObjectRecord, ReadResult
from exemplar.formats.coco import read_coco, write_coco
from exemplar.formats.labelstudio import read_labelstudio, write_labelstudio
from exemplar.formats.voc import read_voc, write_voc
from exemplar.formats.yolo import read_yolo, write_yolo

__all__ = [
    "FORMATS",
    "AnnotatedImage",
    "FormatProblem",
    "ObjectRecord",
    "ReadResult",
    "detect_format",
    "read_annotations",
    "write_annotations",
]

#: The formats :func:`read_annotations` and :func:`write_annotations` know.
FORMATS = ("coco", "yolo", "voc", "labelstudio")

Reader = Callable[[Path, Sequence[str] | None], ReadResult]
_READERS: dict[str, Reader] = {
    "coco": read_coco,
    "yolo": read_yolo,
    "voc": read_voc,
    "labelstudio": read_labelstudio,
}
_WRITERS = {
    "coco": write_coco,
    "yolo": write_yolo,
    "voc": write_voc,
    "labelstudio": write_labelstudio,
}


def read_annotations(
    path: Path | str, fmt: str | None = None, *, classes: Sequence[str] | None = None
) -> ReadResult:
    """Read annotations from ``path`` in format ``fmt`` (detected when None).

    Parameters
    ----------
    path : path
        A COCO or Label Studio JSON file, a YOLO folder (or its ``data.yaml``), a VOC folder
        or XML file.
    fmt : {"coco", "yolo", "voc", "labelstudio"}, optional
        The format; :func:`detect_format` decides when omitted.
    classes : sequence of str, optional
        The project's classes: objects of other classes are reported and skipped, and the
        result's ``classes`` is this list.
    """
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file or folder")
    fmt = detect_format(path) if fmt is None else _check(fmt)
    if path.is_dir() and fmt in ("coco", "labelstudio"):
        path = path / ("annotations.json" if fmt == "coco" else "tasks.json")
    return _READERS[fmt](path, None if classes is None else list(classes))


def write_annotations(
    images: Sequence[AnnotatedImage],
    classes: Sequence[str],
    dest: Path | str,
    fmt: str,
    *,
    copy_images: bool = False,
) -> Path:
    """Write ``images`` into the folder ``dest`` in format ``fmt``; returns what to read back.

    COCO writes ``dest/annotations.json``, YOLO ``dest/labels/`` with ``data.yaml``, VOC
    ``dest/Annotations/``, Label Studio ``dest/tasks.json``. With ``copy_images`` the image
    files are copied beside them; otherwise they are referenced where they are (YOLO lists
    them in ``dest/images.txt``). Every label must be in ``classes`` (checked before anything
    is written). Single files are written atomically.
    """
    fmt = _check(fmt)
    known = set(classes)
    for im in images:
        for obj in im.objects:
            if obj.label not in known:
                raise FormatError(f"{im.path}: class {obj.label!r} is not in the given classes")
    return _WRITERS[fmt](images, list(classes), Path(dest), copy_images=copy_images)


def detect_format(path: Path | str) -> str:
    """The format of ``path``, from its name, its first JSON character, or its folder layout."""
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return _json_kind(path)
        if suffix == ".xml":
            return "voc"
        if suffix in (".yaml", ".yml"):
            return "yolo"
        raise FormatError(f"{path}: cannot tell the annotation format from this file")
    if path.is_dir():
        if any((path / n).is_file() for n in ("data.yaml", "dataset.yaml", "data.yml")):
            return "yolo"
        if (path / "labels").is_dir() and any((path / "labels").rglob("*.txt")):
            return "yolo"
        if (path / "Annotations").is_dir() or any(path.glob("*.xml")):
            return "voc"
        for name in ("annotations.json", "tasks.json"):
            if (path / name).is_file():
                return _json_kind(path / name)
        raise FormatError(
            f"{path}: cannot tell the annotation format (no data.yaml, labels/, Annotations/, "
            "*.xml, annotations.json or tasks.json)"
        )
    raise FormatError(f"{path}: no such file or folder")


def _json_kind(path: Path) -> str:
    """``coco`` for a JSON object, ``labelstudio`` for a list, from the first character."""
    try:
        with path.open("rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc}") from None
    if head.startswith(b"["):
        return "labelstudio"
    if head.startswith(b"{"):
        return "labelstudio" if b'"data"' in head and b'"images"' not in head else "coco"
    raise FormatError(f"{path}: not a JSON object or list; cannot tell the format")


def _check(fmt: str) -> str:
    if fmt not in FORMATS:
        raise FormatError(f"unknown annotation format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt
