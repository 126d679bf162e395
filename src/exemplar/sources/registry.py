"""The registry of input formats: which source reads a path (detection in one place).

Each :class:`Format` names the file suffixes it reads, whether (and which) folders it
reads, and the function that opens a :class:`~exemplar.sources.base.Source`. A new format
(COCO, YOLO, VOC, Label Studio, ...) is one new module plus one :func:`register` call;
folder formats are tried in order, and the plain image folder, which accepts any folder,
comes last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exemplar.errors import DatasetError
from exemplar.sources.arrays import ARRAY_SUFFIXES, ArraySource
from exemplar.sources.base import Log, Source, SourceOptions
from exemplar.sources.csv_table import CsvSource
from exemplar.sources.images import IMAGE_SUFFIXES, ImageSource
from exemplar.sources.parquet_table import ParquetSource

__all__ = ["FORMATS", "Format", "find_format", "open_source", "register"]

Opener = Callable[[Path, SourceOptions, Log], Source]


@dataclass(frozen=True)
class Format:
    """One input format.

    Attributes
    ----------
    name : str
        Short name (``images``, ``csv``, ...).
    accepted : str
        How the format is described in the list of accepted inputs.
    suffixes : frozenset of str
        File suffixes it reads (lower case, with the dot).
    folder : callable, optional
        Whether it reads a given folder (None: no folders).
    open : callable
        ``open(path, options, log)`` returns the opened :class:`Source`.
    """

    name: str
    accepted: str
    suffixes: frozenset[str]
    folder: Callable[[Path], bool] | None
    open: Opener


def _any_folder(path: Path) -> bool:
    return True


FORMATS: list[Format] = [
    Format("csv", ".csv", frozenset({".csv"}), None, CsvSource),
    Format("parquet", ".parquet", frozenset({".parquet"}), None, ParquetSource),
    Format("arrays", ", ".join(ARRAY_SUFFIXES), frozenset(ARRAY_SUFFIXES), None, ArraySource),
    Format("images", "a folder or file of images", IMAGE_SUFFIXES, _any_folder, ImageSource),
]


def register(fmt: Format) -> None:
    """Add a format, tried before the plain image folder (which accepts any folder)."""
    if any(f.name == fmt.name for f in FORMATS):
        raise ValueError(f"an input format named {fmt.name!r} is already registered")
    FORMATS.insert(len(FORMATS) - 1, fmt)


def find_format(path: Path) -> Format:
    """The format that reads ``path`` (an existing file or folder)."""
    if path.is_dir():
        for fmt in FORMATS:
            if fmt.folder is not None and fmt.folder(path):
                return fmt
    else:
        suffix = path.suffix.lower()
        for fmt in FORMATS:
            if suffix in fmt.suffixes:
                return fmt
    accepted = ", ".join(fmt.accepted for fmt in FORMATS)
    suffix = path.suffix.lower()
    raise DatasetError(
        f"cannot import '{path}': unsupported file type {suffix or '(no suffix)'!r}; "
        f"accepted: {accepted}"
    )


def open_source(path: Path, options: SourceOptions, log: Log) -> Source:
    """Open ``path`` with the format that reads it."""
    if not path.exists():
        raise DatasetError(f"nothing to import: '{path}' does not exist")
    return find_format(path).open(path, options, log)
