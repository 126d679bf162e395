"""What every source shares: records, chunks, problems, content hashes and the Source type.

A **source** is one input format (a folder of images, a CSV table, an ``.npz`` file, ...)
opened and checked. It yields :class:`Chunk` objects: batches of :class:`Record` (one per
item to import, with its content hash, URI and label) and, except for images, their feature
rows. Sources never touch the database; :mod:`exemplar.sources.writer` stores the chunks.

A source reports what it could not read to a :class:`Log` as a :class:`Problem` (where it
was, and why) and keeps going; what makes the whole input unreadable raises
:class:`~exemplar.errors.DatasetError` before anything is yielded.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from exemplar.formats import ObjectRecord
from exemplar.sources.features import TextFeaturizer
from exemplar.store.media import MediaRecord

__all__ = [
    "PROBLEM_KINDS",
    "Chunk",
    "Log",
    "Problem",
    "Record",
    "Source",
    "SourceOptions",
    "feature_records",
    "feature_uid",
    "label_text",
    "text_records",
    "text_uid",
]


#: Sorts of problems, and how a summary counts them ("3 rows with bad values").
PROBLEM_KINDS = {
    "bad value": "row(s) with bad values",
    "malformed row": "malformed row(s)",
    "unreadable file": "unreadable file(s)",
    "unknown class": "with a class the project lacks",
    "not an image": "non-image file(s) ignored",
    "link outside": "symbolic link(s) to outside the imported folder",
    "linked folder": "symbolic link(s) to folders, not followed",
    "too large": "image(s) above [data] max_image_pixels",
}


@dataclass(frozen=True)
class Problem:
    """One row or file that was not imported.

    Attributes
    ----------
    where : str
        ``"a.csv:17"`` (line 17 of a text file), ``"a.npz#row5"`` (0-based row of an
        array or Parquet file), or a file path.
    why : str
        What is wrong, in words.
    kind : str
        Which sort of problem (one of :data:`PROBLEM_KINDS`), for the summary.
    line : int, optional
        The 1-based line of a text file (``where`` names it too).
    column : str, optional
        The column the problem is in, when it is one cell.
    """

    where: str
    why: str
    kind: str = "bad value"
    line: int | None = None
    column: str | None = None

    @property
    def reason(self) -> str:
        """``why``, prefixed with the column when there is one."""
        return self.why if self.column is None else f"column {self.column!r}: {self.why}"


class Log(Protocol):
    """Where a source reports the rows and files it skips, and facts about the input."""

    def skip(self, problem: Problem) -> None:
        """Record a row or file that was not imported."""

    def note(self, text: str) -> None:
        """Record a fact about how the input was read (ignored columns, ...)."""


@dataclass
class Record:
    """One item to import, before it has a row.

    ``uid`` is the content hash; ``path`` is set for images (decoded only if the uid is not
    stored yet) and ``file_id`` identifies the real file (device, inode, size, mtime).
    """

    uid: str
    uri: str
    where: str
    kind: str
    label: str | None
    text: str | None = None
    path: Path | None = None
    file_id: str | None = None
    #: Detection and segmentation: the image's objects as its annotation file states them
    #: (None: the image is not annotated), and its size in pixels.
    objects: list[ObjectRecord] | None = None
    width: int | None = None
    height: int | None = None
    #: A slide's region or a video's frame: the file it was cut from, where the region
    #: lies (level-0 pixels of its top-left corner, level-0 pixels per item pixel) or
    #: which frame it is.
    media: MediaRecord | None = None
    origin: tuple[int, int] | None = None
    scale: float | None = None
    frame: int | None = None


Featurize = Callable[[list[Record], ThreadPoolExecutor], tuple[list[int], np.ndarray]]


@dataclass
class Chunk:
    """A batch of records and their feature rows (None: images, decoded by the writer)."""

    records: list[Record]
    X: np.ndarray | None
    progress: int  # inputs (rows, lines or files) seen so far, skipped ones included
    #: With ``X`` None: computes the rows of the records still new (images are decoded
    #: only when their content hash is not stored yet); returns the indices it could
    #: featurize and their rows, and reports the others to the source's log.
    featurize: Featurize | None = None


@dataclass(frozen=True)
class SourceOptions:
    """How to read an input (the options of ``exemplar import``).

    Attributes
    ----------
    label_column : str or int, optional
        Tables and arrays: the label column (name or index) or label array.
    text_column : str, optional
        Tables: the column whose texts are the items.
    folder_labels : bool
        Image folders: first-level subfolder names are labels.
    image_size : int
        Images become ``image_size`` squared grayscale features.
    max_image_pixels : int
        Images with more pixels are skipped and reported (``[data] max_image_pixels``).
    text_featurizer : callable, optional
        Builds the featurizer of text items (called only when an input holds text).
    region_size : int
        Slides: the side of a region in pixels at the chosen magnification (one item each).
    magnification : float, optional
        Slides: the objective power regions are cut at (None: the slide's full resolution).
    region_overlap : int
        Slides: pixels (at the chosen magnification) neighbouring regions share.
    min_tissue : float
        Slides: regions with a smaller share of tissue (not background) are not imported.
    frame_step : int
        Videos: import every ``frame_step``-th frame.
    media_dir : Path, optional
        The project's folder for files an import writes (a video's frames).
    """

    label_column: str | int | None = None
    text_column: str | None = None
    folder_labels: bool = True
    image_size: int = 16
    max_image_pixels: int = 200_000_000
    text_featurizer: Callable[[], TextFeaturizer] | None = None
    region_size: int = 512
    magnification: float | None = None
    region_overlap: int = 0
    min_tissue: float = 0.05
    frame_step: int = 1
    media_dir: Path | None = None

    def featurizer(self) -> TextFeaturizer:
        """The text featurizer (the hashing one of 512 columns when none was given)."""
        if self.text_featurizer is not None:
            return self.text_featurizer()
        from exemplar.sources.features import hashing_featurizer

        return hashing_featurizer(512)


class Source(ABC):
    """An input opened and checked (``dim`` known), yielding batches of records."""

    what: str  # what the input is, for the dimension-mismatch message
    dim: int
    total: int | None = None  # inputs, when known before reading them all

    @abstractmethod
    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        """Batches of at most ``size`` records, in input order."""


@dataclass
class ProblemList:
    """A :class:`Log` that keeps what it is told (for callers that only read)."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, problem: Problem) -> None:
        self.problems.append(problem)

    def note(self, text: str) -> None:
        self.notes.append(text)


