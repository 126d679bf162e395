"""Tests of TypiClust (Hacohen, Dekel & Weinshall, 2022)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr
from sklearn.datasets import make_blobs

from exemplar.errors import MissingPredictionsError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies.typiclust import TypiClust, _round_robin, knn_mean_distance

CENTERS = np.array([[0.0, 0.0], [12.0, 0.0], [0.0, 12.0]])


def _blobs_with_outliers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three blobs of 150 items, then 6 scattered outliers (label -1)."""
    x, y = make_blobs(n_samples=[150, 150, 150], centers=CENTERS, cluster_std=1.0, random_state=0)
    outliers = np.array([[30.0, 30.0], [-25.0, 5.0], [6.0, -28.0], [25, -20], [-20, 25], [40, 5]])
    x = np.vstack([x, outliers])
    y = np.r_[y, np.full(len(outliers), -1)]
    return x, y, np.arange(450, 456)


def test_cold_start_picks_dense_cluster_centres_not_outliers() -> None:
    x, y, outliers = _blobs_with_outliers()
    for seed in range(3):
        idx, scores = TypiClust().query(
            Predictions(embeddings=x), batch_size=3, random_state=seed, return_scores=True
        )
        assert sorted(y[idx].tolist()) == [0, 1, 2]  # one per blob, no outlier
        # Each pick sits in its blob's core: closer to the centre than 70% of the blob.
        for i in idx:
            blob = x[y == y[i]]
            d_pick = np.linalg.norm(x[i] - CENTERS[y[i]])
            assert d_pick < np.quantile(np.linalg.norm(blob - CENTERS[y[i]], axis=1), 0.3)
        assert scores[outliers].max() < np.median(scores[:450])


def test_prefers_clusters_without_labels() -> None:
    x, y, _ = _blobs_with_outliers()
    labeled = np.array([np.flatnonzero(y == 0)[0], np.flatnonzero(y == 1)[0]])
    for seed in range(3):
        idx = TypiClust().query(
            Predictions(embeddings=x), labeled=labeled, batch_size=1, random_state=seed
        )
        assert y[idx[0]] == 2
        assert not np.isin(idx, labeled).any()


def test_typicality_is_inverse_mean_knn_distance() -> None:
    x, _ = make_blobs(n_samples=60, centers=[[0.0, 0.0]], cluster_std=1.0, random_state=1)
    _, scores = TypiClust(n_neighbors=5).query(
        Predictions(embeddings=x), batch_size=1, return_scores=True
    )
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    expected = 1.0 / (np.sort(d, axis=1)[:, :5].mean(axis=1) + 1e-5)
    np.testing.assert_allclose(scores, expected, rtol=1e-3)


def test_knn_mean_distance_excludes_self_and_subsample_keeps_the_ranking() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    exact = knn_mean_distance(x, x, 10, np.arange(400))
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(exact, np.sort(d, axis=1)[:, :10].mean(axis=1), rtol=1e-4)
    ref_pos = np.sort(rng.choice(400, 100, replace=False))
    self_ref = np.full(400, -1)
    self_ref[ref_pos] = np.arange(100)
    approx = knn_mean_distance(x, x[ref_pos], 10, self_ref)
    assert spearmanr(exact, approx)[0] > 0.85
    r = np.linalg.norm(x, axis=1)
    core, fringe = r < np.quantile(r, 0.2), r > np.quantile(r, 0.8)
    assert approx[core].max() < approx[fringe].min()


def test_small_reference_cap_still_finds_the_centres() -> None:
    x, y, _ = _blobs_with_outliers()
    idx = TypiClust(n_reference=40).query(Predictions(embeddings=x), batch_size=3, random_state=0)
    assert sorted(y[idx].tolist()) == [0, 1, 2]


def test_batch_larger_than_cluster_count_and_determinism() -> None:
    x, _ = make_blobs(n_samples=300, centers=4, n_features=5, random_state=3)
    pred = Predictions(embeddings=x.astype(np.float32))
    labeled = np.arange(0, 300, 15)
    strat = TypiClust(max_clusters=5)
    a = strat.query(pred, labeled=labeled, batch_size=30, random_state=4)
    assert np.unique(a).size == 30 and not np.isin(a, labeled).any()
    assert a.tolist() == strat.query(pred, labeled=labeled, batch_size=30, random_state=4).tolist()


