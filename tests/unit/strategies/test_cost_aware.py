"""Cost-aware selection (Settles, Craven & Friedland 2008): utility per expected second."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from exemplar.errors import ConfigError, InvalidPredictionsError
from exemplar.predictions import Predictions
from exemplar.strategies import CostAware, get_strategy
from exemplar.strategies.cost_aware import return_on_investment

N, C = 200, 3


def _predictions() -> Predictions:
    X, y = make_blobs(n_samples=N, centers=C, n_features=4, random_state=1)
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(N, C)) + np.eye(C)[y] * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Predictions(proba=proba.astype(np.float32), embeddings=X, classes=np.arange(C))


PRED = _predictions()
LABELED = np.arange(30)
Y = np.arange(30) % C
UNLABELED = np.arange(30, N)


def test_roi_keeps_the_utility_order_at_equal_cost_and_is_scale_free() -> None:
    u = np.array([-0.9, -0.1, -0.5, -0.3])
    ones = np.ones(4)
    assert np.argsort(-return_on_investment(u, ones)).tolist() == np.argsort(-u).tolist()
    np.testing.assert_allclose(return_on_investment(u, ones), return_on_investment(3 * u + 7, ones))
    # At equal utility the cheaper item wins; an item twice as useful at twice the cost ties.
    roi = return_on_investment(np.array([0.0, 1.0, 1.0, 0.5]), np.array([1.0, 2.0, 1.0, 1.0]))
    assert roi[2] > roi[1] and roi[1] == pytest.approx(0.5) and roi[3] == pytest.approx(0.5)


def test_without_costs_it_picks_what_its_base_picks() -> None:
    kw = {"y_labeled": Y, "random_state": 0}
    plain = get_strategy("margin").query(PRED, UNLABELED, LABELED, 10, **kw)
    wrapped = CostAware("margin").query(PRED, UNLABELED, LABELED, 10, **kw)
    assert sorted(wrapped.tolist()) == sorted(plain.tolist())


def test_expensive_items_give_way_to_cheap_ones_of_similar_utility() -> None:
    kw = {"y_labeled": Y, "random_state": 0}
    plain = get_strategy("margin").query(PRED, UNLABELED, LABELED, 10, **kw)
    costs = np.ones(N)
    costs[plain] = 50.0  # the base's favourites are slow to label
    picked, roi = CostAware("margin", costs=costs).query(
        PRED, UNLABELED, LABELED, 10, return_scores=True, **kw
    )
    assert not set(picked.tolist()) & set(plain.tolist())
    # What it picks instead are the best-ROI items: the top of margin among the cheap ones.
    utility = get_strategy("margin").utility(PRED.take(UNLABELED))
    cheap = np.flatnonzero(costs[UNLABELED] == 1.0)
    best_cheap = UNLABELED[cheap[np.argsort(-utility[cheap], kind="stable")[:10]]]
    assert sorted(picked.tolist()) == sorted(best_cheap.tolist())
    assert roi.shape == (UNLABELED.size,)


def test_a_batch_base_keeps_its_candidates_and_ranks_them_by_cost() -> None:
    kw = {"y_labeled": Y, "random_state": 4}
    base = get_strategy("uncertain_diverse")
    candidates = base.query(PRED, UNLABELED, LABELED, 30, **kw)
    costs = np.full(N, 100.0)
    costs[candidates[-10:]] = 1.0  # only ten of the base's 30 candidates are cheap
    picked = CostAware("uncertain_diverse", costs=costs, factor=3).query(
        PRED, UNLABELED, LABELED, 10, **kw
    )
    assert sorted(picked.tolist()) == sorted(candidates[-10:].tolist())


def test_a_strategy_object_can_be_wrapped() -> None:
    base = get_strategy("entropy")
    costs = np.linspace(1.0, 5.0, N)
    by_name = CostAware("entropy", costs=costs).query(PRED, UNLABELED, LABELED, 8, y_labeled=Y)
    by_object = CostAware(base, costs=costs).query(PRED, UNLABELED, LABELED, 8, y_labeled=Y)
    assert by_name.tolist() == by_object.tolist()


@pytest.mark.parametrize(
    "costs, match",
    [
        (np.ones(N - 1), "one value per dataset row"),
        (np.r_[np.ones(N - 1), -1.0], "finite and positive"),
        (np.r_[np.ones(N - 1), np.nan], "finite and positive"),
        (np.ones((N, 2)), "one value per dataset row"),
    ],
)
def test_bad_costs_are_refused(costs: np.ndarray, match: str) -> None:
    with pytest.raises(InvalidPredictionsError, match=match):
        CostAware("margin", costs=costs).query(PRED, UNLABELED, LABELED, 5, y_labeled=Y)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot wrap itself"):
        CostAware("cost_aware").query(PRED, UNLABELED, LABELED, 5, y_labeled=Y)
    with pytest.raises(ConfigError, match="cannot wrap itself"):
        CostAware(CostAware()).query(PRED, UNLABELED, LABELED, 5, y_labeled=Y)
    with pytest.raises(ConfigError, match="factor"):
        CostAware("coreset", factor=0).query(PRED, UNLABELED, LABELED, 5, y_labeled=Y)
    with pytest.raises(ConfigError, match="unknown strategy"):
        CostAware("nope").query(PRED, UNLABELED, LABELED, 5, y_labeled=Y)
