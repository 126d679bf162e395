"""Embeddings on disk: .npy, Arrow IPC and Parquet open as (n, d) float32 arrays."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import exemplar
from exemplar.data import embeddings as embeddings_module
from exemplar.data.embeddings import create_embeddings, open_embeddings
from exemplar.errors import DatasetError
from exemplar.predictions import Predictions
from exemplar.strategies import get_strategy

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
feather = pytest.importorskip("pyarrow.feather")


def _emb(n: int = 300, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _list_table(x: np.ndarray, fixed: bool = True) -> Any:
    flat = pa.array(x.ravel(), type=pa.float32())
    if fixed:
        col = pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
    else:
        offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
        col = pa.ListArray.from_arrays(offsets, flat)
    return pa.table({"id": np.arange(x.shape[0]), "embedding": col})


def test_npy_is_memory_mapped_read_only_and_usable_by_strategies(tmp_path: Path) -> None:
    x = _emb()
    np.save(tmp_path / "e.npy", x)
    arr = open_embeddings(tmp_path / "e.npy", dim=8)
    assert isinstance(arr, np.memmap) and arr.dtype == np.float32 and arr.shape == (300, 8)
    assert not arr.flags.writeable
    np.testing.assert_array_equal(arr, x)
    preds = Predictions(embeddings=arr)
    on_disk = get_strategy("coreset").query(preds, labeled=np.arange(5), batch_size=4)
    in_memory = get_strategy("coreset").query(
        Predictions(embeddings=x), labeled=np.arange(5), batch_size=4
    )
    np.testing.assert_array_equal(on_disk, in_memory)


def test_create_embeddings_writes_in_chunks(tmp_path: Path) -> None:
    x = _emb(100, 4)
    out = create_embeddings(tmp_path / "c.npy", 100, 4)
    for start in range(0, 100, 30):
        out[start : start + 30] = x[start : start + 30]
    out.flush()
    del out
    np.testing.assert_array_equal(open_embeddings(tmp_path / "c.npy"), x)
    with pytest.raises(DatasetError, match=".npy files only"):
        create_embeddings(tmp_path / "c.parquet", 10, 4)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((10, 4), np.float64), "must be float32, got float64"),
        (np.zeros(10, np.float32), "must be a 2-D"),
        (np.zeros((0, 4), np.float32), "holds no rows"),
    ],
)
def test_npy_with_wrong_dtype_or_shape_is_refused(
    tmp_path: Path, array: np.ndarray, message: str
) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DatasetError, match=message):
        open_embeddings(tmp_path / "bad.npy")


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", _emb())
    with pytest.raises(DatasetError, match="8 dimensions, expected 16"):
        open_embeddings(tmp_path / "e.npy", dim=16)
    with pytest.raises(DatasetError, match="not found"):
        open_embeddings(tmp_path / "missing.npy")
    (tmp_path / "e.csv").write_text("1,2\n")
    with pytest.raises(DatasetError, match="unknown embeddings format '.csv'"):
        open_embeddings(tmp_path / "e.csv")
    (tmp_path / "garbage.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(DatasetError, match="garbage.npy: not a readable .npy"):
        open_embeddings(tmp_path / "garbage.npy")
    data = (tmp_path / "e.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DatasetError, match="cut.npy"):
        open_embeddings(tmp_path / "cut.npy")
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 broken")
    with pytest.raises(DatasetError, match="garbage.parquet: not a readable Parquet"):
        open_embeddings(tmp_path / "garbage.parquet")
    (tmp_path / "garbage.arrow").write_bytes(b"ARROW1 broken")
    with pytest.raises(DatasetError, match="garbage.arrow: not a readable Arrow"):
        open_embeddings(tmp_path / "garbage.arrow")


def test_check_finite_scans_the_file(tmp_path: Path) -> None:
    x = _emb()
    x[250, 3] = np.nan
    np.save(tmp_path / "nan.npy", x)
    assert open_embeddings(tmp_path / "nan.npy").shape == (300, 8)  # not scanned by default
    with pytest.raises(DatasetError, match="NaN or infinite"):
        open_embeddings(tmp_path / "nan.npy", check_finite=True)


@pytest.mark.parametrize("fixed", [True, False])
def test_parquet_list_column_is_converted_once_to_a_mapped_cache(
    tmp_path: Path, fixed: bool
) -> None:
    x = _emb(1000, 6)
    src = tmp_path / "e.parquet"
    pq.write_table(_list_table(x, fixed), src, row_group_size=128)
    arr = open_embeddings(src, dim=6)
    assert isinstance(arr, np.memmap) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, x)
    caches = list(tmp_path.glob("e.*.f32.npy"))
    assert len(caches) == 1
    stamp = caches[0].stat().st_mtime_ns
    np.testing.assert_array_equal(open_embeddings(src), x)
    assert caches[0].stat().st_mtime_ns == stamp  # reused, not rewritten
    # A changed source gets a new cache with its new values.
    y = _emb(1000, 6, seed=1)
    pq.write_table(_list_table(y, fixed), src)
    os.utime(src, ns=(stamp + 10**9, stamp + 10**9))
    np.testing.assert_array_equal(open_embeddings(src), y)


def test_parquet_numeric_columns_and_cache_dir(tmp_path: Path) -> None:
    x = _emb(50, 3)
    table = pa.table({f"d{j}": x[:, j].astype(np.float64) for j in range(3)})
    pq.write_table(table, tmp_path / "cols.parquet")
    cache = tmp_path / "cache"
    cache.mkdir()
    arr = open_embeddings(tmp_path / "cols.parquet", cache_dir=cache)
    np.testing.assert_allclose(arr, x)
    assert len(list(cache.glob("*.f32.npy"))) == 1


def test_parquet_layout_errors(tmp_path: Path) -> None:
    ragged = pa.table({"embedding": pa.array([[1.0, 2.0], [3.0]], type=pa.list_(pa.float32()))})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    with pytest.raises(DatasetError, match="different lengths"):
        open_embeddings(tmp_path / "ragged.parquet")
    nulls = pa.table({"embedding": pa.array([[1.0, 2.0], None], type=pa.list_(pa.float32()))})
    pq.write_table(nulls, tmp_path / "nulls.parquet")
    with pytest.raises(DatasetError, match="null"):
        open_embeddings(tmp_path / "nulls.parquet")
    two = pa.table(
        {
            "a": pa.array([[1.0, 2.0]], type=pa.list_(pa.float32())),
            "b": pa.array([[3.0, 4.0]], type=pa.list_(pa.float32())),
        }
    )
    pq.write_table(two, tmp_path / "two.parquet")
    with pytest.raises(DatasetError, match="several list columns"):
        open_embeddings(tmp_path / "two.parquet")
    np.testing.assert_array_equal(open_embeddings(tmp_path / "two.parquet", column="b"), [[3, 4]])
    with pytest.raises(DatasetError, match="no column 'c'"):
        open_embeddings(tmp_path / "two.parquet", column="c")
    pq.write_table(pa.table({"name": ["x", "y"]}), tmp_path / "text.parquet")
    with pytest.raises(DatasetError, match="no floating-point columns"):
        open_embeddings(tmp_path / "text.parquet")
    assert not list(tmp_path.glob("*.tmp"))  # failed conversions leave nothing behind


def test_arrow_ipc_single_batch_is_a_zero_copy_view(tmp_path: Path) -> None:
    x = _emb(400, 5)
    path = tmp_path / "e.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, _list_table(x).schema) as w:
        w.write_table(_list_table(x))
    arr = open_embeddings(path, dim=5)
    np.testing.assert_array_equal(arr, x)
    assert not arr.flags.owndata and not isinstance(arr, np.memmap)  # a view of the map
    assert not list(tmp_path.glob("*.f32.npy"))  # no cache needed


def test_arrow_ipc_several_batches_go_through_a_cache(tmp_path: Path) -> None:
    x = _emb(400, 5)
    table = _list_table(x)
    path = tmp_path / "multi.feather"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        for batch in table.to_batches(max_chunksize=100):
            w.write_batch(batch)
    arr = open_embeddings(path)
    assert isinstance(arr, np.memmap)
    np.testing.assert_array_equal(arr, x)
    assert len(list(tmp_path.glob("multi.*.f32.npy"))) == 1


def test_arrow_ipc_several_batches_honour_cache_dir(tmp_path: Path) -> None:
    x = _emb(300, 4)
    table = _list_table(x)
    path = tmp_path / "multi.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        for batch in table.to_batches(max_chunksize=100):
            w.write_batch(batch)
    cache = tmp_path / "cache"
    cache.mkdir()
    np.testing.assert_array_equal(open_embeddings(path, cache_dir=cache), x)
    assert len(list(cache.glob("multi.*.f32.npy"))) == 1
    assert not list(tmp_path.glob("multi.*.f32.npy"))  # nothing beside the file


def _file_offset(path: Path, x: np.ndarray) -> int:
    offset = path.read_bytes().find(x[:4].tobytes())
    assert offset >= 0
    return offset


def test_arrow_zero_copy_view_really_maps_the_file(tmp_path: Path) -> None:
    """Bytes written to the file show through the array: it is the mapping, not a copy."""
    x = _emb(400, 5)
    path = tmp_path / "e.feather"
    feather.write_feather(
        pa.table({"embedding": _list_table(x)["embedding"]}), path, compression="uncompressed"
    )
    arr = open_embeddings(path)
    np.testing.assert_array_equal(arr, x)
    with open(path, "r+b") as f:  # rewrite row 0 in place
        f.seek(_file_offset(path, x))
        f.write(np.full(5, 7.0, np.float32).tobytes())
    np.testing.assert_array_equal(arr[0], np.full(5, 7.0, np.float32))
    assert not list(tmp_path.glob("*.f32.npy"))


def test_compressed_feather_goes_through_the_cache(tmp_path: Path) -> None:
    """lz4 (pyarrow's Feather default) is decompressed into memory: never claimed mapped."""
    x = np.repeat(_emb(50, 6), 20, axis=0)  # compressible, so lz4 really compresses
    path = tmp_path / "e.feather"
    feather.write_feather(pa.table({"embedding": _list_table(x)["embedding"]}), path)
    assert path.stat().st_size < x.nbytes  # compressed on disk
    arr = open_embeddings(path, dim=6)
    assert isinstance(arr, np.memmap)
    np.testing.assert_array_equal(arr, x)
    caches = list(tmp_path.glob("e.*.f32.npy"))
    assert len(caches) == 1
    np.testing.assert_array_equal(np.load(caches[0], mmap_mode="r"), x)


def test_large_list_column_is_read_and_integer_columns_are_not_dimensions(
    tmp_path: Path,
) -> None:
    x = _emb(100, 8)
    large = pa.LargeListArray.from_arrays(
        pa.array(np.arange(0, 801, 8, dtype=np.int64)), pa.array(x.ravel())
    )
    pq.write_table(pa.table({"id": np.arange(100), "embedding": large}), tmp_path / "l.parquet")
    np.testing.assert_array_equal(open_embeddings(tmp_path / "l.parquet", dim=8), x)
    np.testing.assert_array_equal(open_embeddings(tmp_path / "l.parquet", column="embedding"), x)
    # Per-dimension columns: the integer id and label columns are not dimensions.
    cols = {"id": np.arange(100), **{f"f{j}": x[:, j] for j in range(8)}, "label": np.ones(100)}
    cols["label"] = np.ones(100, dtype=np.int64)
    pq.write_table(pa.table(cols), tmp_path / "cols.parquet")
    np.testing.assert_array_equal(open_embeddings(tmp_path / "cols.parquet", dim=8), x)
    pq.write_table(pa.table({"id": np.arange(3), "label": np.arange(3)}), tmp_path / "ids.pq")
    with pytest.raises(DatasetError, match=r"integer columns \['id', 'label'\] are never"):
        open_embeddings(tmp_path / "ids.pq")


def test_a_list_column_of_other_things_refuses_the_per_dimension_fallback(
    tmp_path: Path,
) -> None:
    table = pa.table({"tags": pa.array([["a"], ["b"]]), "f0": [1.0, 2.0], "f1": [3.0, 4.0]})
    pq.write_table(table, tmp_path / "tags.parquet")
    with pytest.raises(DatasetError, match=r"list columns \['tags'\] do not hold numbers"):
        open_embeddings(tmp_path / "tags.parquet")
    with pytest.raises(DatasetError, match="'tags' .* is not a list column of numbers"):
        open_embeddings(tmp_path / "tags.parquet", column="tags")


def test_empty_list_rows_are_a_clear_error(tmp_path: Path) -> None:
    rows = pa.array([[1.0, 2.0], [3.0, 4.0], []], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"embedding": rows}), tmp_path / "one.parquet")
    with pytest.raises(DatasetError, match="row 2 of column 'embedding' is an empty list"):
        open_embeddings(tmp_path / "one.parquet")
    empty = pa.array([[], []], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"embedding": empty}), tmp_path / "all.parquet")
    with pytest.raises(DatasetError, match="row 0 of column 'embedding' is an empty list"):
        open_embeddings(tmp_path / "all.parquet")
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.f32.npy"))


