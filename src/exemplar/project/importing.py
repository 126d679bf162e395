"""``exemplar import``: image folders, CSV/Parquet tables and ``.npy``/``.npz`` arrays as items.

Every input row or file becomes an :class:`~exemplar.store.schema.Item` with a feature row in
the project's feature array (``features.f32``). What the importer guarantees:

* **Content hashes.** ``Item.uid`` is the SHA-256 (hex) of the item's content, so importing
  the same data twice adds nothing (the second time, every item counts as a duplicate):

  - image: the file's bytes (the value ``sha256sum`` prints);
  - text: ``b"text\\0"`` followed by the UTF-8 text, exactly as read (no stripping);
  - feature row: ``b"features\\0"`` followed by the row as little-endian float32 bytes, i.e.
    the values after conversion to float32 (two rows equal in float32 are the same item).

  A duplicate is left as it is: its label in the input is not applied (relabeling is the
  oracle's job, not the importer's).

* **Bad input is reported, never fatal, never silent.** A corrupt image, a malformed CSV line,
  a non-finite value, an empty text or a label naming a class the project lacks skips that one
  row or file and is listed in :attr:`ImportReport.skipped` with where it was (``"a.csv:17"``
  for line 17 of a CSV file, ``"a.npz#row5"`` for row 5 (0-based) of an array or Parquet
  file, or the image's path) and why. Problems with the whole input (a missing path, an
  unreadable header, a named column that does not exist, features of the wrong dimension)
  raise :class:`~exemplar.errors.DatasetError` or :class:`~exemplar.errors.ProjectError`
  before anything is written.

* **One transaction per batch.** Each batch of ``batch_size`` items is written in one
  database transaction that takes the project's write lock (SQLite: ``BEGIN IMMEDIATE``;
  PostgreSQL: ``SELECT ... FOR UPDATE`` on the ``n_rows`` meta row), skips uids already
  stored, appends the feature rows to the array file and fsyncs them, inserts the items and
  their labels, and advances ``n_rows``. A crash loses at most the batch in flight; the
  feature rows it appended lie beyond the committed ``n_rows`` and are cut off by the next
  append (:meth:`~exemplar.store.arrays.ArrayStore.append_features`).

* **Bounded memory.** CSV and Parquet files are streamed batch by batch; ``.npy`` files are
  memory-mapped; images are decoded one batch at a time (``.npz`` archives are read whole,
  as zip members cannot be memory-mapped).

Featurization (the feature dimension is fixed by the project's first import):

* images: grayscale, resized to ``[data] image_size`` squared with Pillow (bilinear,
  antialiased), scaled to [0, 1] and flattened (``image_size ** 2`` features);
* text, ``[data] text_encoder = "hashing"`` (default): scikit-learn's stateless
  ``HashingVectorizer(n_features=[data] text_features, alternate_sign=False, norm="l2")``
  as dense float32; ``"minilm"``: frozen MiniLM sentence embeddings (384 float32), cached
  per content hash in the project's ``cache/embeddings`` (see :class:`TextFeaturizer`);
* feature rows: the values as given, stored as float32.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import math
import operator
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from exemplar.data.user import (
    is_number,
    parse_csv_header,
    read_array_file,
    resolve_csv_label_column,
)
from exemplar.errors import ConfigError, DatasetError, ProjectError, StoreError
from exemplar.project.project import Project
from exemplar.store.labels import UnknownClassError, add_labels, validate_class
from exemplar.store.schema import Item, LabelSource, LabelStatus, Meta, Split, utcnow

__all__ = [
    "ARRAY_SUFFIXES",
    "IMAGE_SUFFIXES",
    "TABLE_SUFFIXES",
    "ImportReport",
    "TextFeaturizer",
    "feature_uid",
    "image_features",
    "import_path",
    "text_features",
    "text_featurizer",
    "text_uid",
]

#: Image file types read from folders (matched case-insensitively).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
#: Table file types: one item per row.
TABLE_SUFFIXES = (".csv", ".parquet")
#: Array file types: one item per row of ``X``.
ARRAY_SUFFIXES = (".npy", ".npz")

LabelsAs = Literal["labels", "ground_truth"]
ProgressCallback = Callable[[int, int | None], None]

#: Rows looked up per ``IN (...)`` query (well under every backend's parameter limit).
_LOOKUP_CHUNK = 500
_TEXT_NAME = "text"


# --------------------------------------------------------------------------- public API


@dataclass
class ImportReport:
    """What one :func:`import_path` call did.

    Attributes
    ----------
    added : int
        Items written (committed).
    duplicates : int
        Items whose content hash was already in the project, or repeated within the input.
    skipped : list of (str, str)
        ``(where, why)`` for each row or file not imported: ``"a.csv:17"`` (line 17),
        ``"a.npz#row5"`` (0-based row), or a file path.
    labeled : int
        Labels written (``labels_as="labels"``) or ground truths set (``"ground_truth"``).
    kinds : dict of str to int
        Items added by kind (``image``, ``text``, ``features``).
    notes : list of str
        Facts about how the input was read (ignored columns, the text column used, ...).
    """

    added: int = 0
    duplicates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    labeled: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people: counts of added, duplicate, skipped and labeled items."""
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items()))
        return (
            f"added {self.added} item(s){f' ({kinds})' if kinds else ''}, "
            f"{self.duplicates} duplicate(s), {len(self.skipped)} skipped, "
            f"{self.labeled} labeled"
        )


