"""Embeddings on disk: open an ``(n, d)`` float32 array without loading it into memory.

Strategies read embeddings chunk by chunk (``emb[start:stop]``, ``emb[rows]``), so a
memory-mapped array is enough for pools far larger than memory (DESIGN.md §4, §9). This
module opens the three on-disk layouts a pipeline usually writes:

* ``.npy``: memory-mapped with ``np.load(mmap_mode="r")``, no copy;
* Arrow IPC (``.arrow``, ``.feather``, ``.ipc``, uncompressed): memory-mapped with
  pyarrow; one column of ``fixed_size_list<float32>`` in a single record batch is a
  zero-copy ``(n, d)`` view;
* Parquet (``.parquet``, ``.pq``): compressed and columnar, so it cannot be mapped. It is
  converted once, row group by row group (bounded memory), into a float32 ``.npy`` cache
  next to the file (or in ``cache_dir``), which is then memory-mapped; the cache is
  reused while the source file is unchanged (same size and modification time).

A Parquet or Arrow file holds the embeddings either as one list column (``list<float>``
or ``fixed_size_list<float>``, e.g. named ``embedding``) or as ``d`` numeric columns, one
per dimension, in order. Anything else (another dtype in ``.npy``, a 1-D array, rows of
different lengths, nulls, a truncated or corrupt file) raises :class:`DatasetError` naming
the file.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from exemplar.errors import DatasetError

__all__ = ["EMBEDDING_SUFFIXES", "create_embeddings", "open_embeddings"]

NPY_SUFFIXES = (".npy",)
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: File suffixes :func:`open_embeddings` reads.
EMBEDDING_SUFFIXES = NPY_SUFFIXES + ARROW_SUFFIXES + PARQUET_SUFFIXES
#: Rows per chunk when a file is validated or converted.
_CHUNK_ROWS = 65536


def open_embeddings(
    path: str | os.PathLike[str],
    *,
    dim: int | None = None,
    column: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    check_finite: bool = False,
) -> np.ndarray:
    """Open an embeddings file as a read-only, on-disk ``(n, d)`` float32 array.

    Parameters
    ----------
    path : path-like
        A ``.npy``, Arrow IPC (``.arrow``/``.feather``/``.ipc``) or Parquet
        (``.parquet``/``.pq``) file.
    dim : int, optional
        Expected number of dimensions ``d``; a file with another width is refused.
    column : str, optional
        Arrow/Parquet only: the list column holding the embeddings. None takes the only
        list column, or else every numeric column in order (one per dimension).
    cache_dir : path-like, optional
        Parquet only: where the float32 ``.npy`` cache is written (default: beside the
        file).
    check_finite : bool, default=False
        Also scan the whole array, chunk by chunk, for NaN or infinite values (one read
        of the file; strategies check the rows they read anyway).

    Returns
    -------
    ndarray of shape (n, d), float32
        A read-only ``np.memmap`` (``.npy``, Parquet cache) or a zero-copy view of a
        memory-mapped Arrow buffer: pages are read from disk as rows are touched.

    Raises
    ------
    DatasetError
        Missing file, unknown suffix, wrong shape or dtype, nulls, or an unreadable file.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"embeddings file not found: {p}")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise DatasetError(f"dim must be a positive integer, got {dim!r}")
    suffix = p.suffix.lower()
    if suffix in NPY_SUFFIXES:
        arr = _open_npy(p)
    elif suffix in ARROW_SUFFIXES:
        arr = _open_arrow(p, column)
    elif suffix in PARQUET_SUFFIXES:
        arr = _open_parquet(p, column, Path(cache_dir) if cache_dir is not None else None)
    else:
        raise DatasetError(
            f"{p}: unknown embeddings format {suffix!r}; expected one of "
            f"{', '.join(EMBEDDING_SUFFIXES)}"
        )
    if arr.shape[0] == 0:
        raise DatasetError(f"{p}: the embeddings file holds no rows")
    if dim is not None and arr.shape[1] != dim:
        raise DatasetError(f"{p}: embeddings have {arr.shape[1]} dimensions, expected {dim}")
    if check_finite:
        for start in range(0, arr.shape[0], _CHUNK_ROWS):
            if not np.isfinite(arr[start : start + _CHUNK_ROWS]).all():
                raise DatasetError(f"{p}: embeddings contain NaN or infinite values")
    return arr