# --------------------------------------------------------------------------- content hashes


def feature_uid(row: np.ndarray) -> str:
    """The content hash of one feature row (its values as little-endian float32)."""
    data = np.ascontiguousarray(row, dtype="<f4").tobytes()
    return hashlib.sha256(b"features\0" + data).hexdigest()


def text_uid(text: str) -> str:
    """The content hash of a text item."""
    return hashlib.sha256(b"text\0" + text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- records


def label_text(value: Any) -> str | None:
    """A label cell as a class name: None/NaN/empty means unlabeled; 3.0 reads as "3"."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, (np.integer, np.bool_)):
        value = value.item()
    text = str(value).strip()
    return text or None


def _nonfinite(row: np.ndarray, names: Sequence[str] | None) -> tuple[str | None, str]:
    bad = int(np.flatnonzero(~np.isfinite(row))[0])
    what = f"NaN, infinite or too large for float32 ({row[bad]})"
    if names:
        return names[bad], what
    return None, f"feature {bad} is {what}"


def feature_records(
    X: np.ndarray,
    wheres: Sequence[str],
    uris: Sequence[str],
    labels: Sequence[str | None],
    names: Sequence[str] | None,
    log: Log,
    lines: Sequence[int] | None = None,
) -> tuple[list[Record], np.ndarray]:
    """Records for numeric rows (float32); rows with NaN or infinite values are skipped."""
    with np.errstate(over="ignore"):  # too large for float32 -> inf -> reported below
        X = np.ascontiguousarray(X, dtype=np.float32)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            column, why = _nonfinite(X[i], names)
            line = None if lines is None else lines[i]
            log.skip(Problem(wheres[i], why, line=line, column=column))
        idx = np.flatnonzero(finite).tolist()
        X = X[idx]
        wheres = [wheres[i] for i in idx]
        uris = [uris[i] for i in idx]
        labels = [labels[i] for i in idx]
    records = [
        Record(feature_uid(x), uri, where, "features", label)
        for x, uri, where, label in zip(X, uris, wheres, labels, strict=True)
    ]
    return records, X


def text_records(
    texts: Sequence[Any],
    wheres: Sequence[str],
    uris: Sequence[str],
    labels: Sequence[str | None],
    featurizer: TextFeaturizer,
    log: Log,
) -> tuple[list[Record], np.ndarray]:
    """Records for texts and their features; empty texts are skipped."""
    records: list[Record] = []
    for text, where, uri, label in zip(texts, wheres, uris, labels, strict=True):
        if text is None or not str(text).strip():
            log.skip(Problem(where, "empty text"))
            continue
        text = str(text)
        records.append(Record(text_uid(text), uri, where, "text", label, text=text))
    if not records:
        return records, np.empty((0, featurizer.dim), dtype=np.float32)
    return records, np.asarray(featurizer.encode([r.text or "" for r in records]), np.float32)
