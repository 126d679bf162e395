"""Embeddings on disk: open an ``(n, d)`` float32 array without loading it into memory.

Strategies read embeddings chunk by chunk (``emb[start:stop]``, ``emb[rows]``), so a
memory-mapped array is enough for pools far larger than memory (DESIGN.md §4, §9). This
module opens the three on-disk layouts a pipeline usually writes:

* ``.npy``: memory-mapped with ``np.load(mmap_mode="r")``, no copy;
* Arrow IPC (``.arrow``, ``.feather``, ``.ipc``): memory-mapped with pyarrow. One column
  of ``fixed_size_list<float32>`` in a single, uncompressed record batch is a zero-copy
  ``(n, d)`` view of the mapped file (checked: the view must lie inside the mapping).
  Anything else (several batches, a compressed file such as pyarrow's default lz4
  Feather, another layout) goes through the ``.npy`` cache below, batch by batch;
* Parquet (``.parquet``, ``.pq``): compressed and columnar, so it cannot be mapped.

The cache. A file that cannot be mapped as it is is converted once, record batch by
record batch (bounded memory), into a float32 ``.npy`` next to the file (or in
``cache_dir``), which is then memory-mapped. The cache is keyed by the source's path,
the column read, and its size, modification time, inode and change time, so a rewritten
source (even of the same size, with its modification time put back) gets a new cache, and
older caches of the same source are deleted once the new one is in place. Conversion is
safe with several threads or processes at once: each writer fills its own temporary file
(``<cache>.<host>-<pid>.<random>.tmp``, space reserved up front with ``posix_fallocate``
where available, so a full disk is a clean :class:`DatasetError` rather than a crash),
then renames it into place atomically; threads of one process converting the same file
wait for the first one. Temporary files left by killed processes of this host are removed
by the next conversion.

Columns. A Parquet or Arrow file holds the embeddings either as one list column of
numbers (``list``, ``large_list``, ``fixed_size_list`` or list view, e.g. named
``embedding``) or as ``d`` floating-point columns, one per dimension, in order. With
``column=None`` the only list column of numbers is read; the per-dimension form is used
only when the file has no list column at all, and it reads every floating-point column:
integer columns (ids, labels, row numbers) are never taken as dimensions. Anything else
(another dtype in ``.npy``, a 1-D array, rows of different lengths, empty rows, nulls, a
truncated or corrupt file) raises :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import re
import socket
import tempfile
import threading
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
#: One lock per cache file: threads of this process convert a source once.
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
#: This host in temporary file names, so only its own dead processes' files are removed.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TMP_NAME = re.compile(r"\.f32\.npy\.([0-9a-f]{8})-(\d+)\.[^.]*\.tmp$")


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
        list column of numbers or, when the file has no list column, every
        floating-point column in order (one per dimension; integer columns are skipped).
    cache_dir : path-like, optional
        Arrow/Parquet only: an existing, writable directory for the float32 ``.npy``
        cache (default: beside the file).
    check_finite : bool, default=False
        Also scan the whole array, chunk by chunk, for NaN or infinite values (one read
        of the file; strategies check the rows they read anyway).

    Returns
    -------
    ndarray of shape (n, d), float32
        A read-only ``np.memmap`` (``.npy``, cache) or a zero-copy view of a
        memory-mapped Arrow buffer: pages are read from disk as rows are touched.

    Raises
    ------
    DatasetError
        Missing file, unknown suffix, wrong shape or dtype, nulls, an unreadable file, a
        missing ``cache_dir``, or a cache that cannot be written.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"embeddings file not found: {p}")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise DatasetError(f"dim must be a positive integer, got {dim!r}")
    cdir = None if cache_dir is None else Path(cache_dir)
    if cdir is not None and not cdir.is_dir():
        raise DatasetError(
            f"cache_dir {cdir} does not exist or is not a directory; create it, or pass "
            "cache_dir= an existing writable directory"
        )
    suffix = p.suffix.lower()
    if suffix in NPY_SUFFIXES:
        arr = _open_npy(p)
    elif suffix in ARROW_SUFFIXES:
        arr = _open_arrow(p, column, cdir)
    elif suffix in PARQUET_SUFFIXES:
        arr = _open_parquet(p, column, cdir)
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


def _open_arrow(p: Path, column: str | None, cache_dir: Path | None) -> np.ndarray:
    pa = _pyarrow()
    try:
        source = pa.memory_map(str(p), "r")
        reader = pa.ipc.open_file(source)
        schema = reader.schema
        names = _embedding_columns(p, schema, column)
        # A cache exists only for a file that cannot be mapped as it is: reuse it before
        # reading a batch (a compressed batch would be decompressed just to be dropped).
        cache = _cache_path(p, column, cache_dir)
        if cache.is_file():
            return _open_npy(cache)
        first = None
        if len(names) == 1 and reader.num_record_batches == 1:
            first = reader.get_batch(0)
            view = _zero_copy(pa, first.column(schema.get_field_index(names[0])))
            if view is not None and _inside_map(source, view):
                return _check_array(p, view)
        # Several batches, a compressed file (its batches are decompressed into memory),
        # or a layout that is not one contiguous float32 buffer: an in-memory copy would
        # defeat the purpose, so convert into a .npy cache instead, batch by batch.
        n_rows = int(reader.count_rows())
        batches = (
            iter([first])
            if first is not None
            else (reader.get_batch(i) for i in range(reader.num_record_batches))
        )
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
    if values.type != pa.float32() or values.null_count or arr.type.list_size == 0:
        return None
    d = arr.type.list_size
    flat = values.to_numpy(zero_copy_only=True)[arr.offset * d : (arr.offset + len(arr)) * d]
    return flat.reshape(len(arr), d)


def _inside_map(source: Any, view: np.ndarray) -> bool:
    """Does ``view`` point into the memory map ``source`` (not a decompressed copy)?"""
    size = int(source.size())
    pos = source.tell()
    try:
        source.seek(0)
        whole = source.read_buffer(size)  # zero-copy: the mapping itself
    finally:
        source.seek(pos)
    start = int(view.__array_interface__["data"][0])
    return bool(whole.address <= start and start + view.nbytes <= whole.address + whole.size)


# --------------------------------------------------------------------------- Parquet


def _open_parquet(p: Path, column: str | None, cache_dir: Path | None) -> np.ndarray:
    pa = _pyarrow()
    pq = importlib.import_module("pyarrow.parquet")
    try:
        pf = pq.ParquetFile(str(p))
        names = _embedding_columns(p, pf.schema_arrow, column)
        cache = _cache_path(p, column, cache_dir)
        if cache.is_file():
            return _open_npy(cache)
        n_rows = pf.metadata.num_rows
        batches = pf.iter_batches(batch_size=_CHUNK_ROWS, columns=names)
        return _convert(p, pa, batches, names, n_rows, cache)
    except DatasetError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"{p}: not a readable Parquet file ({exc})") from None


# --------------------------------------------------------------------------- columns


_LIST_KINDS = ("is_list", "is_large_list", "is_fixed_size_list", "is_list_view")


def _list_like(pa: Any, t: Any) -> bool:
    """Any Arrow list type (list views only where this pyarrow has them)."""
    kinds = _LIST_KINDS + ("is_large_list_view",)
    return any(getattr(pa.types, k)(t) for k in kinds if hasattr(pa.types, k))


def _numbers(pa: Any, t: Any) -> bool:
    return bool(pa.types.is_floating(t) or pa.types.is_integer(t))


def _embedding_columns(p: Path, schema: Any, column: str | None) -> list[str]:
    pa = _pyarrow()
    if column is not None:
        if column not in schema.names:
            raise DatasetError(f"{p}: no column {column!r}; columns are {schema.names}")
        t = schema.field(column).type
        if not (_list_like(pa, t) and _numbers(pa, t.value_type)):
            raise DatasetError(f"{p}: column {column!r} ({t}) is not a list column of numbers")
        return [column]
    lists = [f for f in schema if _list_like(pa, f.type)]
    vectors = [f.name for f in lists if _numbers(pa, f.type.value_type)]
    if len(vectors) == 1:
        return vectors
    if len(vectors) > 1:
        raise DatasetError(f"{p}: several list columns {vectors}; pass column=")
    if lists:
        raise DatasetError(
            f"{p}: list columns {[f.name for f in lists]} do not hold numbers; embeddings "
            "are one list column of numbers, or one floating-point column per dimension "
            "in a file without list columns"
        )
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    if not floats:
        ints = [f.name for f in schema if pa.types.is_integer(f.type)]
        hint = f"; integer columns {ints} are never read as dimensions" if ints else ""
        raise DatasetError(
            f"{p}: no list column of numbers and no floating-point columns to read "
            f"embeddings from{hint}"
        )
    return floats


def _batch_block(p: Path, pa: Any, batch: Any, names: list[str], row0: int = 0) -> np.ndarray:
    """One record batch as a float32 (rows, d) block; ``row0`` numbers its first row."""
    field = batch.schema.field(names[0])
    if len(names) == 1 and _list_like(pa, field.type):
        col = batch.column(batch.schema.get_field_index(names[0]))
        if col.null_count:
            raise DatasetError(f"{p}: column {names[0]!r} holds null rows")
        if pa.types.is_fixed_size_list(col.type):
            d = int(col.type.list_size)
        else:
            pc = importlib.import_module("pyarrow.compute")
            lengths = np.asarray(pc.list_value_length(col).to_numpy(zero_copy_only=False))
            if lengths.size and (lengths == 0).any():
                row = row0 + int(np.flatnonzero(lengths == 0)[0])
                raise DatasetError(
                    f"{p}: row {row} of column {names[0]!r} is an empty list; every "
                    "embedding needs at least one value"
                )
            if lengths.size and (lengths != lengths[0]).any():
                row = row0 + int(np.flatnonzero(lengths != lengths[0])[0])
                raise DatasetError(
                    f"{p}: embedding rows have different lengths (row {row} has "
                    f"{int(lengths[row - row0])}, row {row0} has {int(lengths[0])})"
                )
            d = int(lengths[0]) if lengths.size else 0
        if len(col) and d == 0:
            raise DatasetError(f"{p}: embeddings have 0 dimensions")
        flat = col.flatten()
        if flat.null_count:
            raise DatasetError(f"{p}: embeddings hold null values")
        values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32)
        return values.reshape(len(col), d)
    cols = []
    for name in names:
        col = batch.column(batch.schema.get_field_index(name))
        if col.null_count:
            raise DatasetError(f"{p}: column {name!r} holds null values")
        cols.append(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float32))
    return np.stack(cols, axis=1)


# --------------------------------------------------------------------------- cache


def _cache_path(p: Path, column: str | None, cache_dir: Path | None) -> Path:
    """The .npy cache of ``p``: ``<stem>.<source>.<state>.f32.npy``.

    ``source`` hashes the resolved path and the column read (it names every cache of this
    source, old ones included); ``state`` hashes the size, modification time, inode and
    change time, so any rewrite of the source gets a new cache.
    """
    st = p.stat()
    source = hashlib.sha256(f"{p.resolve()}|{column}".encode()).hexdigest()[:8]
    state = f"{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_ctime_ns}"
    digest = hashlib.sha256(state.encode()).hexdigest()[:12]
    return (cache_dir or p.parent) / f"{p.stem}.{source}.{digest}.f32.npy"


def _siblings(cache: Path, suffix: str) -> Iterator[Path]:
    """Files of the same source as ``cache`` (any state) whose names end with ``suffix``."""
    stem, source = _stem_source(cache)
    prefix = f"{stem}.{source}."
    for entry in cache.parent.iterdir():
        if entry.name.startswith(prefix) and entry.name.endswith(suffix) and entry != cache:
            yield entry


def _stem_source(cache: Path) -> tuple[str, str]:
    parts = cache.name[: -len(".f32.npy")].rsplit(".", 2)
    return parts[0], parts[1]


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # no safe probe: keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _remove_dead_temporaries(cache: Path) -> None:
    """Remove temporary files of this source left by dead processes of this host."""
    for entry in _siblings(cache, ".tmp"):
        match = _TMP_NAME.search(entry.name)
        if match and match.group(1) == _HOST and not _pid_alive(int(match.group(2))):
            entry.unlink(missing_ok=True)


def _remove_older_caches(cache: Path) -> None:
    """Delete the caches of earlier states of this source (best effort)."""
    for entry in _siblings(cache, ".f32.npy"):
        try:
            entry.unlink()
        except OSError:  # in use on a platform that refuses, or already gone
            pass


def _path_lock(cache: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(cache), threading.Lock())


def _cache_error(p: Path, where: Path, exc: OSError) -> DatasetError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        reason = "not enough free disk space"
    return DatasetError(
        f"{p}: cannot write the embeddings cache in {where} ({reason}); pass cache_dir= a "
        "writable directory with room for n·d·4 bytes"
    )


def _reserve(p: Path, tmp: Path) -> None:
    """Allocate the whole temporary file now, so a full disk fails here, not as SIGBUS."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return  # a file system without fallocate: fill as usual
        raise _cache_error(p, tmp.parent, exc) from None
    finally:
        os.close(fd)