def test_fit_sample_smaller_than_the_pool() -> None:
    x, y = make_blobs(n_samples=600, centers=CENTERS, cluster_std=1.0, random_state=5)
    idx = TypiClust(sample_size=100).query(Predictions(embeddings=x), batch_size=3, random_state=0)
    assert sorted(y[idx].tolist()) == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_neighbors": 0},
        {"max_clusters": 0},
        {"n_reference": 0},
        {"sample_size": 0},
        {"min_cluster_size": -1},
    ],
)
def test_invalid_parameters_raise(kwargs: dict[str, int]) -> None:
    with pytest.raises(StrategyError):
        TypiClust(**kwargs).query(Predictions(embeddings=np.eye(6)), batch_size=1)


def test_missing_embeddings_raise() -> None:
    with pytest.raises(MissingPredictionsError, match="embeddings"):
        TypiClust().query(Predictions(proba=np.full((4, 2), 0.5)), batch_size=1)


def _exact_typicality(x: np.ndarray, k: int) -> np.ndarray:
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    return 1.0 / (np.sort(d, axis=1)[:, :k].mean(axis=1) + 1e-5)


def test_covers_the_largest_uncovered_clusters_first() -> None:
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    sizes = [80, 200, 120, 60]
    x, y = make_blobs(n_samples=sizes, centers=centres, cluster_std=1.0, random_state=7)
    labeled = np.flatnonzero(y == 0)[:2]  # blob 0 is covered; 1 > 2 > 3 by size
    for seed in range(3):
        idx = TypiClust().query(
            Predictions(embeddings=x), labeled=labeled, batch_size=2, random_state=seed
        )
        assert y[idx].tolist() == [1, 2]  # best first: the largest uncovered blob


def test_scores_outside_the_visited_clusters_are_a_typicality_proxy() -> None:
    """Blobs the batch does not draw from get a proxy on the typicality scale."""
    centres = np.array([[15.0 * (i % 3), 15.0 * (i // 3)] for i in range(6)])
    x, y = make_blobs(n_samples=[80] * 6, centers=centres, cluster_std=1.0, random_state=8)
    labeled = np.array([np.flatnonzero(y == b)[0] for b in range(4)])  # blobs 0-3 covered
    unl = np.setdiff1d(np.arange(x.shape[0]), labeled)
    idx, scores = TypiClust().query(
        Predictions(embeddings=x), unl, labeled, batch_size=2, random_state=0, return_scores=True
    )
    assert sorted(y[idx].tolist()) == [4, 5]
    assert np.isfinite(scores).all() and (scores > 0).all()
    y_unl = y[unl]
    true = np.empty(unl.size)
    for b in range(6):
        true[y_unl == b] = _exact_typicality(x[unl[y_unl == b]], 20)
    visited = y_unl >= 4
    # The blobs the batch draws from: typicality itself.
    np.testing.assert_allclose(scores[visited], true[visited], rtol=1e-3)
    for b in range(4):
        m = y_unl == b
        # The proxy falls with the distance to the blob's centroid ...
        d = np.linalg.norm(x[unl[m]] - x[y == b].mean(axis=0), axis=1)
        assert spearmanr(scores[m], d)[0] < -0.99
        # ... ranks like typicality, and is on its scale.
        assert spearmanr(scores[m], true[m])[0] > 0.8
        assert 0.7 < np.median(scores[m]) / np.median(true[m]) < 1.4


def test_round_robin_matches_a_visit_one_by_one() -> None:
    rng = np.random.default_rng(9)
    for _ in range(50):
        capacity = rng.integers(1, 6, size=rng.integers(1, 12))
        order = rng.permutation(100)[: capacity.size]
        batch = int(rng.integers(1, capacity.sum() + 1))
        taken = dict.fromkeys(order.tolist(), 0)
        while sum(taken.values()) < batch:
            for c, cap in zip(order.tolist(), capacity.tolist(), strict=True):
                if taken[c] < cap and sum(taken.values()) < batch:
                    taken[c] += 1
        clusters, counts = _round_robin(capacity, order, batch)
        expected = [(c, t) for c, t in taken.items() if t > 0]
        assert list(zip(clusters.tolist(), counts.tolist(), strict=True)) == expected


def test_more_clusters_than_distinct_points() -> None:
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]]), 30, axis=0)
    idx = TypiClust().query(Predictions(embeddings=x), batch_size=10, random_state=0)
    assert np.unique(idx).size == 10
    assert np.unique(x[idx[:4]], axis=0).shape[0] == 4  # the first round covers every point
