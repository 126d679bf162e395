"""Tests of ProbCover (Yehuda et al., 2022)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.datasets import make_blobs

from exemplar.errors import MissingPredictionsError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies.probcover import ProbCover

CENTERS = np.array([[0.0, 0.0], [15.0, 0.0], [0.0, 15.0], [15.0, 15.0]])


def _blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=[120, 80, 50, 30], centers=CENTERS, cluster_std=1.0, random_state=0)


def _brute_force_probcover(x: np.ndarray, delta: float, labeled: np.ndarray, k: int) -> list[int]:
    """Reference greedy max coverage over a dense adjacency matrix."""
    adj = cdist(x, x) <= delta
    covered = adj[labeled].any(axis=0) if labeled.size else np.zeros(len(x), dtype=bool)
    picks: list[int] = []
    for _ in range(k):
        gain = (adj & ~covered[None, :]).sum(axis=1)
        gain[labeled] = -1
        gain[picks] = -1
        best = int(np.argmax(gain))
        if gain[best] <= 0:
            break
        picks.append(best)
        covered |= adj[best]
    return picks


def test_covers_every_separate_cluster_once() -> None:
    x, y = _blobs()
    for seed in range(3):
        idx = ProbCover(delta=6.0).query(Predictions(embeddings=x), batch_size=4, random_state=seed)
        assert sorted(y[idx].tolist()) == [0, 1, 2, 3]
    # A small radius covers little per pick: the densest blob gets more than one.
    small = ProbCover(delta=0.5).query(Predictions(embeddings=x), batch_size=4)
    assert (y[small] == 0).sum() >= 2


def test_default_delta_covers_clusters_of_high_dimensional_embeddings() -> None:
    x, y = make_blobs(n_samples=[150, 100, 60, 40], n_features=32, random_state=3)
    for seed in range(3):
        idx = ProbCover().query(Predictions(embeddings=x), batch_size=4, random_state=seed)
        assert sorted(y[idx].tolist()) == [0, 1, 2, 3]


def test_covered_clusters_are_skipped() -> None:
    x, y = _blobs()
    labeled = np.array([np.flatnonzero(y == 0)[0], np.flatnonzero(y == 1)[0]])
    idx = ProbCover(delta=6.0).query(Predictions(embeddings=x), labeled=labeled, batch_size=2)
    assert sorted(y[idx].tolist()) == [2, 3]


def test_matches_brute_force_greedy_and_scores_are_ball_sizes() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 3))
    labeled = np.array([3, 50, 97])
    unl = np.setdiff1d(np.arange(150), labeled)
    delta = 0.9
    idx, scores = ProbCover(delta=delta).query(
        Predictions(embeddings=x), unl, labeled, batch_size=8, return_scores=True
    )
    assert idx.tolist() == _brute_force_probcover(x, delta, labeled, 8)
    adj = cdist(x[unl], x[unl]) <= delta
    covered = (cdist(x[labeled], x[unl]) <= delta).any(axis=0)
    np.testing.assert_array_equal(scores, (adj & ~covered[None, :]).sum(axis=1))


def test_random_fill_once_everything_is_covered() -> None:
    x, y = _blobs()
    pred = Predictions(embeddings=x)
    idx = ProbCover(delta=6.0).query(pred, batch_size=20, random_state=0)
    assert np.unique(idx).size == 20
    assert sorted(y[idx[:4]].tolist()) == [0, 1, 2, 3]  # the coverage picks come first
    again = ProbCover(delta=6.0).query(pred, batch_size=20, random_state=0)
    assert idx.tolist() == again.tolist()


def test_subsample_of_large_pools() -> None:
    x, _ = _blobs()
    labeled = np.arange(0, 280, 40)
    idx, scores = ProbCover(max_candidates=100).query(
        Predictions(embeddings=x),
        labeled=labeled,
        batch_size=10,
        random_state=2,
        return_scores=True,
    )
    assert np.unique(idx).size == 10 and not np.isin(idx, labeled).any()
    assert np.count_nonzero(scores) <= 100


def test_default_delta_from_nearest_neighbour_distance() -> None:
    x, _ = _blobs()
    # Doubling every coordinate doubles delta: the picks do not change.
    a = ProbCover().query(Predictions(embeddings=x), batch_size=6, random_state=0)
    b = ProbCover().query(Predictions(embeddings=2.0 * x), batch_size=6, random_state=0)
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize(
    "kwargs",
    [{"delta": 0.0}, {"delta": -1.0}, {"delta_factor": 0.0}, {"max_candidates": 0}],
)
def test_invalid_parameters_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(StrategyError):
        ProbCover(**kwargs).query(Predictions(embeddings=np.eye(5)), batch_size=1)


def test_missing_embeddings_raise() -> None:
    with pytest.raises(MissingPredictionsError, match="embeddings"):
        ProbCover().query(Predictions(proba=np.full((4, 2), 0.5)), batch_size=1)
