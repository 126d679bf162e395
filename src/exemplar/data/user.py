"""Loaders for a user's own feature files: ``.csv``, ``.npy`` and ``.npz``.

Every problem with the input raises :class:`~exemplar.errors.DatasetError` with a message
that names the file, the line or key, and what is wrong. Files are never unpickled
(``allow_pickle=False``): untrusted input must not run code (DESIGN.md §4).
"""

from __future__ import annotations

import csv
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exemplar.data.core import Dataset, check_finite
from exemplar.errors import DatasetError

__all__ = [
    "LABEL_COLUMN_CANDIDATES",
    "SUPPORTED_SUFFIXES",
    "load_user_file",
    "parse_csv_header",
    "read_array_file",
    "resolve_csv_label_column",
]

#: File types :func:`load_user_file` reads.
SUPPORTED_SUFFIXES = (".csv", ".npy", ".npz")
#: Column names taken as the label column of a CSV file when none is given, by priority
#: (matched case-insensitively, an exact match first).
LABEL_COLUMN_CANDIDATES = ("label", "class", "target", "y")

_INT_RE = re.compile(r"^[+-]?\d+$")
_PICKLE_HINT = (
    "it holds Python objects (pickled data), which exemplar never loads from files for "
    "safety; save numeric arrays (and labels as integers or fixed-width strings, "
    "e.g. y.astype(str))"
)


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
    if suffix == ".npy":
        return _load_npy(path, label_column)
    return _load_npz(path, label_column)


def parse_csv_header(header: list[str], header_line: int, where: str) -> list[str]:
    """Validate a CSV header row and return the column names (unnamed ones get a placeholder).

    Raises :class:`~exemplar.errors.DatasetError` for a header separated by semicolons or
    tabs, a first row of numbers (data, not a header), or a repeated column name.
    """
    return _check_header(header, header_line, where)


def resolve_csv_label_column(
    names: list[str], label_column: str | int | None, where: str
) -> int | None:
    """The index of the label column among ``names``, or None when the data is unlabeled.

    ``label_column`` is a name or a 0-based index; by default the first of
    :data:`LABEL_COLUMN_CANDIDATES` present (case-insensitive). A named column that does not
    exist raises :class:`~exemplar.errors.DatasetError`.
    """
    return _resolve_csv_label(names, label_column, where)


