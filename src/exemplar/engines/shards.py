"""Shards: the files distributed scoring writes, one per output kind and row range.

A shard holds rows ``start ...`` of one output of a scored pool (``proba``, ``embeddings``,
``utility``, ...). Its name is ``<kind>-<start:012d>.npy`` or ``<kind>-<start:012d>.parquet``
so the shards of a kind sort in row order. An array's *row axis* is the axis that runs
over the pool's rows: 0 for everything except stochastic samples ``(t, n, c)``, whose row
axis is 1 (Baal's layout, stochastic passes first).

- ``npy``: the array as it is (``np.save``, no pickles), memory-mapped on read.
- ``parquet``: a table with one column ``value``, a row per pool row; an array with more
  than one dimension per row is flattened into a fixed-size list, and its per-row shape
  is kept in the schema's metadata (``exemplar.shape``), so reading gives back the same
  dtype and shape, bit for bit.

Writes are atomic (a temporary name, then a rename), so a shard that exists is complete.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np

from exemplar.errors import ConfigError, StoreError

__all__ = [
    "SHARD_FORMATS",
    "ShardFormat",
    "assemble",
    "clear_shards",
    "new_npy",
    "read_shard",
    "shard_path",
    "shard_starts",
    "write_shard",
]

ShardFormat = Literal["npy", "parquet"]
#: The formats a shard may be written in.
SHARD_FORMATS: tuple[str, ...] = ("npy", "parquet")
_KIND = re.compile(r"^[a-z][a-z-]*$")
_SHAPE_KEY = b"exemplar.shape"
_AXIS_KEY = b"exemplar.row_axis"


def _check_format(fmt: str) -> None:
    if fmt not in SHARD_FORMATS:
        raise ConfigError(f"shard format must be one of {', '.join(SHARD_FORMATS)}, got {fmt!r}")


def shard_path(shard_dir: str | Path, kind: str, start: int, fmt: str) -> Path:
    """``<shard_dir>/<kind>-<start:012d>.<fmt>``."""
    _check_format(fmt)
    if not _KIND.match(kind):
        raise StoreError(f"invalid shard kind {kind!r}")
    if start < 0:
        raise StoreError(f"a shard starts at a row >= 0, got {start}")
    return Path(shard_dir) / f"{kind}-{start:012d}.{fmt}"


def write_shard(
    shard_dir: str | Path, kind: str, start: int, array: np.ndarray, fmt: str, row_axis: int = 0
) -> Path:
    """Write one shard atomically and return its path.

    Parameters
    ----------
    shard_dir : path
        The folder of the shards (created if missing).
    kind : str
        The output kind (``proba``, ``embeddings``, ``candidate-samples``...).
    start : int
        The pool row of the shard's first row.
    array : ndarray
        The shard's rows, along ``row_axis``.
    fmt : {"npy", "parquet"}
        The file format.
    row_axis : int, default=0
        The axis of ``array`` that runs over pool rows.
    """
    path = shard_path(shard_dir, kind, start, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    array = np.asarray(array)
    if fmt == "npy":
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    else:
        _write_parquet(tmp, array, row_axis)
    os.replace(tmp, path)
    return path


def _write_parquet(path: Path, array: np.ndarray, row_axis: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.moveaxis(array, row_axis, 0) if array.ndim else array.reshape(1)
    per_row = rows.shape[1:]
    width = int(np.prod(per_row)) if per_row else 1
    flat = np.ascontiguousarray(rows).reshape(-1)
    values = pa.array(flat)
    column = values if not per_row else pa.FixedSizeListArray.from_arrays(values, width)
    metadata = {_SHAPE_KEY: json.dumps(list(per_row)).encode(), _AXIS_KEY: str(row_axis).encode()}
    table = pa.table({"value": column}).replace_schema_metadata(metadata)
    pq.write_table(table, path)


def read_shard(path: str | Path) -> np.ndarray:
    """Read a shard back with its dtype and shape (a ``.npy`` shard is memory-mapped).

    Raises
    ------
    StoreError
        If the file is missing or is not a shard.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"missing shard {path}")
    if path.suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise StoreError(f"corrupt shard {path}: {exc}") from None
    if path.suffix != ".parquet":
        raise StoreError(f"{path} is not a shard (.npy or .parquet)")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"corrupt shard {path}: {exc}") from None
    meta = table.schema.metadata or {}
    if _SHAPE_KEY not in meta or "value" not in table.column_names:
        raise StoreError(f"{path} is a Parquet file but not an exemplar shard")
    per_row = tuple(json.loads(meta[_SHAPE_KEY]))
    row_axis = int(meta.get(_AXIS_KEY, b"0"))
    column = table.column("value").combine_chunks()
    values = column.flatten() if per_row else column
    rows = values.to_numpy(zero_copy_only=False).reshape((table.num_rows, *per_row))
    return np.moveaxis(rows, 0, row_axis)