def import_path(
    project: Project,
    path: Path | str,
    *,
    label_column: str | int | None = None,
    text_column: str | None = None,
    labels_as: LabelsAs = "labels",
    batch_size: int = 2000,
    on_progress: ProgressCallback | None = None,
    folder_labels: bool = True,
) -> ImportReport:
    """Import a folder of images, a CSV/Parquet table or an ``.npy``/``.npz`` file.

    Parameters
    ----------
    project : Project
        The open project to import into.
    path : path-like
        A folder of images (searched recursively; with ``folder_labels``, the name of each
        first-level subfolder is the label of the images under it), a single image, a
        ``.csv`` or ``.parquet`` table (header row required), or an ``.npy``/``.npz`` file
        (read as the simulator reads it: ``X``/``features`` plus ``y``/``labels``).
    label_column : str or int, optional
        Tables: the label column (name or 0-based index); by default a column named
        ``label``, ``class``, ``target`` or ``y`` (case-insensitive), else unlabeled.
        Arrays: as in :func:`exemplar.data.user.load_user_file`. An empty label cell
        leaves that row unlabeled.
    text_column : str, optional
        Tables: import the texts of this column (one text item per row) instead of numeric
        features. By default a non-numeric column named ``text`` selects text mode.
    labels_as : {"labels", "ground_truth"}
        ``"labels"``: each label becomes a verified label from source ``import`` (the item
        counts as labeled). ``"ground_truth"``: the label is stored in ``Item.ground_truth``,
        hidden from strategies and read only by the simulated oracle.
    batch_size : int
        Items per transaction.
    on_progress : callable, optional
        Called after each batch with ``(processed, total)``: inputs (rows or files) seen so
        far, and their total when known in advance (None for CSV and Parquet streams).
    folder_labels : bool
        Folders: take first-level subfolder names as labels. Set False for folders organized
        by something other than class (every image is then unlabeled).

    Returns
    -------
    ImportReport

    Raises
    ------
    DatasetError
        The path is missing or of an unsupported type, or a whole file cannot be read (bad
        header, unknown named column, no feature columns, ...). Nothing was imported.
    ProjectError
        The input's feature dimension differs from the project's.
    StoreError
        The database refused a batch; earlier batches stay committed.
    """
    if labels_as not in ("labels", "ground_truth"):
        raise ConfigError(f"labels_as must be 'labels' or 'ground_truth', got {labels_as!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"nothing to import: '{path}' does not exist")
    report = ImportReport()
    source = _open_source(project, path, label_column, text_column, folder_labels, report)
    _check_dim(project.feature_dim, source.dim, source.what)
    writer = _BatchWriter(project, source.dim, labels_as, report)
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for chunk in source.chunks(batch_size, pool):
            writer.write(chunk, pool)
            if on_progress is not None:
                on_progress(chunk.progress, source.total)
    report.skipped.sort(key=lambda entry: _natural_key(entry[0]))
    return report


def feature_uid(row: np.ndarray) -> str:
    """The content hash of one feature row (its values as little-endian float32)."""
    data = np.ascontiguousarray(row, dtype="<f4").tobytes()
    return hashlib.sha256(b"features\0" + data).hexdigest()


def text_uid(text: str) -> str:
    """The content hash of a text item."""
    return hashlib.sha256(b"text\0" + text.encode("utf-8")).hexdigest()


def text_features(texts: Sequence[str], n_features: int) -> np.ndarray:
    """Dense float32 hashed bag-of-words features, L2-normalized (stateless, deterministic)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        n_features=n_features, alternate_sign=False, norm="l2", dtype=np.float32
    )
    return np.asarray(vectorizer.transform(list(texts)).toarray(), dtype=np.float32)


@dataclass(frozen=True)
class TextFeaturizer:
    """How text items become feature rows (``[data] text_encoder``).

    ``hashing`` (default): a stateless hashed bag of words of ``[data] text_features``
    columns. ``minilm``: frozen all-MiniLM-L6-v2 sentence embeddings (384 columns; Wang et
    al. 2020, Reimers & Gurevych 2019), cached per content hash in the project's
    ``cache/embeddings`` folder so re-importing a text never encodes it again.
    """

    dim: int
    what: str
    encode: Callable[[Sequence[str]], np.ndarray]


def text_featurizer(project: Project) -> TextFeaturizer:
    """The project's text featurizer (MiniLM is loaded lazily, on the first cache miss)."""
    data = project.config.data
    if data.text_encoder == "minilm":
        from exemplar.models.text import MINILM_DIM, CachedEncoder, SentenceEncoder

        encoder = CachedEncoder(
            SentenceEncoder(device=project.config.model.device),
            cache_dir=project.root / "cache" / "embeddings",
        )
        return TextFeaturizer(MINILM_DIM, "text as MiniLM sentence embeddings", encoder.encode)
    n = data.text_features
    return TextFeaturizer(
        n, f"text at data.text_features = {n}", functools.partial(text_features, n_features=n)
    )


def image_features(data: bytes, size: int) -> np.ndarray:
    """Decode an image: grayscale, ``size`` x ``size`` (bilinear), in [0, 1], flattened.

    Raises whatever Pillow raises for an unreadable image (callers report and skip it).
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("L", (size, size))  # JPEG: decode at a reduced scale (much faster)
        gray = img.convert("L")
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.float32).reshape(-1) / np.float32(255.0)


# --------------------------------------------------------------------------- batches


@dataclass
class _Record:
    """One item to import, before it has a row."""

    uid: str
    uri: str
    where: str
    kind: str
    label: str | None
    text: str | None = None
    path: Path | None = None  # images: decoded only if the uid is new


@dataclass
class _Chunk:
    """A batch of records and their features (None: images not decoded yet)."""

    records: list[_Record]
    X: np.ndarray | None
    progress: int  # inputs (rows, lines or files) seen so far, skipped ones included


class _Source(ABC):
    """An input opened and checked (``dim`` known), yielding batches of records."""

    what: str  # what the input is, for the dimension-mismatch message
    dim: int
    total: int | None = None  # inputs, when known before reading them all

    @abstractmethod
    def chunks(self, batch_size: int, pool: ThreadPoolExecutor) -> Iterator[_Chunk]:
        """Batches of at most ``batch_size`` records, in input order."""


class _BatchWriter:
    """Validates labels, removes duplicates and commits one chunk per transaction."""

    def __init__(self, project: Project, dim: int, labels_as: LabelsAs, report: ImportReport):
        self.project = project
        self.dim = dim
        self.labels_as = labels_as
        self.report = report
        self.classes = project.classes
        self.image_size = project.config.data.image_size

    def write(self, chunk: _Chunk, pool: ThreadPoolExecutor) -> None:
        records, X = chunk.records, chunk.X
        keep: list[int] = []
        seen: set[str] = set()
        duplicates = 0
        for i, rec in enumerate(records):
            if rec.label is not None:
                try:
                    validate_class(rec.label, self.classes)
                except UnknownClassError as exc:
                    origin = " (the name of its subfolder)" if rec.kind == "image" else ""
                    self._skip(rec.where, f"{exc}{origin}")
                    continue
            if rec.uid in seen:
                duplicates += 1
                continue
            seen.add(rec.uid)
            keep.append(i)
        if X is None:  # images: decode only those not stored yet
            stored = self._stored_uids([records[i].uid for i in keep])
            duplicates += sum(records[i].uid in stored for i in keep)
            keep = [i for i in keep if records[i].uid not in stored]
            keep, X = self._decode(records, keep, pool)
            records = [records[i] for i in keep]
        else:
            if len(keep) < len(records):
                X = X[keep]
                records = [records[i] for i in keep]
        self.report.duplicates += duplicates
        if records:
            self._commit(records, X)

    def _skip(self, where: str, why: str) -> None:
        self.report.skipped.append((where, why))

    def _decode(
        self, records: list[_Record], keep: list[int], pool: ThreadPoolExecutor
    ) -> tuple[list[int], np.ndarray]:
        size = self.image_size
        rows: list[np.ndarray] = []
        decoded: list[int] = []

        def decode(i: int) -> np.ndarray | str:
            return _decode_image(records[i].path, records[i].uid, size)

        for i, result in zip(keep, pool.map(decode, keep), strict=True):
            if isinstance(result, str):
                self._skip(records[i].where, result)
            else:
                rows.append(result)
                decoded.append(i)
        X = np.stack(rows) if rows else np.empty((0, size * size), dtype=np.float32)
        return decoded, X

    def _stored_uids(self, uids: list[str]) -> set[str]:
        if not uids:
            return set()
        with self.project.db.session() as s:
            return _existing_uids(s, uids)

    def _commit(self, records: list[_Record], X: np.ndarray) -> None:
        project, dim = self.project, self.dim
        try:
            with project.db.session() as s:
                n_rows, stored_dim = _lock_meta(s)
                _check_dim(stored_dim, dim, "this input")
                stored = _existing_uids(s, [r.uid for r in records])
                if stored:  # written by a concurrent import since our pre-check
                    keep = [i for i, r in enumerate(records) if r.uid not in stored]
                    records, X = [records[i] for i in keep], X[keep]
                new = len(records)
                labeled = 0
                if new:
                    project.arrays.append_features(X, n_rows, dim)
                    labeled = self._insert(s, records, n_rows)
                    _set_meta(s, "n_rows", n_rows + new)
                    if stored_dim is None:
                        _set_meta(s, "feature_dim", dim)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"the database refused the batch starting at {records[0].where}: {exc}"
            ) from exc
        # Counted only once the transaction has committed.
        self.report.duplicates += len(stored)
        self.report.added += new
        self.report.labeled += labeled
        for rec in records:
            self.report.kinds[rec.kind] = self.report.kinds.get(rec.kind, 0) + 1

    def _insert(self, s: Session, records: list[_Record], first_row: int) -> int:
        """Insert the items at rows ``first_row, ...`` and their labels; return labels written."""
        ground_truth = self.labels_as == "ground_truth"
        now = utcnow()
        s.execute(
            insert(Item),
            [
                {
                    "uid": r.uid,
                    "row": first_row + j,
                    "uri": r.uri,
                    "kind": r.kind,
                    "text": r.text,
                    "split": Split.POOL,
                    "ground_truth": r.label if ground_truth else None,
                    "created_at": now,
                }
                for j, r in enumerate(records)
            ],
        )
        labeled = [(j, r.label) for j, r in enumerate(records) if r.label is not None]
        if ground_truth or not labeled:
            return len(labeled)
        last_row = first_row + len(records)
        rows = select(Item.row, Item.id).where(Item.row >= first_row, Item.row < last_row)
        ids = {row: item_id for row, item_id in s.execute(rows)}
        return add_labels(
            s,
            [(ids[first_row + j], label) for j, label in labeled],
            classes=self.classes,
            source=LabelSource.IMPORT,
            status=LabelStatus.VERIFIED,
        )


def _lock_meta(s: Session) -> tuple[int, int | None]:
    """Take the project's write lock; return the committed rows and the feature dimension.

    SQLite already holds the database write lock (``BEGIN IMMEDIATE``). PostgreSQL locks
    the ``n_rows`` row, creating it first if missing, so concurrent importers serialize.
    """
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        s.execute(postgresql.insert(Meta).values(key="n_rows", value="0").on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects import sqlite

        s.execute(sqlite.insert(Meta).values(key="n_rows", value="0").on_conflict_do_nothing())
    n_rows = s.scalar(select(Meta.value).where(Meta.key == "n_rows").with_for_update())
    dim = s.scalar(select(Meta.value).where(Meta.key == "feature_dim"))
    return int(n_rows or 0), None if dim is None else int(dim)


def _set_meta(s: Session, key: str, value: int) -> None:
    done = s.execute(update(Meta).where(Meta.key == key).values(value=str(value)))
    if not getattr(done, "rowcount", 0):
        s.add(Meta(key=key, value=str(value)))
        s.flush()


def _existing_uids(s: Session, uids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(uids), _LOOKUP_CHUNK):
        part = uids[start : start + _LOOKUP_CHUNK]
        found.update(s.scalars(select(Item.uid).where(Item.uid.in_(part))))
    return found


def _check_dim(stored: int | None, dim: int, what: str) -> None:
    if stored is not None and stored != dim:
        raise ProjectError(
            f"{what}: {dim} features per item, but the project's feature dimension is "
            f"{stored} (fixed by its first import); import data of the same shape, or start "
            "a new project for it"
        )


def _natural_key(where: str) -> list[Any]:
    """Sort key that puts ``a.csv:9`` before ``a.csv:10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", where)]


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _label_text(value: Any) -> str | None:
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


def _nonfinite_why(row: np.ndarray, names: Sequence[str] | None) -> str:
    bad = int(np.flatnonzero(~np.isfinite(row))[0])
    column = f"column {names[bad]!r}" if names else f"feature {bad}"
    return f"{column} is NaN, infinite or too large for float32 ({row[bad]})"


def _feature_records(
    X: np.ndarray,
    wheres: Sequence[str],
    uris: Sequence[str],
    labels: Sequence[str | None],
    names: Sequence[str] | None,
    report: ImportReport,
) -> tuple[list[_Record], np.ndarray]:
    """Records for numeric rows (float32); rows with NaN or infinite values are skipped."""
    with np.errstate(over="ignore"):  # too large for float32 -> inf -> reported below
        X = np.ascontiguousarray(X, dtype=np.float32)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            report.skipped.append((wheres[i], _nonfinite_why(X[i], names)))
        idx = np.flatnonzero(finite).tolist()
        X = X[idx]
        wheres = [wheres[i] for i in idx]
        uris = [uris[i] for i in idx]
        labels = [labels[i] for i in idx]
    records = [
        _Record(feature_uid(x), uri, where, "features", label)
        for x, uri, where, label in zip(X, uris, wheres, labels, strict=True)
    ]
    return records, X


def _text_records(
    texts: Sequence[Any],
    wheres: Sequence[str],
    uris: Sequence[str],
    labels: Sequence[str | None],
    featurizer: TextFeaturizer,
    report: ImportReport,
) -> tuple[list[_Record], np.ndarray]:
    records: list[_Record] = []
    for text, where, uri, label in zip(texts, wheres, uris, labels, strict=True):
        if text is None or not str(text).strip():
            report.skipped.append((where, "empty text"))
            continue
        text = str(text)
        records.append(_Record(text_uid(text), uri, where, "text", label, text=text))
    if not records:
        return records, np.empty((0, featurizer.dim), dtype=np.float32)
    return records, np.asarray(featurizer.encode([r.text or "" for r in records]), np.float32)


# --------------------------------------------------------------------------- sources


def _open_source(
    project: Project,
    path: Path,
    label_column: str | int | None,
    text_column: str | None,
    folder_labels: bool,
    report: ImportReport,
) -> _Source:
    data = project.config.data
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in IMAGE_SUFFIXES:
        for name, value in (("label_column", label_column), ("text_column", text_column)):
            if value is not None:
                raise DatasetError(
                    f"{name} applies to tables and arrays, not to images ('{path}'); "
                    "image labels come from class subfolders"
                )
        return _ImageSource(path, data.image_size, folder_labels, report)
    if suffix == ".csv":
        return _CsvSource(path, label_column, text_column, text_featurizer(project), report)
    if suffix == ".parquet":
        return _ParquetSource(path, label_column, text_column, text_featurizer(project), report)
    if suffix in ARRAY_SUFFIXES:
        if text_column is not None:
            raise DatasetError(f"text_column applies to CSV and Parquet tables, not to '{path}'")
        return _ArraySource(path, label_column, report)
    accepted = ", ".join([*TABLE_SUFFIXES, *ARRAY_SUFFIXES, "a folder or file of images"])
    raise DatasetError(
        f"cannot import '{path}': unsupported file type {suffix or '(no suffix)'!r}; "
        f"accepted: {accepted}"
    )


class _ImageSource(_Source):
    """Image files: a single file, or a folder searched recursively."""

    def __init__(self, path: Path, size: int, folder_labels: bool, report: ImportReport):
        self.report = report
        self.dim = size * size
        self.what = f"images at data.image_size = {size}"
        others = len(report.skipped)
        self.files = self._scan(path, folder_labels, report)
        others = len(report.skipped) - others
        if not self.files:
            hint = f" ({others} other file(s) were found, none with an image extension)"
            raise DatasetError(f"no image files found in '{path}'{hint if others else ''}")
        self.total = len(self.files)
        labels = sorted({label for _, label in self.files if label is not None})
        if labels:
            report.notes.append(f"labels from subfolder names: {', '.join(labels)}")

    @staticmethod
    def _scan(
        root: Path, folder_labels: bool, report: ImportReport
    ) -> list[tuple[Path, str | None]]:
        if root.is_file():
            return [(root, None)]
        files: list[tuple[Path, str | None]] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = Path(dirpath)
            rel = here.relative_to(root)
            label = rel.parts[0] if folder_labels and rel.parts else None
            for name in sorted(filenames):
                if name.startswith("."):
                    continue  # hidden files (.DS_Store, editor swap files)
                file = here / name
                suffix = file.suffix.lower()
                if suffix in IMAGE_SUFFIXES:
                    files.append((file, label))
                else:
                    why = f"not an image file (extension {suffix or '(none)'!r}); ignored"
                    report.skipped.append((str(file), why))
        return files

    def chunks(self, batch_size: int, pool: ThreadPoolExecutor) -> Iterator[_Chunk]:
        for start in range(0, len(self.files), batch_size):
            part = self.files[start : start + batch_size]
            records: list[_Record] = []
            for (file, label), digest in zip(part, pool.map(_hash_file, [f for f, _ in part])):
                if digest.startswith("!"):
                    self.report.skipped.append((str(file), digest[1:]))
                    continue
                uri = str(file.resolve())
                records.append(_Record(digest, uri, str(file), "image", label, path=file))
            yield _Chunk(records, None, start + len(part))


def _hash_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, or ``"!why"`` when it cannot be read."""
    try:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return f"!cannot read the file: {exc.strerror or exc}"
    return digest.hexdigest()


def _decode_image(path: Path | None, uid: str, size: int) -> np.ndarray | str:
    """The image's feature row, or why it could not be read."""
    assert path is not None
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    if hashlib.sha256(data).hexdigest() != uid:
        return "the file changed while it was being imported; import it again"
    from PIL import UnidentifiedImageError

    try:
        return image_features(data, size)
    except UnidentifiedImageError:
        return "not a readable image (unknown format, or a corrupt file)"
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on corrupt input
        return f"not a readable image ({type(exc).__name__}: {exc})"


# --------------------------------------------------------------------------- CSV


def _utf8_lines(fh: Iterable[bytes], on_bad: Callable[[int], None]) -> Iterator[str]:
    """Decode a binary file line by line; an undecodable line becomes a blank line.

    ``on_bad`` receives its 1-based number, and csv's line numbers stay those of the file.
    """
    for number, raw in enumerate(fh, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            on_bad(number)
            yield "\n"
            continue
        yield line.removeprefix("\ufeff") if number == 1 else line


def _is_blank(cells: list[str]) -> bool:
    return not cells or (len(cells) == 1 and not cells[0].strip())


class _CsvSource(_Source):
    """A CSV table with a header row, streamed in batches.

    Which columns are features is decided from the first rows (:data:`_PEEK_ROWS`): a
    column with no number among them (ids, file names) is ignored, as the simulator's
    loader does; a feature cell that is not a number later skips its row.
    """

    def __init__(
        self,
        path: Path,
        label_column: str | int | None,
        text_column: str | None,
        featurizer: TextFeaturizer,
        report: ImportReport,
    ):
        self.path = path
        self.where = f"CSV file '{path}'"
        self.uri_base = str(path.resolve())
        self.featurizer = featurizer
        self.report = report
        try:
            self._fh = path.open("rb")
        except OSError as exc:
            raise DatasetError(f"cannot read {self.where}: {exc.strerror or exc}") from exc
        try:
            self._reader = csv.reader(_utf8_lines(self._fh, self._bad_line))
            self._setup(label_column, text_column)
        except BaseException:
            self._fh.close()
            raise

    def _setup(self, label_column: str | int | None, text_column: str | None) -> None:
        report = self.report
        header, self.header_line = self._header()
        self.names = parse_csv_header(header, self.header_line, self.where)
        self.n_fields = len(self.names)
        self.label_index = resolve_csv_label_column(self.names, label_column, self.where)
        self._peek = self._read_rows(_PEEK_ROWS)
        if not self._peek:
            first = ""
            if report.skipped:
                first = f"; the first problem: {report.skipped[0][0]}: {report.skipped[0][1]}"
            raise DatasetError(
                f"{self.where} has no readable data rows after its header (line "
                f"{self.header_line}){first}"
            )
        self.text_index = self._text_index(text_column)
        skip = (self.label_index, self.text_index)
        others = [j for j in range(self.n_fields) if j not in skip]
        if self.text_index is not None:
            self.dim = self.featurizer.dim
            self.what = self.featurizer.what
            self.feature_index: list[int] = []
            ignored = [self.names[j] for j in others]
            report.notes.append(f"text from column {self.names[self.text_index]!r}")
        else:
            self.feature_index = [j for j in others if self._numeric_somewhere(j)]
            ignored = [self.names[j] for j in others if j not in self.feature_index]
            if not self.feature_index:
                raise DatasetError(
                    f"{self.where} has no numeric feature columns (columns: "
                    f"{', '.join(self.names)}); to import texts, pass text_column"
                )
            self.dim = len(self.feature_index)
            self.what = self.where
            report.notes.append(f"{self.dim} numeric feature column(s)")
        if ignored:
            report.notes.append(f"ignored columns: {', '.join(ignored)}")
        if self.label_index is not None:
            report.notes.append(f"labels from column {self.names[self.label_index]!r}")

    def _bad_line(self, number: int) -> None:
        self.report.skipped.append((f"{self.path}:{number}", "not UTF-8 text (undecodable)"))

    def _next_row(self) -> tuple[int, list[str] | None] | None:
        """The next row and its line (cells None: csv could not parse it); None at the end."""
        try:
            cells = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            where = f"{self.path}:{self._reader.line_num}"
            self.report.skipped.append((where, f"cannot parse CSV ({exc})"))
            return self._reader.line_num, None
        return self._reader.line_num, cells

    def _header(self) -> tuple[list[str], int]:
        while (got := self._next_row()) is not None:
            line, cells = got
            if cells is not None and not _is_blank(cells):
                return [c.strip() for c in cells], line
        raise DatasetError(f"{self.where} is empty: no header row and no data")

    def _read_rows(self, n: int) -> list[tuple[int, list[str]]]:
        """Up to ``n`` well-formed data rows; ragged and unparsable ones are reported."""
        rows: list[tuple[int, list[str]]] = []
        while len(rows) < n and (got := self._next_row()) is not None:
            line, cells = got
            if cells is None or _is_blank(cells):
                continue
            if len(cells) != self.n_fields:
                why = f"expected {self.n_fields} fields (as in the header), found {len(cells)}"
                self.report.skipped.append((f"{self.path}:{line}", why))
                continue
            rows.append((line, cells))
        return rows

    def _text_index(self, text_column: str | None) -> int | None:
        if text_column is None:
            for j, name in enumerate(self.names):
                if name.lower() == _TEXT_NAME and j != self.label_index:
                    return None if self._numeric_somewhere(j) else j
            return None
        lowered = [n.lower() for n in self.names]
        if text_column in self.names:
            index = self.names.index(text_column)
        elif text_column.lower() in lowered:
            index = lowered.index(text_column.lower())
        else:
            raise DatasetError(
                f"{self.where}: text column {text_column!r} not found; the columns are: "
                f"{', '.join(self.names)}"
            )
        if index == self.label_index:
            raise DatasetError(
                f"{self.where}: column {text_column!r} cannot be both the text and the label"
            )
        return index

    def _numeric_somewhere(self, j: int) -> bool:
        """Whether column ``j`` holds a number in the first rows (else it is not a feature)."""
        return any(is_number(cells[j]) for _, cells in self._peek)

    def chunks(self, batch_size: int, pool: ThreadPoolExecutor) -> Iterator[_Chunk]:
        try:
            pending, self._peek = self._peek, []
            while True:
                if len(pending) < batch_size:
                    pending.extend(self._read_rows(batch_size - len(pending)))
                if not pending:
                    return
                rows, pending = pending[:batch_size], pending[batch_size:]
                records, X = self._records(rows)
                yield _Chunk(records, X, rows[-1][0] - self.header_line)
        finally:
            self._fh.close()

    def _records(self, rows: list[tuple[int, list[str]]]) -> tuple[list[_Record], np.ndarray]:
        wheres = [f"{self.path}:{line}" for line, _ in rows]
        uris = [f"{self.uri_base}#L{line}" for line, _ in rows]
        li = self.label_index
        labels = [None if li is None else _label_text(cells[li]) for _, cells in rows]
        if self.text_index is not None:
            texts = [cells[self.text_index] for _, cells in rows]
            return _text_records(texts, wheres, uris, labels, self.featurizer, self.report)
        X, ok = self._parse_features(rows, wheres)
        if not ok.all():
            idx = np.flatnonzero(ok)
            X = X[idx]
            wheres = [wheres[i] for i in idx]
            uris = [uris[i] for i in idx]
            labels = [labels[i] for i in idx]
        names = [self.names[j] for j in self.feature_index]
        return _feature_records(X, wheres, uris, labels, names, self.report)

    def _parse_features(
        self, rows: list[tuple[int, list[str]]], wheres: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Float64 rows and a mask of the rows that parsed; bad cells are reported."""
        n = len(rows)
        ok = np.ones(n, dtype=bool)
        pick = operator.itemgetter(*self.feature_index)
        values = [[pick(c)] if self.dim == 1 else pick(c) for _, c in rows]
        try:  # fast path: every cell is a number
            return np.array(values, dtype=np.float64).reshape(n, self.dim), ok
        except ValueError:
            pass
        X = np.zeros((n, self.dim), dtype=np.float64)
        for i, row in enumerate(values):
            try:
                X[i] = np.array(row, dtype=np.float64)
            except ValueError:
                ok[i] = False
                k = next(k for k, v in enumerate(row) if not is_number(v))
                name, value = self.names[self.feature_index[k]], row[k]
                what = "a missing value" if not value.strip() else f"{value!r} is not a number"
                self.report.skipped.append((wheres[i], f"column {name!r}: {what}"))
        return X, ok


#: Rows read ahead to decide which CSV columns are numeric features.
_PEEK_ROWS = 256


# --------------------------------------------------------------------------- Parquet


class _ParquetSource(_Source):
    """A Parquet table, read in record batches (needs pyarrow: ``exemplar[parquet]``)."""

    def __init__(
        self,
        path: Path,
        label_column: str | int | None,
        text_column: str | None,
        featurizer: TextFeaturizer,
        report: ImportReport,
    ):
        self.where = f"Parquet file '{path}'"
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetError(
                f"reading {self.where} needs pyarrow; install it with "
                "`pip install 'exemplar[parquet]'`"
            ) from None
        self.path = path
        self.uri_base = str(path.resolve())
        self.featurizer = featurizer
        self.report = report
        self._float64 = pa.float64()
        self._arrow_error = pa.ArrowException
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"cannot read {self.where}: {exc}") from exc
        schema = self.file.schema_arrow
        self.names = list(schema.names)
        self.total = self.file.metadata.num_rows
        if not self.total:
            raise DatasetError(f"{self.where} is empty: it has no rows")
        li = resolve_csv_label_column(self.names, label_column, self.where)
        self.label_name = None if li is None else self.names[li]
        types = {name: schema.field(name).type for name in self.names}

        def numeric(name: str) -> bool:
            t = types[name]
            return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))

        def stringy(name: str) -> bool:
            t = types[name]
            return bool(pa.types.is_string(t) or pa.types.is_large_string(t))

        self.text_name: str | None = None
        if text_column is not None:
            if text_column not in self.names:
                raise DatasetError(
                    f"{self.where}: text column {text_column!r} not found; the columns are: "
                    f"{', '.join(self.names)}"
                )
            if text_column == self.label_name:
                raise DatasetError(
                    f"{self.where}: column {text_column!r} cannot be both the text and the label"
                )
            self.text_name = text_column
        else:
            for name in self.names:
                if name.lower() == _TEXT_NAME and name != self.label_name and stringy(name):
                    self.text_name = name
                    break
        others = [n for n in self.names if n not in (self.label_name, self.text_name)]
        if self.text_name is not None:
            self.dim = self.featurizer.dim
            self.what = self.featurizer.what
            self.feature_names: list[str] = []
            ignored = others
            report.notes.append(f"text from column {self.text_name!r}")
        else:
            self.feature_names = [n for n in others if numeric(n)]
            ignored = [n for n in others if not numeric(n)]
            if not self.feature_names:
                raise DatasetError(
                    f"{self.where} has no numeric feature columns (columns: "
                    f"{', '.join(self.names)}); to import texts, pass text_column"
                )
            self.dim = len(self.feature_names)
            self.what = self.where
        if ignored:
            report.notes.append(f"ignored columns: {', '.join(ignored)}")
        if self.label_name is not None:
            report.notes.append(f"labels from column {self.label_name!r}")

    def chunks(self, batch_size: int, pool: ThreadPoolExecutor) -> Iterator[_Chunk]:
        columns = [*self.feature_names]
        if self.text_name is not None:
            columns.append(self.text_name)
        if self.label_name is not None:
            columns.append(self.label_name)
        start = 0
        for batch in self._batches(batch_size, columns):
            n = batch.num_rows
            wheres = [f"{self.path}#row{i}" for i in range(start, start + n)]
            uris = [f"{self.uri_base}#row{i}" for i in range(start, start + n)]
            labels: list[str | None] = (
                [_label_text(v) for v in batch.column(self.label_name).to_pylist()]
                if self.label_name is not None
                else [None] * n
            )
            if self.text_name is not None:
                texts = batch.column(self.text_name).to_pylist()
                records, X = _text_records(
                    texts, wheres, uris, labels, self.featurizer, self.report
                )
            else:
                X = np.column_stack(  # nulls become NaN, reported by _feature_records
                    [
                        batch.column(name).cast(self._float64).to_numpy(zero_copy_only=False)
                        for name in self.feature_names
                    ]
                )
                records, X = _feature_records(
                    X, wheres, uris, labels, self.feature_names, self.report
                )
            start += n
            yield _Chunk(records, X, start)

    def _batches(self, batch_size: int, columns: list[str]) -> Iterator[Any]:
        """Record batches; a read error becomes a :class:`DatasetError` naming the file."""
        batches = self.file.iter_batches(batch_size=batch_size, columns=columns)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except self._arrow_error as exc:
                raise DatasetError(f"cannot read {self.where}: {exc}") from exc
            yield batch


# --------------------------------------------------------------------------- arrays


class _ArraySource(_Source):
    """An ``.npy`` (memory-mapped) or ``.npz`` file, read as the simulator reads it."""

    def __init__(self, path: Path, label_column: str | int | None, report: ImportReport):
        self.path = path
        self.uri_base = str(path.resolve())
        self.report = report
        self.X, self.y = read_array_file(path, label_column, mmap=True)
        self.dim = int(self.X.shape[1])
        self.n = int(self.X.shape[0])
        self.total = self.n
        self.what = f"file '{path}'"
        if self.y is not None:
            report.notes.append("labels from the file's label array")

    def chunks(self, batch_size: int, pool: ThreadPoolExecutor) -> Iterator[_Chunk]:
        for start in range(0, self.n, batch_size):
            stop = min(start + batch_size, self.n)
            wheres = [f"{self.path}#row{i}" for i in range(start, stop)]
            uris = [f"{self.uri_base}#row{i}" for i in range(start, stop)]
            if self.y is None:
                labels: list[str | None] = [None] * (stop - start)
            else:
                labels = [_label_text(v) for v in self.y[start:stop]]
            records, X32 = _feature_records(
                self.X[start:stop], wheres, uris, labels, None, self.report
            )
            yield _Chunk(records, X32, stop)
