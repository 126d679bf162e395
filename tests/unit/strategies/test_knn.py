"""The shared k-NN module: backends agree, radius queries are exact, faiss is optional."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from exemplar.errors import ConfigError, InvalidPredictionsError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies import _knn, get_strategy
from exemplar.strategies._knn import NeighborIndex, knn_mean_distance, resolve_backend
from exemplar.strategies.probcover import ProbCover

faiss_installed = _knn.faiss_module() is not None
needs_faiss = pytest.mark.skipif(not faiss_installed, reason="faiss-cpu is not installed")
EXACT = ["numpy", "sklearn"] + (["faiss"] if faiss_installed else [])


def _blobs(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (10, d))
    return (centres[rng.integers(0, 10, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("backend", EXACT)
def test_knn_matches_brute_force_and_excludes_only_self(backend: str) -> None:
    x = _blobs(700)
    x[1] = x[0]  # an exact duplicate stays its twin's neighbour
    dist, idx = NeighborIndex(x, backend=backend).knn(x, 5, exclude=np.arange(700))
    full = cdist(x.astype(np.float64), x.astype(np.float64))
    np.fill_diagonal(full, np.inf)
    expected = np.sort(full, axis=1)[:, :5]
    np.testing.assert_allclose(dist, expected, atol=2e-3)
    assert (idx != np.arange(700)[:, None]).all()
    assert idx[0, 0] == 1 and idx[1, 0] == 0
    assert (np.diff(dist, axis=1) >= -1e-6).all()  # nearest first
    hits = np.take_along_axis(full, idx, axis=1)
    np.testing.assert_allclose(hits, dist, atol=2e-3)  # the rows returned are that close


@pytest.mark.parametrize("backend", ["numpy"] + (["faiss"] if faiss_installed else []))
def test_radius_queries_are_exact_and_inclusive(backend: str) -> None:
    ref = _blobs(900, d=6, seed=1)
    q = _blobs(130, d=6, seed=2)
    radius = 2.5
    index = NeighborIndex(ref, backend=backend)
    lims, idx = index.radius_lists(q, radius)
    within = cdist(q.astype(np.float64), ref.astype(np.float64)) <= radius
    assert lims.shape == (131,) and lims[-1] == idx.size == within.sum()
    for i in range(q.shape[0]):
        assert set(idx[lims[i] : lims[i + 1]].tolist()) == set(np.flatnonzero(within[i]).tolist())
    np.testing.assert_array_equal(index.reverse_counts(q, radius), within.sum(axis=0))
    # A point exactly at the radius is inside (3-4-5 triangle).
    edge = NeighborIndex(np.array([[0.0, 0.0], [3.0, 4.0]], np.float32), backend=backend)
    assert edge.reverse_counts(np.zeros((1, 2), np.float32), 5.0).tolist() == [1, 1]


def test_auto_backend_switches_at_the_threshold_and_without_faiss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_backend("auto", _knn.FAISS_MIN_ROWS - 1) == "numpy"
    assert resolve_backend("auto", 10, fallback="sklearn") == "sklearn"
    if faiss_installed:
        assert resolve_backend("auto", _knn.FAISS_MIN_ROWS) == "faiss"
    monkeypatch.setattr(_knn, "faiss_module", lambda: None)
    assert resolve_backend("auto", 10 * _knn.FAISS_MIN_ROWS) == "numpy"
    with pytest.raises(ConfigError, match="pip install 'exemplar\\[faiss\\]'"):
        resolve_backend("faiss", 10)
    with pytest.raises(ConfigError, match="unknown k-NN backend 'annoy'"):
        resolve_backend("annoy", 10)
    with pytest.raises(ConfigError, match="k must be"):
        NeighborIndex(np.zeros((3, 2), np.float32), backend="numpy").knn(
            np.zeros((1, 2), np.float32), 3, exclude=np.zeros(1, np.int64)
        )


@needs_faiss
def test_ivf_index_is_approximate_but_finds_most_neighbours() -> None:
    x = _blobs(6000, d=16, seed=3)
    exact_d, exact_i = NeighborIndex(x, backend="faiss").knn(x[:500], 10)
    ivf = NeighborIndex(x, backend="faiss", approximate=True, n_probe=8, random_state=0)
    assert ivf.approximate and ivf._faiss.nlist == 6000 // 64
    d, i = ivf.knn(x[:500], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, exact_i, strict=True)])
    assert 0.9 <= recall <= 1.0
    found = i >= 0
    true = np.linalg.norm(x[:500, None, :] - x[np.where(found, i, 0)], axis=2)
    np.testing.assert_allclose(d[found], true[found], atol=2e-3)  # distances found are exact
    assert (d >= exact_d - 1e-4).all()  # never closer than the true k-th neighbours


@needs_faiss
def test_knn_mean_distance_uses_faiss_for_large_references_with_the_same_result() -> None:
    x = _blobs(400, seed=4)
    ref = x[::2]
    self_ref = np.full(400, -1)
    self_ref[::2] = np.arange(200)
    a = knn_mean_distance(x, ref, 7, self_ref, backend="numpy")
    b = knn_mean_distance(x, ref, 7, self_ref, backend="faiss")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert (a[::2] > 0).all()  # a reference row is not its own neighbour


def test_memory_mapped_references_give_the_same_neighbours(tmp_path: Path) -> None:
    x = _blobs(500, seed=5)
    np.save(tmp_path / "emb.npy", x)
    mm = np.load(tmp_path / "emb.npy", mmap_mode="r")
    d1, i1 = NeighborIndex(mm, backend="numpy").knn(x[:50], 4)
    d2, i2 = NeighborIndex(x, backend="numpy").knn(x[:50], 4)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    assert isinstance(NeighborIndex(mm, backend="numpy").ref, np.memmap)  # read in place


@needs_faiss
def test_probcover_gives_the_same_batch_with_faiss_and_numpy() -> None:
    x = _blobs(3000, d=8, seed=6)
    preds = Predictions(embeddings=x)
    lab = np.arange(20)
    runs = {
        backend: ProbCover(backend=backend).query(
            preds, labeled=lab, batch_size=15, random_state=1, return_scores=True
        )
        for backend in ("numpy", "faiss")
    }
    np.testing.assert_array_equal(runs["numpy"][0], runs["faiss"][0])
    np.testing.assert_array_equal(runs["numpy"][1], runs["faiss"][1])
    exact = ProbCover(delta=2.5, backend="faiss").query(
        preds, labeled=lab, batch_size=15, random_state=1, return_scores=True
    )
    approx, scores = ProbCover(delta=2.5, backend="faiss", approximate=True).query(
        preds, labeled=lab, batch_size=15, random_state=1, return_scores=True
    )
    assert np.unique(approx).size == 15 and not np.isin(approx, lab).any()
    # IVF misses some ball members across cell borders: ball sizes stay close to exact.
    assert abs(scores.sum() - exact[1].sum()) <= 0.2 * exact[1].sum()
    assert np.corrcoef(scores, exact[1])[0, 1] > 0.9


def test_probcover_refuses_a_bad_backend() -> None:
    preds = Predictions(embeddings=_blobs(50))
    with pytest.raises(Exception, match="backend must be"):
        ProbCover(backend="sklearn").query(preds, batch_size=2)


def test_default_and_margin_read_only_the_embeddings_they_need() -> None:
    """At 10^7 items a copy of every embedding is 2.6 GB: uncertainty reads none, and the
    default reads only its candidates' (here every other row is NaN and never read)."""
    rng = np.random.default_rng(7)
    n = 2000
    logits = rng.normal(size=(n, 3))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    emb = _blobs(n).astype(np.float64)
    margin = proba.max(axis=1) - np.sort(proba, axis=1)[:, -2]
    confident = np.argsort(margin)[n // 2 :]  # never among the default's 10×batch candidates
    emb[confident] = np.nan
    preds = Predictions(proba=proba, embeddings=emb)
    assert get_strategy("margin").query(preds, batch_size=5, random_state=0).shape == (5,)
    picks = get_strategy("uncertain_diverse").query(preds, batch_size=5, random_state=0)
    assert not np.isin(picks, confident).any()
    with pytest.raises(InvalidPredictionsError, match="embeddings contains"):
        get_strategy("coreset").query(preds, batch_size=5, random_state=0)


def _grid(n: int = 3000, seed: int = 1) -> np.ndarray:
    """Integer points, centred: many pairs lie exactly at distance 1, √2, 2."""
    x = np.random.default_rng(seed).integers(0, 4, (n, 3)).astype(np.float32)
    return x - x.mean(axis=0)


@pytest.mark.parametrize("backend", ["numpy"] + (["faiss"] if faiss_installed else []))
def test_radius_is_inclusive_on_a_centred_integer_grid(backend: str) -> None:
    x = _grid()
    q = x[:200]
    full = cdist(q.astype(np.float64), x.astype(np.float64))
    index = NeighborIndex(x, backend=backend)
    for radius in (1.0, float(np.sqrt(2.0)), 2.0):
        within = full <= radius
        lims, idx = index.radius_lists(q, radius)
        assert idx.size == within.sum()
        for i in (0, 1, 57, 199):
            assert sorted(idx[lims[i] : lims[i + 1]].tolist()) == np.flatnonzero(within[i]).tolist()
        np.testing.assert_array_equal(index.reverse_counts(q, radius), within.sum(axis=0))


def test_uncentred_data_keeps_its_neighbours_without_copying_the_pool(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = (rng.normal(size=(500, 16)) * 0.01 + 1000).astype(np.float32)
    np.save(tmp_path / "far.npy", y)
    mm = np.load(tmp_path / "far.npy", mmap_mode="r")
    full = cdist(y.astype(np.float64), y.astype(np.float64))
    np.fill_diagonal(full, np.inf)
    index = NeighborIndex(mm, backend="numpy")
    d, i = index.knn(y, 3, exclude=np.arange(500))
    np.testing.assert_array_equal(np.sort(i, axis=1), np.sort(np.argsort(full, 1)[:, :3], axis=1))
    np.testing.assert_allclose(d, np.sort(full, axis=1)[:, :3], rtol=1e-3)
    radius = float(np.median(np.sort(full, axis=1)[:, 2]))
    within = full <= radius
    np.fill_diagonal(within, True)  # each row is within any radius of itself
    np.testing.assert_array_equal(index.reverse_counts(y, radius), within.sum(axis=0))
    assert isinstance(index.ref, np.memmap)  # the pool itself is read in place


def test_several_reference_blocks_give_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _blobs(700, d=5, seed=8)
    q = _blobs(90, d=5, seed=9)
    whole = NeighborIndex(x, backend="numpy")
    d1, i1 = whole.knn(x[:90], 6, exclude=np.arange(90))
    lims1, idx1 = whole.radius_lists(q, 2.0)
    counts1 = whole.reverse_counts(q, 2.0)
    monkeypatch.setattr(_knn, "_CHUNK_ROWS", 64)  # 11 blocks of references
    blocks = NeighborIndex(x, backend="numpy")
    d2, i2 = blocks.knn(x[:90], 6, exclude=np.arange(90))
    np.testing.assert_allclose(d2, d1, atol=1e-5)
    np.testing.assert_array_equal(np.sort(i2, axis=1), np.sort(i1, axis=1))
    lims2, idx2 = blocks.radius_lists(q, 2.0)
    np.testing.assert_array_equal(lims2, lims1)
    np.testing.assert_array_equal(idx2, idx1)  # same pairs, same order
    np.testing.assert_array_equal(blocks.reverse_counts(q, 2.0), counts1)


@needs_faiss
def test_faiss_radius_search_runs_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _blobs(500, d=4, seed=10)
    monkeypatch.setattr(_knn, "_RANGE_PAIRS", 2000, raising=False)
    index = NeighborIndex(x, backend="faiss")
    calls: list[tuple[int, int]] = []
    search = index._faiss.range_search

    def spy(q: np.ndarray, radius: float) -> Any:
        out = search(q, radius)
        calls.append((q.shape[0], int(out[0][-1])))
        return out

    index._faiss = type("Spy", (), {"range_search": staticmethod(spy)})()
    expected = NeighborIndex(x, backend="numpy")
    for radius in (1e6, 1.0):  # every pair, then small balls
        calls.clear()
        np.testing.assert_array_equal(
            index.reverse_counts(x, radius), expected.reverse_counts(x, radius)
        )
        assert sum(n for n, _ in calls) == 500
        assert max(pairs for _, pairs in calls) <= 2000 + 4 * 500  # bounded, not 500 × 500
    assert len(calls) < 500 // 4  # small balls: chunks grow past the worst-case size


def test_approximate_without_faiss_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _blobs(200)
    with pytest.raises(ConfigError, match="approximate=True needs the faiss backend"):
        NeighborIndex(x, backend="numpy", approximate=True)
    preds = Predictions(embeddings=x)
    with pytest.raises(StrategyError, match="approximate=True needs the faiss backend"):
        ProbCover(backend="numpy", approximate=True).query(preds, batch_size=3)
    monkeypatch.setattr(_knn, "faiss_module", lambda: None)
    with pytest.raises(StrategyError, match="needs faiss-cpu"):
        ProbCover(approximate=True).query(preds, batch_size=3)
    with pytest.raises(ConfigError, match="needs faiss-cpu"):
        NeighborIndex(x, approximate=True)


@needs_faiss
def test_approximate_always_means_an_ivf_index() -> None:
    x = _blobs(300)
    index = NeighborIndex(x, backend="auto", approximate=True, random_state=0)
    assert index.backend == "faiss" and hasattr(index._faiss, "nprobe")
    preds = Predictions(embeddings=x)
    a = ProbCover(delta=2.0, approximate=True).query(preds, batch_size=5, random_state=3)
    b = ProbCover(delta=2.0, approximate=True).query(preds, batch_size=5, random_state=3)
    np.testing.assert_array_equal(a, b)  # the IVF seed comes from the query's rng


@pytest.mark.parametrize("backend", EXACT)
def test_bad_queries_and_radii_are_config_errors(backend: str) -> None:
    index = NeighborIndex(_blobs(50, d=3), backend=backend)
    with pytest.raises(ConfigError, match="4 dimensions, the references 3"):
        index.knn(np.zeros((2, 4), np.float32), 2)
    with pytest.raises(ConfigError, match=r"2-D array .*q\[None, :\]"):
        index.knn(np.zeros(3, np.float32), 2)
    with pytest.raises(ConfigError, match="k must be an integer"):
        index.knn(np.zeros((2, 3), np.float32), 2.0)  # type: ignore[arg-type]
    for radius in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="radius must be a finite number >= 0"):
            index.reverse_counts(np.zeros((2, 3), np.float32), radius)
    with pytest.raises(ConfigError, match="must be a numpy array"):
        NeighborIndex([[0.0, 1.0]], backend=backend)  # type: ignore[arg-type]


def test_probcover_passes_uncovered_rows_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from exemplar.strategies import probcover

    x = _blobs(400, d=4, seed=11)
    preds = Predictions(embeddings=x)
    expected = ProbCover(delta=1.5, backend="numpy").query(
        preds, labeled=np.arange(10), batch_size=6, random_state=0, return_scores=True
    )
    sizes: list[int] = []
    counts = NeighborIndex.reverse_counts

    def spy(self: NeighborIndex, queries: np.ndarray, radius: float) -> np.ndarray:
        sizes.append(queries.shape[0])
        return counts(self, queries, radius)

    monkeypatch.setattr(NeighborIndex, "reverse_counts", spy)
    monkeypatch.setattr(probcover, "_CHUNK_ROWS", 50)
    got = ProbCover(delta=1.5, backend="numpy").query(
        preds, labeled=np.arange(10), batch_size=6, random_state=0, return_scores=True
    )
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert max(sizes) <= 50 and sum(sizes) >= 390  # never all uncovered rows at once
