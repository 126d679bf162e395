"""Loaders for a user's own feature files: ``.csv``, ``.npy`` and ``.npz``.

The files are parsed by :mod:`exemplar.sources` (the importer reads them through the same
modules), strictly: the first bad row stops the load. Every problem raises
:class:`~exemplar.errors.DatasetError` with a message that names the file, the line or
key, and what is wrong. Files are never unpickled (``allow_pickle=False``): untrusted
input must not run code (DESIGN.md §4).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exemplar.data.core import Dataset, check_finite
from exemplar.errors import DatasetError
from exemplar.sources.arrays import read_array_file
from exemplar.sources.base import Problem
from exemplar.sources.csv_table import LABEL_COLUMN_CANDIDATES, CsvTable

__all__ = ["LABEL_COLUMN_CANDIDATES", "SUPPORTED_SUFFIXES", "load_user_file"]

#: File types :func:`load_user_file` reads.
SUPPORTED_SUFFIXES = (".csv", ".npy", ".npz")

_INT_RE = re.compile(r"^[+-]?\d+$")


def load_user_file(path: Path, label_column: str | int | None = None) -> Dataset:
    """Load a ``.csv``, ``.npy`` or ``.npz`` file of features and optional labels.

    Parameters
    ----------
    path : pathlib.Path
        The file; its suffix (case-insensitive) picks the format.
    label_column : str or int, optional
        CSV: the label column by name or 0-based index (negative counts from the end);
        by default a column named ``label``, ``class``, ``target`` or ``y`` (in that order
        of priority, case-insensitive), else the data is unlabeled.
        NPY: the index of the column of the array that holds the labels; by default the
        whole array is features.
        NPZ: a key naming the label array (default ``y`` or ``labels``), or the index of
        a column of ``X`` holding the labels.

    Returns
    -------
    Dataset
        Named after the file's stem, with ``source`` its absolute path.

    Raises
    ------
    DatasetError
        If the file is missing, unreadable, empty or malformed, or its features are not
        all finite numbers.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DatasetError(
            f"unsupported file type {suffix or '(no suffix)'!r} for '{path}'; "
            f"accepted: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.exists():
        raise DatasetError(f"file not found: '{path}'")
    if not path.is_file():
        raise DatasetError(f"'{path}' is not a regular file (a directory?)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    if size == 0:
        raise DatasetError(f"file '{path}' is empty (0 bytes)")
    if suffix == ".csv":
        return _load_csv(path, label_column)
    return _load_array(path, label_column)


class _Strict:
    """A :class:`~exemplar.sources.base.Log` that stops at the first bad row."""

    def __init__(self, where: str):
        self.where = where

    def skip(self, problem: Problem) -> None:
        line = f", line {problem.line}" if problem.line is not None else ""
        column = f", column {problem.column!r}" if problem.column is not None else ""
        raise DatasetError(f"{self.where}{line}{column}: {problem.why}")

    def note(self, text: str) -> None:
        """Notes are for the importer's report; a loader describes the dataset itself."""


def _csv_labels(values: Sequence[str], lines: list[int], name: str, where: str) -> np.ndarray:
    stripped = [v.strip() for v in values]
    for value, line in zip(stripped, lines, strict=True):
        if not value:
            raise DatasetError(
                f"{where}, line {line}: the label column {name!r} is empty; every row "
                "needs a label (to load the file as unlabeled, rename or drop that column)"
            )
    if all(_INT_RE.match(v) for v in stripped):
        return np.array([int(v) for v in stripped], dtype=np.int64)
    return np.array(stripped, dtype=str)


def _load_csv(path: Path, label_column: str | int | None) -> Dataset:
    where = f"CSV file '{path}'"
    table = CsvTable(path, label_column, None, _Strict(where), peek_rows=None, detect_text=False)
    try:
        rows = table.rows(None)
    finally:
        table.close()
    lines = [line for line, _ in rows]
    X, _ = table.features(rows)
    names = table.names
    label_text = ""
    y: np.ndarray | None = None
    if table.label_index is not None:
        label_name = names[table.label_index]
        y = _csv_labels([r[table.label_index] for _, r in rows], lines, label_name, where)
        label_text = f", labels from column {label_name!r}"
    feature_names = table.feature_names
    check_finite(X, where, row_label=lambda i: f"line {lines[i]}", feature_names=feature_names)
    description = f"user CSV file: {X.shape[0]} rows, {X.shape[1]} numeric features{label_text}"
    if table.ignored:
        description += f"; ignored non-numeric columns: {', '.join(table.ignored)}"
    return Dataset(
        name=path.stem,
        X=X,
        y=y,
        description=description,
        source=str(path.resolve()),
        feature_names=tuple(feature_names),
    )


def _load_array(path: Path, label_column: str | int | None) -> Dataset:
    read = read_array_file(path, label_column)
    X = read.X
    check_finite(X, read.where)
    kind = path.suffix.lower().lstrip(".")
    return Dataset(
        name=path.stem,
        X=X,
        y=read.y,
        description=f"user {kind} file: {X.shape[0]} rows, {X.shape[1]} features{read.labels_from}",
        source=str(path.resolve()),
    )