def test_rewrite_of_the_same_size_with_the_old_mtime_gets_a_new_cache(tmp_path: Path) -> None:
    x = _emb(500, 4)
    src = tmp_path / "e.parquet"
    pq.write_table(_list_table(x), src)
    np.testing.assert_array_equal(open_embeddings(src), x)
    before = src.stat()
    y = x.copy()
    y[0, 0] = 123.0  # same size on disk, other values
    pq.write_table(_list_table(y), src)
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert src.stat().st_size == before.st_size and src.stat().st_mtime_ns == before.st_mtime_ns
    np.testing.assert_array_equal(open_embeddings(src), y)
    assert len(list(tmp_path.glob("e.*.f32.npy"))) == 1  # the stale cache was deleted


def test_missing_or_unwritable_cache_dir_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "e.parquet"
    pq.write_table(_list_table(_emb(20, 3)), src)
    with pytest.raises(DatasetError, match=r"cache_dir .*nope does not exist.*cache_dir="):
        open_embeddings(src, cache_dir=tmp_path / "nope")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(embeddings_module.tempfile, "mkstemp", refuse)
    with pytest.raises(
        DatasetError, match=rf"cache in {tmp_path} \(Permission denied\).*cache_dir="
    ):
        open_embeddings(src)


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_a_full_disk_is_a_clean_error_before_any_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "e.parquet"
    pq.write_table(_list_table(_emb(200, 3)), src)
    sizes: list[int] = []

    def full(fd: int, offset: int, length: int) -> None:
        sizes.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(embeddings_module.os, "posix_fallocate", full)
    with pytest.raises(DatasetError, match="not enough free disk space.*cache_dir="):
        open_embeddings(src)
    assert sizes and sizes[0] >= 200 * 3 * 4  # the whole file is reserved up front
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.f32.npy"))