def create_embeddings(path: str | os.PathLike[str], n: int, d: int) -> np.memmap:
    """A new float32 ``.npy`` file of shape ``(n, d)``, memory-mapped for writing in chunks.

    Fill it slice by slice (``arr[start:stop] = block``), then ``arr.flush()``; open it
    later with :func:`open_embeddings`.
    """
    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise DatasetError(f"{p}: create_embeddings writes .npy files only")
    if n < 1 or d < 1:
        raise DatasetError(f"embeddings need n >= 1 rows and d >= 1 dimensions, got ({n}, {d})")
    out: np.memmap = np.lib.format.open_memmap(p, mode="w+", dtype=np.float32, shape=(n, d))
    return out


# --------------------------------------------------------------------------- .npy


def _open_npy(p: Path) -> np.ndarray:
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{p}: not a readable .npy file ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise DatasetError(f"{p}: expected one array, got {type(arr).__name__}")
    return _check_array(p, arr)


def _check_array(p: Path, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != 2:
        raise DatasetError(f"{p}: embeddings must be a 2-D (n, d) array, got shape {arr.shape}")
    if arr.dtype != np.float32:
        raise DatasetError(
            f"{p}: embeddings must be float32, got {arr.dtype}; convert once, e.g. "
            "np.save(path, arr.astype(np.float32))"
        )
    if arr.shape[1] == 0:
        raise DatasetError(f"{p}: embeddings have 0 dimensions")
    return arr


# --------------------------------------------------------------------------- Arrow


def _pyarrow() -> Any:
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise DatasetError(
            "reading Arrow or Parquet embeddings needs pyarrow: pip install 'exemplar[ray]' "
            "or pip install pyarrow"
        ) from None


def _open_arrow(p: Path, column: str | None) -> np.ndarray:
    pa = _pyarrow()
    try:
        source = pa.memory_map(str(p), "r")
        reader = pa.ipc.open_file(source)
        schema = reader.schema
        names = _embedding_columns(p, schema, column)
        if len(names) == 1 and reader.num_record_batches == 1:
            view = _zero_copy(pa, reader.get_batch(0).column(schema.get_field_index(names[0])))
            if view is not None:
                return _check_array(p, view)
        # Several batches, or a layout that is not one contiguous float32 buffer: an
        # in-memory copy would defeat the purpose, so convert into a .npy cache instead.
        cache = _cache_path(p, column, None)
        if cache.is_file():
            return _open_npy(cache)
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        n_rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return _convert(p, pa, batches, names, n_rows, cache)
    except DatasetError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"{p}: not a readable Arrow IPC file ({exc})") from None


def _zero_copy(pa: Any, arr: Any) -> np.ndarray | None:
    """An (n, d) float32 view of a fixed_size_list<float32> array with no nulls, or None."""
    if not pa.types.is_fixed_size_list(arr.type) or arr.null_count:
        return None
    values = arr.values
    if values.type != pa.float32() or values.null_count:
        return None
    d = arr.type.list_size
    flat = values.to_numpy(zero_copy_only=True)[arr.offset * d : (arr.offset + len(arr)) * d]
    return flat.reshape(len(arr), d)


# --------------------------------------------------------------------------- Parquet


def _open_parquet(p: Path, column: str | None, cache_dir: Path | None) -> np.ndarray:
    pa = _pyarrow()
    pq = importlib.import_module("pyarrow.parquet")
    cache = _cache_path(p, column, cache_dir)
    if cache.is_file():
        return _open_npy(cache)
    try:
        pf = pq.ParquetFile(str(p))
        names = _embedding_columns(p, pf.schema_arrow, column)
        n_rows = pf.metadata.num_rows
        batches = pf.iter_batches(batch_size=_CHUNK_ROWS, columns=names)
        return _convert(p, pa, batches, names, n_rows, cache)
    except DatasetError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"{p}: not a readable Parquet file ({exc})") from None


