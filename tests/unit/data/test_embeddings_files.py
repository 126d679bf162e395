"""Embeddings on disk: .npy, Arrow IPC and Parquet open as (n, d) float32 arrays."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from exemplar.data.embeddings import create_embeddings, open_embeddings
from exemplar.errors import DatasetError
from exemplar.predictions import Predictions
from exemplar.strategies import get_strategy

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


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
    with pytest.raises(DatasetError, match="no numeric columns"):
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
