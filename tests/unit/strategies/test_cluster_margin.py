"""Tests of ClusterMargin (Citovsky et al., 2021)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from exemplar.errors import MissingPredictionsError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies import Margin
from exemplar.strategies.cluster_margin import ClusterMargin, _round_robin


def _proba_with_margins(margins: np.ndarray) -> np.ndarray:
    """Two-class probabilities whose margin p_1 - p_2 is ``margins``."""
    p1 = (1.0 + margins) / 2.0
    return np.column_stack([p1, 1.0 - p1])


def _three_regions() -> tuple[Predictions, np.ndarray]:
    """Three blobs of 30; blob 0 holds the 30 smallest margins, then blob 1, then blob 2."""
    x, y = make_blobs(
        n_samples=[30, 30, 30], centers=[[0, 0], [20, 0], [0, 20]], cluster_std=1.0, random_state=0
    )
    rng = np.random.default_rng(0)
    margins = np.empty(90)
    for blob, (lo, hi) in enumerate([(0.0, 0.1), (0.1, 0.2), (0.2, 0.3)]):
        margins[y == blob] = rng.uniform(lo, hi, size=30)
    return Predictions(proba=_proba_with_margins(margins), embeddings=x), y


def test_batch_spreads_over_clusters_where_margin_does_not() -> None:
    pred, y = _three_regions()
    plain = Margin().query(pred, batch_size=6)
    assert set(y[plain].tolist()) == {0}  # plain margin spends the batch on one region
    idx = ClusterMargin(margin_multiple=15, n_clusters=3).query(pred, batch_size=6)
    assert np.bincount(y[idx], minlength=3).tolist() == [2, 2, 2]
    margins = pred.proba[:, 0] - pred.proba[:, 1]
    for blob in range(3):  # each round takes the lowest-margin item left in the cluster
        members = np.flatnonzero(y == blob)
        lowest_two = members[np.argsort(margins[members])[:2]]
        assert set(idx[y[idx] == blob].tolist()) == set(lowest_two.tolist())


def test_default_candidates_and_clusters_still_diversify() -> None:
    pred, y = _three_regions()
    idx = ClusterMargin().query(pred, batch_size=6)  # 60 candidates: blobs 0 and 1
    assert set(y[idx].tolist()) == {0, 1}


def test_round_robin_visits_smallest_cluster_first() -> None:
    labels = np.array([1, 1, 1, 2, 2, 3, 1])  # candidates sorted by margin, best first
    assert _round_robin(labels, 4).tolist() == [5, 3, 0, 4]
    assert _round_robin(labels, 7).tolist() == [5, 3, 0, 4, 1, 2, 6]


def test_margin_multiple_one_is_plain_margin() -> None:
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(4), size=100)
    pred = Predictions(proba=proba, embeddings=rng.normal(size=(100, 3)))
    idx, scores = ClusterMargin(margin_multiple=1).query(pred, batch_size=7, return_scores=True)
    assert idx.tolist() == Margin().query(pred, batch_size=7).tolist()
    top2 = np.sort(proba, axis=1)[:, -2:]
    np.testing.assert_allclose(scores, 1.0 - (top2[:, 1] - top2[:, 0]), rtol=1e-6)


def test_valid_unique_deterministic_and_candidate_cap() -> None:
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(3), size=500)
    pred = Predictions(proba=proba, embeddings=rng.normal(size=(500, 4)).astype(np.float32))
    labeled = np.arange(0, 500, 5)
    strat = ClusterMargin(max_candidates=60)
    a = strat.query(pred, labeled=labeled, batch_size=20)
    assert np.unique(a).size == 20 and not np.isin(a, labeled).any()
    assert a.tolist() == strat.query(pred, labeled=labeled, batch_size=20).tolist()
    # Candidates are the 60 lowest margins: every pick comes from them.
    unl = np.setdiff1d(np.arange(500), labeled)
    top2 = np.sort(proba[unl], axis=1)[:, -2:]
    lowest = unl[np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:60]]
    assert set(a.tolist()) <= set(lowest.tolist())


def test_one_cluster_returns_lowest_margins() -> None:
    pred, _ = _three_regions()
    idx = ClusterMargin(n_clusters=1).query(pred, batch_size=4)
    assert idx.tolist() == Margin().query(pred, batch_size=4).tolist()


@pytest.mark.parametrize(
    "kwargs",
    [{"margin_multiple": 0}, {"max_candidates": 0}, {"n_clusters": 0}, {"n_clusters": 2.5}],
)
def test_invalid_parameters_raise(kwargs: dict[str, object]) -> None:
    pred, _ = _three_regions()
    with pytest.raises(StrategyError):
        ClusterMargin(**kwargs).query(pred, batch_size=2)


def test_missing_outputs_raise() -> None:
    with pytest.raises(MissingPredictionsError, match="embeddings"):
        ClusterMargin().query(Predictions(proba=np.full((4, 2), 0.5)), batch_size=1)
    with pytest.raises(MissingPredictionsError, match="proba"):
        ClusterMargin().query(Predictions(embeddings=np.ones((4, 2))), batch_size=1)