def _cache_path(p: Path, column: str | None, cache_dir: Path | None) -> Path:
    """The .npy cache of ``p``: keyed by the source's size, mtime and the column read."""
    st = p.stat()
    key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{column}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    return (cache_dir or p.parent) / f"{p.stem}.{digest}.f32.npy"


def _embedding_columns(p: Path, schema: Any, column: str | None) -> list[str]:
    pa = _pyarrow()

    def is_list(t: Any) -> bool:
        return bool(pa.types.is_list(t) or pa.types.is_fixed_size_list(t))

    if column is not None:
        if column not in schema.names:
            raise DatasetError(f"{p}: no column {column!r}; columns are {schema.names}")
        if not is_list(schema.field(column).type):
            raise DatasetError(f"{p}: column {column!r} is not a list column of floats")
        return [column]
    lists = [f.name for f in schema if is_list(f.type)]
    if len(lists) == 1:
        return lists
    if len(lists) > 1:
        raise DatasetError(f"{p}: several list columns {lists}; pass column=")
    numeric = [
        f.name for f in schema if pa.types.is_floating(f.type) or pa.types.is_integer(f.type)
    ]
    if not numeric:
        raise DatasetError(f"{p}: no list column and no numeric columns to read embeddings from")
    return numeric


def _batch_block(p: Path, pa: Any, batch: Any, names: list[str]) -> np.ndarray:
    """One record batch as a float32 (rows, d) block."""
    if len(names) == 1 and (
        pa.types.is_list(batch.schema.field(names[0]).type)
        or pa.types.is_fixed_size_list(batch.schema.field(names[0]).type)
    ):
        col = batch.column(batch.schema.get_field_index(names[0]))
        if col.null_count:
            raise DatasetError(f"{p}: column {names[0]!r} holds null rows")
        lengths = (
            np.full(len(col), col.type.list_size)
            if pa.types.is_fixed_size_list(col.type)
            else np.diff(col.offsets.to_numpy())
        )
        if lengths.size and (lengths != lengths[0]).any():
            raise DatasetError(f"{p}: embedding rows have different lengths")
        flat = col.flatten()
        if flat.null_count:
            raise DatasetError(f"{p}: embeddings hold null values")
        d = int(lengths[0]) if lengths.size else 0
        return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, d)
    cols = []
    for name in names:
        col = batch.column(batch.schema.get_field_index(name))
        if col.null_count:
            raise DatasetError(f"{p}: column {name!r} holds null values")
        cols.append(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float32))
    return np.stack(cols, axis=1)


def _convert(
    p: Path, pa: Any, batches: Iterator[Any], names: list[str], n_rows: int, cache: Path
) -> np.ndarray:
    """Stream record batches into a float32 .npy at ``cache`` (atomically), then map it."""
    if n_rows == 0:
        raise DatasetError(f"{p}: the embeddings file holds no rows")
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    out: np.memmap | None = None
    start = 0
    try:
        for batch in batches:
            block = _batch_block(p, pa, batch, names)
            if block.shape[0] == 0:
                continue
            if out is None:
                if block.shape[1] == 0:
                    raise DatasetError(f"{p}: embeddings have 0 dimensions")
                out = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=np.float32, shape=(n_rows, block.shape[1])
                )
            if block.shape[1] != out.shape[1]:
                raise DatasetError(f"{p}: embedding rows have different lengths")
            out[start : start + block.shape[0]] = block
            start += block.shape[0]
        if out is None or start != n_rows:
            raise DatasetError(f"{p}: read {start} rows, the file declares {n_rows}")
        out.flush()
        del out
        os.replace(tmp, cache)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _open_npy(cache)