def shard_starts(shard_dir: str | Path, kind: str, fmt: str) -> list[int]:
    """The first rows of the ``kind`` shards in ``shard_dir``, ascending."""
    _check_format(fmt)
    pattern = re.compile(rf"^{re.escape(kind)}-(\d{{12}})\.{fmt}$")
    root = Path(shard_dir)
    if not root.is_dir():
        return []
    found = (pattern.match(p.name) for p in root.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def clear_shards(shard_dir: str | Path, kinds: tuple[str, ...]) -> int:
    """Delete the shards of ``kinds`` (any format) in ``shard_dir``; return how many.

    Only files named like shards are touched, so a shard folder may hold other files.
    """
    root = Path(shard_dir)
    if not root.is_dir():
        return 0
    names = "|".join(re.escape(k) for k in kinds)
    pattern = re.compile(rf"^(?:{names})-\d{{12}}\.(?:npy|parquet)$")
    removed = 0
    for path in root.iterdir():
        if pattern.match(path.name):
            path.unlink()
            removed += 1
    return removed


@contextmanager
def new_npy(out_path: str | Path, dtype: np.dtype, shape: tuple[int, ...]) -> Iterator[np.memmap]:
    """A new ``.npy`` file at ``out_path``, filled in the block, published at its end.

    The array is written under a temporary name and renamed over ``out_path`` once
    complete (flushed), so the file is always a new one: an array still memory-mapped
    from an earlier file at that path keeps its own data (rewriting that file in place
    would change it under its reader, or kill the reader with SIGBUS if it shrank). On an
    error the temporary file is removed and ``out_path`` is left as it was.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    try:
        yield out
        out.flush()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out_path)


def assemble(
    shard_dir: str | Path,
    kind: str,
    fmt: str,
    starts: list[int],
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    row_axis: int = 0,
    out_path: str | Path | None = None,
    drop: bool = False,
) -> np.ndarray:
    """One array from the ``kind`` shards that start at ``starts``.

    With ``out_path`` the array is a new ``.npy`` file there (:func:`new_npy`), filled
    shard by shard (memory stays bounded by one shard) and returned memory-mapped,
    read-only; without, it is in memory. With ``drop`` each shard is deleted once copied,
    so the disk holds one copy of the output, not two.

    Raises
    ------
    StoreError
        If a shard is missing, or the shards do not cover ``shape`` along ``row_axis``.
    """
    if out_path is None:
        return _fill(np.empty(shape, dtype=dtype), shard_dir, kind, fmt, starts, row_axis, drop)
    with new_npy(out_path, dtype, shape) as out:
        _fill(out, shard_dir, kind, fmt, starts, row_axis, drop)
    return np.load(out_path, mmap_mode="r", allow_pickle=False)


def _fill(
    out: np.ndarray,
    shard_dir: str | Path,
    kind: str,
    fmt: str,
    starts: list[int],
    row_axis: int,
    drop: bool,
) -> np.ndarray:
    """Copy the ``kind`` shards into ``out`` along ``row_axis``; see :func:`assemble`."""
    root = Path(shard_dir)
    shape = out.shape
    row = 0
    for start in starts:
        path = shard_path(root, kind, start, fmt)
        if not path.exists():
            raise StoreError(
                f"missing shard {path}: the worker that wrote it may run on another "
                "machine; the shard folder must be on a file system every node shares"
            )
        part = read_shard(path)
        rows = part.shape[row_axis] if part.ndim else 0
        if start != row or start + rows > shape[row_axis]:
            raise StoreError(f"shard {path} does not continue the rows before it (row {row})")
        index = [slice(None)] * len(shape)
        index[row_axis] = slice(start, start + rows)
        out[tuple(index)] = part
        del part
        if drop:
            path.unlink()
        row = start + rows
    if row != shape[row_axis]:
        raise StoreError(f"the {kind} shards in {root} cover {row} rows of {shape[row_axis]}")
    return out
