"""Tests of CoreSet, greedy k-center (Sener & Savarese, 2018)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.datasets import make_blobs

from exemplar.errors import MissingPredictionsError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies.coreset import CoreSet


def _brute_force_k_center(
    x: np.ndarray, labeled: np.ndarray, unlabeled: np.ndarray, k: int
) -> list[int]:
    """Reference greedy k-center: recompute every distance at each pick."""
    centers = list(labeled)
    picks: list[int] = []
    for _ in range(k):
        dist = cdist(x[unlabeled], x[centers]).min(axis=1)
        dist[np.isin(unlabeled, picks)] = -1.0
        best = int(unlabeled[np.argmax(dist)])
        picks.append(best)
        centers.append(best)
    return picks


def test_first_pick_is_farthest_from_labeled() -> None:
    x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 9.0], [3.0, 3.0]])
    idx, scores = CoreSet().query(
        Predictions(embeddings=x), labeled=[0], batch_size=1, return_scores=True
    )
    assert idx.tolist() == [3]
    np.testing.assert_allclose(scores, [1.0, 2.0, 9.0, np.hypot(3, 3)], rtol=1e-6)


def test_matches_brute_force_greedy_k_center() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    labeled = rng.choice(200, 7, replace=False)
    unlabeled = np.setdiff1d(np.arange(200), labeled)
    idx, scores = CoreSet().query(
        Predictions(embeddings=x), unlabeled, labeled, batch_size=15, return_scores=True
    )
    assert idx.tolist() == _brute_force_k_center(x, labeled, unlabeled, 15)
    expected = cdist(x[unlabeled], x[labeled]).min(axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


def test_cold_start_covers_every_cluster() -> None:
    x, y = make_blobs(
        n_samples=500, centers=6, cluster_std=0.3, center_box=(-20, 20), random_state=1
    )
    for seed in range(3):
        idx = CoreSet().query(Predictions(embeddings=x), batch_size=6, random_state=seed)
        assert sorted(y[idx].tolist()) == list(range(6))


def test_copy_and_view_paths_agree_and_skip_rows_outside_the_pool() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4))
    x[10:20] *= 50.0  # far-away rows that are neither labeled nor unlabeled
    labeled = np.arange(10)
    big = np.arange(20, 120)  # >= half the rows: whole-array view
    small = np.arange(20, 60)  # < half: gathered copy
    pred = Predictions(embeddings=x)
    for unl in (big, small):
        idx = CoreSet().query(pred, unl, labeled, batch_size=8)
        assert set(idx.tolist()) <= set(unl.tolist())
        assert idx.tolist() == _brute_force_k_center(x, labeled, unl, 8)


def test_float32_and_memmap_inputs(tmp_path: Path) -> None:
    x, _ = make_blobs(n_samples=300, centers=4, n_features=8, random_state=2)
    labeled = np.arange(5)
    expected = CoreSet().query(Predictions(embeddings=x), labeled=labeled, batch_size=10)
    x32 = x.astype(np.float32)
    assert CoreSet().query(
        Predictions(embeddings=x32), labeled=labeled, batch_size=10
    ).tolist() == (expected.tolist())
    np.save(tmp_path / "e.npy", x32)
    mm = np.load(tmp_path / "e.npy", mmap_mode="r")
    got = CoreSet().query(Predictions(embeddings=mm), labeled=labeled, batch_size=10)
    assert got.tolist() == expected.tolist()


def test_valid_unique_and_deterministic() -> None:
    x, _ = make_blobs(n_samples=200, centers=3, random_state=3)
    labeled = np.arange(0, 200, 10)
    pred = Predictions(embeddings=x)
    a = CoreSet().query(pred, labeled=labeled, batch_size=30, random_state=5)
    assert np.unique(a).size == 30 and not np.isin(a, labeled).any()
    b = CoreSet().query(pred, batch_size=5, random_state=7)
    c = CoreSet().query(pred, batch_size=5, random_state=7)
    assert b.tolist() == c.tolist()


def test_duplicates_do_not_repeat_picks() -> None:
    x = np.zeros((10, 3))
    idx = CoreSet().query(Predictions(embeddings=x), labeled=[0], batch_size=9)
    assert sorted(idx.tolist()) == list(range(1, 10))


def test_missing_embeddings_raise() -> None:
    with pytest.raises(MissingPredictionsError, match="embeddings"):
        CoreSet().query(Predictions(proba=np.full((4, 2), 0.5)), batch_size=1)
    with pytest.raises(StrategyError, match="needs predictions"):
        CoreSet().query(None, unlabeled=[0, 1], batch_size=1)
