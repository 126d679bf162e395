"""Shards round-trip bit for bit in both formats; a gap or a foreign file is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exemplar.engines.ray_scoring import _assemble, _file_of, _Job, _score_range
from exemplar.engines.shards import (
    assemble,
    clear_shards,
    read_shard,
    shard_path,
    shard_starts,
    write_shard,
)
from exemplar.errors import ConfigError, StoreError
from exemplar.models import ModelAdapter, make_model
from exemplar.strategies import Strategy, get_strategy
from exemplar.strategies.base import ScoredPool


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
@pytest.mark.parametrize(
    ("array", "axis"),
    [
        (np.arange(7, dtype=np.int64), 0),
        (np.random.default_rng(0).random((5, 3), dtype=np.float32), 0),
        (np.random.default_rng(1).random((4, 6, 3)).astype(np.float32), 1),  # (t, n, c)
        (np.random.default_rng(2).random((6, 2, 2)), 0),
    ],
)
def test_a_shard_reads_back_with_its_dtype_and_shape(
    tmp_path: Path, fmt: str, array: np.ndarray, axis: int
) -> None:
    path = write_shard(tmp_path, "proba", 128, array, fmt, row_axis=axis)
    assert path == tmp_path / f"proba-{128:012d}.{fmt}"
    back = read_shard(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_assemble_concatenates_shards_in_row_order(tmp_path: Path, fmt: str) -> None:
    samples = np.random.default_rng(0).random((3, 10, 2)).astype(np.float32)
    for start in (0, 4, 8):
        write_shard(tmp_path, "samples", start, samples[:, start : start + 4], fmt, row_axis=1)
    starts = shard_starts(tmp_path, "samples", fmt)
    assert starts == [0, 4, 8]
    out = assemble(
        tmp_path,
        "samples",
        fmt,
        starts,
        samples.shape,
        samples.dtype,
        row_axis=1,
        out_path=tmp_path / "samples.npy",
    )
    assert isinstance(out, np.memmap) and np.array_equal(out, samples)
    assert np.array_equal(np.load(tmp_path / "samples.npy"), samples)


def test_assemble_refuses_missing_or_overlapping_shards(tmp_path: Path) -> None:
    a = np.arange(10.0)
    write_shard(tmp_path, "utility", 0, a[:4], "npy")
    write_shard(tmp_path, "utility", 6, a[6:], "npy")
    with pytest.raises(StoreError, match="does not continue"):
        assemble(tmp_path, "utility", "npy", [0, 6], (10,), a.dtype)
    with pytest.raises(StoreError, match="shares"):
        assemble(tmp_path, "utility", "npy", [0, 4], (10,), a.dtype)
    with pytest.raises(StoreError, match="cover 4 rows of 10"):
        assemble(tmp_path, "utility", "npy", [0], (10,), a.dtype)


def test_clear_shards_touches_only_shards_of_the_kinds(tmp_path: Path) -> None:
    write_shard(tmp_path, "proba", 0, np.zeros(2), "npy")
    write_shard(tmp_path, "proba", 2, np.zeros(2), "parquet")
    write_shard(tmp_path, "utility", 0, np.zeros(2), "npy")
    (tmp_path / "notes.txt").write_text("keep")
    assert clear_shards(tmp_path, ("proba",)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", f"utility-{0:012d}.npy"]


def test_bad_names_formats_and_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shard format"):
        shard_path(tmp_path, "proba", 0, "csv")
    with pytest.raises(StoreError, match="invalid shard kind"):
        shard_path(tmp_path, "../x", 0, "npy")
    with pytest.raises(StoreError, match="missing shard"):
        read_shard(tmp_path / "proba-000000000000.npy")
    (tmp_path / "proba-000000000000.npy").write_bytes(b"not an array")
    with pytest.raises(StoreError, match="corrupt shard"):
        read_shard(tmp_path / "proba-000000000000.npy")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "other.parquet")
    with pytest.raises(StoreError, match="not an exemplar shard"):
        read_shard(tmp_path / "other.parquet")


def test_file_of_finds_the_byte_offset_of_a_memmap_view(tmp_path: Path) -> None:
    X = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    for view in (mapped, mapped[7:30]):
        rows = _file_of(view)
        assert rows is not None
        assert np.array_equal(rows.open(), view)
    assert _file_of(np.asarray(X)) is None  # in memory: rows are shipped instead
    assert _file_of(mapped[:, 1:]) is None  # not C-contiguous


def test_assemble_with_drop_deletes_each_shard_once_copied(tmp_path: Path) -> None:
    rows = np.random.default_rng(3).random((9, 4)).astype(np.float32)
    for start in (0, 3, 6):
        write_shard(tmp_path, "embeddings", start, rows[start : start + 3], "npy")
    out = assemble(
        tmp_path,
        "embeddings",
        "npy",
        [0, 3, 6],
        rows.shape,
        rows.dtype,
        out_path=tmp_path / "final" / "e.npy",
        drop=True,
    )
    assert isinstance(out, np.memmap) and np.array_equal(out, rows)
    assert Path(str(out.filename)) == tmp_path / "final" / "e.npy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # one copy on disk
    assert [p.name for p in (tmp_path / "final").iterdir()] == ["e.npy"]  # no temporary left


def _score_here(model: ModelAdapter, X: np.ndarray, strategy: Strategy, root: Path) -> ScoredPool:
    """score_pool_ray's tasks (1,000 rows each) and the driver's assembly, in this process."""
    job = _Job("run", None, None, None, {}, None, 1000, str(root), "npy")
    results = [
        {
            "start": a,
            "stop": min(a + 1000, len(X)),
            "x": _score_range(model, X[a : a + 1000], strategy, a, None, job),
        }
        for a in range(0, len(X), 1000)
    ]
    return _assemble(X, results, root, "npy", False, 0, np.asarray(model.classes_), {})


def test_reusing_a_shard_dir_leaves_an_earlier_result_intact(tmp_path: Path) -> None:
    """An assembled file is a new file: scoring again into the same folder neither rewrites
    the arrays an earlier call returned (same size) nor truncates them under their reader
    (a smaller pool: reading them died of SIGBUS)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    coreset = get_strategy("coreset")  # reads the pipeline's (scaled) embeddings
    first = _score_here(make_model("logreg", 0).fit(X[:200], y[:200]), X, coreset, tmp_path)
    kept = np.array(first.predictions.embeddings)
    other = make_model("logreg", 0).fit(X[200:400] * 3, y[200:400])
    second = _score_here(other, X, coreset, tmp_path)
    assert not np.array_equal(np.asarray(second.predictions.embeddings), kept)
    assert np.array_equal(np.asarray(first.predictions.embeddings), kept)
    third = _score_here(other, X[:100], coreset, tmp_path)
    assert third.predictions.embeddings is not None
    assert third.predictions.embeddings.shape == (100, 8)
    assert np.array_equal(np.asarray(first.predictions.embeddings), kept)
    assert np.array_equal(
        np.asarray(second.predictions.embeddings)[:100], third.predictions.embeddings
    )
    assert not list(tmp_path.glob("embeddings-*"))  # shards deleted once copied