def _convert(
    p: Path, pa: Any, batches: Iterator[Any], names: list[str], n_rows: int, cache: Path
) -> np.ndarray:
    """Stream record batches into a float32 .npy at ``cache`` (atomically), then map it."""
    if n_rows == 0:
        raise DatasetError(f"{p}: the embeddings file holds no rows")
    with _path_lock(cache):
        if cache.is_file():  # another thread converted it meanwhile
            return _open_npy(cache)
        try:
            _remove_dead_temporaries(cache)
            fd, name = tempfile.mkstemp(
                prefix=f"{cache.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=cache.parent
            )
            os.close(fd)
        except OSError as exc:
            raise _cache_error(p, cache.parent, exc) from None
        tmp = Path(name)
        try:
            _fill(p, pa, batches, names, n_rows, tmp)
            try:
                os.replace(tmp, cache)
            except OSError as exc:
                if not cache.is_file():  # not a lost race with another writer
                    raise _cache_error(p, cache.parent, exc) from None
                tmp.unlink(missing_ok=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _remove_older_caches(cache)
    return _open_npy(cache)


def _fill(
    p: Path, pa: Any, batches: Iterator[Any], names: list[str], n_rows: int, tmp: Path
) -> None:
    out: np.memmap | None = None
    start = 0
    for batch in batches:
        block = _batch_block(p, pa, batch, names, start)
        if block.shape[0] == 0:
            continue
        if out is None:
            if block.shape[1] == 0:
                raise DatasetError(f"{p}: embeddings have 0 dimensions")
            try:
                out = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=np.float32, shape=(n_rows, block.shape[1])
                )
            except OSError as exc:
                raise _cache_error(p, tmp.parent, exc) from None
            _reserve(p, tmp)
        if block.shape[1] != out.shape[1]:
            raise DatasetError(
                f"{p}: embedding rows have different lengths (row {start} has "
                f"{block.shape[1]}, row 0 has {out.shape[1]})"
            )
        if start + block.shape[0] > n_rows:
            raise DatasetError(f"{p}: the file holds more rows than the {n_rows} it declares")
        out[start : start + block.shape[0]] = block
        start += block.shape[0]
    if out is None or start != n_rows:
        raise DatasetError(f"{p}: read {start} rows, the file declares {n_rows}")
    try:
        out.flush()
    except OSError as exc:
        raise _cache_error(p, tmp.parent, exc) from None
    del out
