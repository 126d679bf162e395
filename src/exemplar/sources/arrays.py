""".npy and .npz arrays: one item per row of ``X`` (``features``), labels optional.

The one reader of array files: the importer (:class:`ArraySource`) and the simulator's
loader (``exemplar.data.user``) both call :func:`read_array_file`. Files are never
unpickled (``allow_pickle=False``): untrusted input must not run code (DESIGN.md §4).
An ``.npy`` file can be memory-mapped; ``.npz`` members are read whole (zip members
cannot be memory-mapped).
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exemplar.errors import DatasetError
from exemplar.sources.base import Chunk, Log, Source, SourceOptions, feature_records, label_text
from exemplar.sources.csv_table import list_names

__all__ = ["ARRAY_SUFFIXES", "ArrayFile", "ArraySource", "read_array_file"]

#: Array file types: one item per row of ``X``.
ARRAY_SUFFIXES = (".npy", ".npz")

_PICKLE_HINT = (
    "it holds Python objects (pickled data), which exemplar never loads from files for "
    "safety; save numeric arrays (and labels as integers or fixed-width strings, "
    "e.g. y.astype(str))"
)


@dataclass(frozen=True)
class ArrayFile:
    """What :func:`read_array_file` read.

    Attributes
    ----------
    X : ndarray of shape (n_items, n_features)
        Numeric features (float32 or float64), not yet checked for NaN or infinite values.
    y : ndarray of shape (n_items,) or None
        The validated labels (int64 or str).
    labels_from : str
        Where the labels came from, e.g. ``", labels from 'y'"`` or ``", unlabeled"``.
    where : str
        The features' place in messages: ``"npy file 'a.npy'"`` or
        ``"npz file 'a.npz', array 'X'"``.
    """

    X: np.ndarray
    y: np.ndarray | None
    labels_from: str
    where: str


def read_array_file(
    path: Path, label_column: str | int | None = None, *, mmap: bool = False
) -> ArrayFile:
    """Read an ``.npy`` / ``.npz`` file: features and labels, checked (except for NaN).

    ``label_column``: NPY, the index of the column holding the labels; NPZ, a key naming
    the label array (default ``y`` or ``labels``) or the index of a column of ``X``. With
    ``mmap``, a float ``.npy`` file is memory-mapped read-only instead of loaded. Never
    unpickles. NaN and infinite values are left for the caller (the importer skips those
    rows, the simulator's loader refuses the file).
    """
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise DatasetError(f"'{path}' is not an .npy or .npz file")
    if not path.is_file():
        raise DatasetError(f"file not found: '{path}'")
    if suffix == ".npy":
        X, y, text = _read_npy(path, label_column, mmap=mmap)
        return ArrayFile(X, y, text, f"npy file '{path}'")
    X, y, text, x_key = _read_npz(path, label_column)
    return ArrayFile(X, y, text, f"npz file '{path}', array {x_key!r}")


def _numeric_features(arr: np.ndarray, where: str) -> np.ndarray:
    """Check that ``arr`` is a non-empty 2-D numeric array and return it as float."""
    if arr.ndim != 2:
        hint = (
            "; for a single feature save X.reshape(-1, 1)"
            if arr.ndim == 1
            else "; reshape it to (n_items, n_features)"
            if arr.ndim > 2
            else ""
        )
        raise DatasetError(
            f"{where}: expected a 2-D array of shape (n_items, n_features), got a "
            f"{arr.ndim}-D array of shape {arr.shape}{hint}"
        )
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise DatasetError(
            f"{where}: features must be numbers, got an array of dtype {arr.dtype} (non-numeric)"
        )
    if arr.shape[0] == 0:
        raise DatasetError(f"{where} is empty: the array has 0 rows (shape {arr.shape})")
    if arr.shape[1] == 0:
        raise DatasetError(f"{where} has no features: the array has 0 columns")
    if kind in "biu":
        return arr.astype(np.float64)
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    return arr


def _labels_from_array(y: np.ndarray, where: str) -> np.ndarray:
    """Validate a 1-D label array; integral floats become int64, bytes become str."""
    if y.ndim != 1:
        raise DatasetError(
            f"{where}: labels must be a 1-D array (one label per item), got shape {y.shape}"
        )
    kind = y.dtype.kind
    if kind in "biu":
        return y.astype(np.int64) if kind == "b" else y
    if kind == "U":
        return y
    if kind == "S":
        try:
            return np.char.decode(y, "utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{where}: labels are bytes that are not UTF-8 ({exc})") from exc
    if kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise DatasetError(
                f"{where}: {int((~finite).sum())} label(s) are NaN or infinite; "
                f"the first is at row {first}"
            )
        integral = y == np.round(y)
        if not integral.all():
            first = int(np.flatnonzero(~integral)[0])
            raise DatasetError(
                f"{where}: labels must be integers or strings; row {first} has the "
                f"non-integer label {float(y[first])}"
            )
        return y.astype(np.int64)
    raise DatasetError(
        f"{where}: labels must be integers or strings, got an array of dtype {y.dtype}"
    )


def _split_label_column(
    arr: np.ndarray, label_column: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split column ``label_column`` of a 2-D array off as labels."""
    if arr.ndim != 2:
        _numeric_features(arr, where)  # raises the shape error
    n_cols = arr.shape[1]
    if not -n_cols <= label_column < n_cols:
        raise DatasetError(
            f"{where}: label column {label_column} not found; the array has {n_cols} "
            f"columns (0 to {n_cols - 1})"
        )
    index = label_column % n_cols
    y = _labels_from_array(arr[:, index], f"{where}, label column {index}")
    return np.delete(arr, index, axis=1), y


def _check_int_label_column(label_column: object, where: str) -> int:
    if isinstance(label_column, bool) or not isinstance(label_column, int):
        raise DatasetError(
            f"{where}: label_column must be an integer column index (array files have no "
            f"column names), got {label_column!r}"
        )
    return label_column


def _read_npy(
    path: Path, label_column: str | int | None, *, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray | None, str]:
    where = f"npy file '{path}'"
    try:
        with path.open("rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DatasetError(f"cannot read {where}: {exc.strerror or exc}") from exc
    if magic.startswith(b"PK"):
        raise DatasetError(f"{where} is an .npz archive, not a single array; rename it to .npz")
    if magic != b"\x93NUMPY":
        raise DatasetError(
            f"cannot read {where}: not a valid .npy file (no NumPy header); note that "
            "exemplar never loads pickle files"
        )
    try:
        loaded = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        message = str(exc).lower()
        if "pickle" in message or (mmap and "object" in message):
            raise DatasetError(f"cannot load {where}: {_PICKLE_HINT}") from exc
        raise DatasetError(f"cannot read {where}: not a valid .npy file ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {where}: not a valid .npy file ({exc})") from exc
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise DatasetError(f"{where} is an .npz archive, not a single array; rename it to .npz")
    arr = loaded
    y: np.ndarray | None = None
    if label_column is not None:
        index = _check_int_label_column(label_column, where)
        if arr.ndim == 2 and arr.dtype.kind not in "biuf":
            _numeric_features(arr, where)  # raises the dtype error
        arr, y = _split_label_column(arr, index, where)
    X = _numeric_features(arr, where)
    label_text = f", labels from column {label_column}" if y is not None else ", unlabeled"
    return X, y, label_text


def _pick_key(keys: list[str], options: tuple[str, str], where: str) -> str | None:
    present = [k for k in options if k in keys]
    if len(present) == 2:
        raise DatasetError(
            f"{where} has both {options[0]!r} and {options[1]!r} arrays; keep only one"
        )
    return present[0] if present else None


def _read_npz(
    path: Path, label_column: str | int | None
) -> tuple[np.ndarray, np.ndarray | None, str, str]:
    """``X``, ``y``, a description of where the labels came from, and the key of ``X``."""
    where = f"npz file '{path}'"
    read_errors = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
    try:
        loaded = np.load(path, allow_pickle=False)
    except read_errors as exc:
        raise DatasetError(f"cannot read {where}: not a valid .npz archive ({exc})") from exc
    if isinstance(loaded, np.ndarray):
        raise DatasetError(f"{where} holds a single .npy array, not an .npz archive")
    with loaded as npz:
        keys = list(npz.files)
        x_key = _pick_key(keys, ("X", "features"), where)
        if x_key is None:
            raise DatasetError(
                f"{where} has no 'X' (or 'features') array; its keys are: {list_names(keys)}"
            )
        y_key: str | None = None
        if isinstance(label_column, str):
            if label_column not in keys:
                raise DatasetError(
                    f"{where}: label array {label_column!r} not found; its keys are: "
                    f"{list_names(keys)}"
                )
            y_key = label_column
        else:
            y_key = _pick_key(keys, ("y", "labels"), where)
            if label_column is not None and y_key is not None:
                raise DatasetError(
                    f"{where}: label_column={label_column!r} selects a column of {x_key!r} "
                    f"as labels, but the archive also has a {y_key!r} array; use one or the "
                    "other"
                )
        try:
            arr = npz[x_key]
            y_raw = npz[y_key] if y_key is not None else None
        except ValueError as exc:
            if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                raise DatasetError(f"cannot load {where}: {_PICKLE_HINT}") from exc
            raise DatasetError(f"cannot read {where}: corrupt array ({exc})") from exc
        except read_errors as exc:
            raise DatasetError(f"cannot read {where}: corrupt archive ({exc})") from exc

    y: np.ndarray | None = None
    label_text = ", unlabeled"
    if label_column is not None and not isinstance(label_column, str):
        index = _check_int_label_column(label_column, where)
        if arr.ndim == 2 and arr.dtype.kind not in "biuf":
            _numeric_features(arr, f"{where}, array {x_key!r}")
        arr, y = _split_label_column(arr, index, f"{where}, array {x_key!r}")
        label_text = f", labels from column {index} of {x_key!r}"
    X = _numeric_features(arr, f"{where}, array {x_key!r}")
    if y_raw is not None:
        y = _labels_from_array(y_raw, f"{where}, array {y_key!r}")
        if y.shape[0] != X.shape[0]:
            raise DatasetError(
                f"{where}: {x_key!r} has {X.shape[0]} rows but {y_key!r} has {y.shape[0]} "
                "labels; they must have the same length"
            )
        label_text = f", labels from {y_key!r}"
    return X, y, label_text, x_key


class ArraySource(Source):
    """An ``.npy`` (memory-mapped) or ``.npz`` file, read as the simulator reads it."""

    def __init__(self, path: Path, options: SourceOptions, log: Log):
        if options.text_column is not None:
            raise DatasetError(f"text_column applies to CSV and Parquet tables, not to '{path}'")
        self.path = path
        self.uri_base = str(path.resolve())
        self.log = log
        read = read_array_file(path, options.label_column, mmap=True)
        self.X, self.y = read.X, read.y
        self.dim = int(self.X.shape[1])
        self.n = int(self.X.shape[0])
        self.total = self.n
        self.what = f"file '{path}'"
        if self.y is not None:
            log.note("labels from the file's label array")

    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        for start in range(0, self.n, size):
            stop = min(start + size, self.n)
            wheres = [f"{self.path}#row{i}" for i in range(start, stop)]
            uris = [f"{self.uri_base}#row{i}" for i in range(start, stop)]
            if self.y is None:
                labels: list[str | None] = [None] * (stop - start)
            else:
                labels = [label_text(v) for v in self.y[start:stop]]
            records, X32 = feature_records(self.X[start:stop], wheres, uris, labels, None, self.log)
            yield Chunk(records, X32, stop)