def read_array_file(
    path: Path, label_column: str | int | None = None, *, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an ``.npy`` / ``.npz`` file as :func:`load_user_file` does, minus the NaN check.

    Returns ``(X, y)``: 2-D numeric features (not yet checked for NaN or infinite values,
    so a caller can skip bad rows instead of rejecting the file) and the validated labels or
    None. With ``mmap``, a float ``.npy`` file is memory-mapped read-only instead of loaded.
    Never unpickles.
    """
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise DatasetError(f"'{path}' is not an .npy or .npz file")
    if not path.is_file():
        raise DatasetError(f"file not found: '{path}'")
    if suffix == ".npy":
        X, y, _ = _read_npy(path, label_column, mmap=mmap)
    else:
        X, y, _, _ = _read_npz(path, label_column)
    return X, y


# --------------------------------------------------------------------------- helpers


def _list_names(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names)} in all)"
    return shown


def is_number(text: str) -> bool:
    """Whether ``text`` parses as a float."""
    try:
        float(text)
    except ValueError:
        return False
    return True


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


# --------------------------------------------------------------------------- CSV


def _read_csv_rows(path: Path, where: str) -> tuple[list[str], int, list[list[str]], list[int]]:
    """Return the header, its line number, the data rows and their line numbers."""
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    lines: list[int] = []
    line = 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if header is None:
                    header = [cell.strip() for cell in row]
                    header_line = line
                    continue
                if len(row) != len(header):
                    raise DatasetError(
                        f"{where}, line {line}: expected {len(header)} fields (as in the "
                        f"header on line {header_line}), found {len(row)} (ragged row)"
                    )
                rows.append(row)
                lines.append(line)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{where} is not UTF-8 text (undecodable byte at offset {exc.start}); "
            "is it really a CSV file?"
        ) from exc
    except csv.Error as exc:
        raise DatasetError(f"{where}, line {line + 1}: cannot parse CSV ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {where}: {exc.strerror or exc}") from exc
    if header is None:
        raise DatasetError(f"{where} is empty: no header row and no data")
    return header, header_line, rows, lines


def _check_header(header: list[str], header_line: int, where: str) -> list[str]:
    if len(header) == 1:
        for sep, sep_name in ((";", "semicolons"), ("\t", "tabs")):
            if sep in header[0]:
                raise DatasetError(
                    f"{where}, line {header_line}: the header seems to be separated by "
                    f"{sep_name}; exemplar reads comma-separated files"
                )
    if all(is_number(h) for h in header) and header != [str(i) for i in range(len(header))]:
        raise DatasetError(
            f"{where}, line {header_line}: the first row holds only numbers, so it looks "
            "like data; a header row naming the columns is required"
        )
    names = [h if h else f"<unnamed column {i + 1}>" for i, h in enumerate(header)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DatasetError(
                f"{where}, line {header_line}: column name {name!r} appears twice "
                f"(columns {seen[name]} and {i}); column names must be unique"
            )
        seen[name] = i
    return names


def _resolve_csv_label(names: list[str], label_column: str | int | None, where: str) -> int | None:
    if label_column is None:
        for candidate in LABEL_COLUMN_CANDIDATES:
            if candidate in names:
                return names.index(candidate)
            for i, name in enumerate(names):
                if name.lower() == candidate:
                    return i
        return None
    if isinstance(label_column, bool) or not isinstance(label_column, (str, int)):
        raise DatasetError(
            f"{where}: label_column must be a column name or index, got {label_column!r}"
        )
    if isinstance(label_column, int):
        if not -len(names) <= label_column < len(names):
            raise DatasetError(
                f"{where}: label column index {label_column} not found; there are "
                f"{len(names)} columns (0 to {len(names) - 1}): {_list_names(names)}"
            )
        return label_column % len(names)
    if label_column in names:
        return names.index(label_column)
    hint = " (to pick a column by position, pass an int)" if label_column.isdigit() else ""
    raise DatasetError(
        f"{where}: label column {label_column!r} not found{hint}; the columns are: "
        f"{_list_names(names)}"
    )


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


def _csv_features(
    rows: list[list[str]],
    lines: list[int],
    names: list[str],
    label_index: int | None,
    where: str,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Parse the feature columns; return ``X``, the feature names and ignored text columns.

    A column with no numeric value at all (file names, ids) is not a feature and is
    ignored; a column with some numeric values must be numeric throughout.
    """
    if label_index is None:
        candidates = rows
    else:
        candidates = [r[:label_index] + r[label_index + 1 :] for r in rows]
    try:  # fast path: every non-label column is numeric (the common case)
        X = np.array(candidates, dtype=np.float64).reshape(len(rows), -1)
        return X, [n for j, n in enumerate(names) if j != label_index], []
    except ValueError:
        pass
    del candidates
    feature_names: list[str] = []
    feature_values: list[np.ndarray] = []
    ignored: list[str] = []
    for j, name in enumerate(names):
        if j == label_index:
            continue
        column = [r[j] for r in rows]
        try:
            feature_values.append(np.array(column, dtype=np.float64))
        except ValueError:
            numeric = [is_number(v) for v in column]
            if not any(numeric):
                ignored.append(name)  # a text column (file names, ids...): not a feature
                continue
            k = numeric.index(False)
            value = column[k]
            what = "a missing value" if not value.strip() else f"{value!r}, which is not a number"
            raise DatasetError(
                f"{where}, line {lines[k]}, column {name!r}: {what} (the column's other "
                "values are numeric, so it is read as a feature)"
            ) from None
        feature_names.append(name)
    if not feature_values:
        return np.empty((len(rows), 0)), feature_names, ignored
    return np.column_stack(feature_values), feature_names, ignored


def _load_csv(path: Path, label_column: str | int | None) -> Dataset:
    where = f"CSV file '{path}'"
    header, header_line, rows, lines = _read_csv_rows(path, where)
    names = _check_header(header, header_line, where)
    label_index = _resolve_csv_label(names, label_column, where)
    if not rows:
        raise DatasetError(
            f"{where} is empty: it has a header (line {header_line}) but no data rows"
        )
    X, feature_names, ignored = _csv_features(rows, lines, names, label_index, where)

    label_text = ""
    y: np.ndarray | None = None
    if label_index is not None:
        label_name = names[label_index]
        y = _csv_labels([r[label_index] for r in rows], lines, label_name, where)
        label_text = f", labels from column {label_name!r}"
    if X.shape[1] == 0:
        raise DatasetError(
            f"{where} has no numeric feature columns; the columns are: {_list_names(names)}"
            + (f" (label column: {names[label_index]!r})" if label_index is not None else "")
        )
    check_finite(X, where, row_label=lambda i: f"line {lines[i]}", feature_names=feature_names)
    description = f"user CSV file: {X.shape[0]} rows, {X.shape[1]} numeric features{label_text}"
    if ignored:
        description += f"; ignored non-numeric columns: {', '.join(ignored)}"
    return Dataset(
        name=path.stem,
        X=X,
        y=y,
        description=description,
        source=str(path.resolve()),
        feature_names=tuple(feature_names),
    )


# --------------------------------------------------------------------------- NPY / NPZ


def _load_npy(path: Path, label_column: str | int | None) -> Dataset:
    X, y, label_text = _read_npy(path, label_column)
    check_finite(X, f"npy file '{path}'")
    return Dataset(
        name=path.stem,
        X=X,
        y=y,
        description=f"user npy file: {X.shape[0]} rows, {X.shape[1]} features{label_text}",
        source=str(path.resolve()),
    )


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


def _load_npz(path: Path, label_column: str | int | None) -> Dataset:
    X, y, label_text, x_key = _read_npz(path, label_column)
    check_finite(X, f"npz file '{path}', array {x_key!r}")
    return Dataset(
        name=path.stem,
        X=X,
        y=y,
        description=f"user npz file: {X.shape[0]} rows, {X.shape[1]} features{label_text}",
        source=str(path.resolve()),
    )


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
                f"{where} has no 'X' (or 'features') array; its keys are: {_list_names(keys)}"
            )
        y_key: str | None = None
        if isinstance(label_column, str):
            if label_column not in keys:
                raise DatasetError(
                    f"{where}: label array {label_column!r} not found; its keys are: "
                    f"{_list_names(keys)}"
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
