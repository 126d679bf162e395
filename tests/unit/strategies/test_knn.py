"""The shared k-NN module: backends agree, radius queries are exact, faiss is optional."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from exemplar.errors import ConfigError, InvalidPredictionsError
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