def test_a_lost_rename_race_counts_as_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _emb(200, 3)
    src = tmp_path / "e.parquet"
    pq.write_table(_list_table(x), src)
    real_replace = os.replace

    def other_writer_won(a: Any, b: Any) -> None:
        real_replace(a, b)  # another writer put the cache in place first ...
        raise PermissionError(errno.EACCES, "in use")  # ... and ours is refused

    monkeypatch.setattr(embeddings_module.os, "replace", other_writer_won)
    np.testing.assert_array_equal(open_embeddings(src), x)
    assert not list(tmp_path.glob("*.tmp"))


def test_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    x = _emb(100, 3)
    src = tmp_path / "e.parquet"
    pq.write_table(_list_table(x), src)
    cache = embeddings_module._cache_path(src, None, None)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = embeddings_module._HOST
    stale = tmp_path / f"{cache.name}.{host}-{int(dead.stdout)}.abc123.tmp"
    live = tmp_path / f"{cache.name}.{host}-{os.getpid()}.def456.tmp"
    other_host = tmp_path / f"{cache.name}.0000beef-{int(dead.stdout)}.ghi789.tmp"
    for f in (stale, live, other_host):
        f.write_bytes(b"partial")
    np.testing.assert_array_equal(open_embeddings(src), x)
    assert not stale.exists()
    assert live.exists() and other_host.exists()  # a live writer's, another host's


_THREADS = """
import sys, threading, time
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from exemplar.data import embeddings as E
src = sys.argv[1]
x = np.random.default_rng(0).normal(size=(8000, 8)).astype(np.float32)
col = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 8)
pq.write_table(pa.table({"embedding": col}), src, row_group_size=500)
E._CHUNK_ROWS = 500
slow = E._batch_block
def block(*args):
    time.sleep(0.01)  # keep the conversions overlapping
    return slow(*args)
E._batch_block = block
barrier = threading.Barrier(4)
ok = []
def go():
    barrier.wait()
    ok.append(np.array_equal(E.open_embeddings(src), x))
threads = [threading.Thread(target=go) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(ok)
"""


def test_threads_converting_the_same_file_at_once(tmp_path: Path) -> None:
    """They once shared one temporary file and crashed (SIGBUS) or failed to rename."""
    src_root = Path(exemplar.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(src_root))
    run = subprocess.run(
        [sys.executable, "-c", _THREADS, str(tmp_path / "t.parquet")],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[True, True, True, True]"
    assert len(list(tmp_path.glob("t.*.f32.npy"))) == 1
    assert not list(tmp_path.glob("*.tmp"))
