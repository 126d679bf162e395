"""What every object strategy shares: aggregation, IoU matching and the query contract."""

from __future__ import annotations

import numpy as np
import pytest
from object_cases import objs, preds, random_scene

from exemplar.errors import (
    BatchTooLargeError,
    ConfigError,
    EmptyPoolError,
    InvalidIndicesError,
    InvalidPredictionsError,
    MissingPredictionsError,
)
from exemplar.predictions import Predictions
from exemplar.strategies import STRATEGIES, BoxEntropy, get_strategy
from exemplar.strategies._objects import aggregate, match_boxes

OBJECT_NAMES = sorted(n for n, cls in STRATEGIES.items() if "objects" in cls.requires)
SCENE = random_scene()
LABELED = np.arange(0, 20)
UNLABELED = np.arange(20, 120)


def test_every_object_strategy_is_registered() -> None:
    assert OBJECT_NAMES == sorted(
        [
            "box_committee",
            "box_entropy",
            "box_margin",
            "box_uncertain_diverse",
            "expected_count",
            "localization_stability",
        ]
    )


def test_aggregations_give_the_documented_values() -> None:
    per_box = [np.array([0.2, 0.9, 0.4, 0.1]), np.array([0.6]), np.array([])]
    np.testing.assert_allclose(aggregate(per_box, "max"), [0.9, 0.6, 0.0])
    np.testing.assert_allclose(aggregate(per_box, "mean"), [0.4, 0.6, 0.0])
    np.testing.assert_allclose(aggregate(per_box, "sum"), [1.6, 0.6, 0.0])
    # topk: the k largest summed, divided by k (missing boxes count 0).
    np.testing.assert_allclose(aggregate(per_box, "topk", k=2), [(0.9 + 0.4) / 2, 0.3, 0.0])
    w = [np.array([1.0, 3.0, 0.0, 0.0]), np.array([0.0]), np.array([])]
    np.testing.assert_allclose(
        aggregate(per_box, "weighted", weights=w), [(0.2 + 3 * 0.9) / 4, 0.0, 0.0]
    )


def test_aggregate_changes_the_ranking_through_the_strategy() -> None:
    # Image 0: one very uncertain box. Image 1: three fairly uncertain boxes.
    uniform, unsure, sure = [0.5, 0.5], [0.75, 0.25], [0.99, 0.01]
    images = [
        objs([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.9], [uniform, sure]),
        objs([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0.9] * 3, [unsure] * 3),
    ]
    p = preds(images)
    assert np.argmax(BoxEntropy(aggregate="max").utility(p)) == 0
    assert np.argmax(BoxEntropy(aggregate="sum").utility(p)) == 1
    assert np.argmax(BoxEntropy(aggregate="topk", k=3).utility(p)) == 1


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_match_boxes_is_one_to_one_above_the_threshold(method: str) -> None:
    a = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
    b = np.array([[1, 0, 11, 10], [0, 0, 10, 10], [300, 300, 310, 310]], np.float32)
    rows, cols, iou = match_boxes(a, b, 0.5, method)
    assert rows.tolist() == [0] and cols.tolist() == [1]
    assert iou.tolist() == [1.0]


def test_hungarian_maximises_total_iou_where_greedy_does_not() -> None:
    # Greedy takes the single best pair (a0, b0) and leaves a1 without a match;
    # the assignment gives a0-b1 and a1-b0, two matches.
    a = np.array([[0, 0, 10, 10], [3, 0, 13, 10]], np.float32)
    b = np.array([[1, 0, 11, 10], [-2, 0, 8, 10]], np.float32)
    g_rows, _, _ = match_boxes(a, b, 0.6, "greedy")
    h_rows, h_cols, _ = match_boxes(a, b, 0.6, "hungarian")
    assert g_rows.size == 1
    assert sorted(zip(h_rows.tolist(), h_cols.tolist(), strict=True)) == [(0, 1), (1, 0)]


@pytest.mark.parametrize("name", OBJECT_NAMES)
def test_contract_valid_unique_unlabeled_and_deterministic(name: str) -> None:
    strategy = get_strategy(name)
    idx, scores = strategy.query(SCENE, UNLABELED, LABELED, 12, random_state=3, return_scores=True)
    assert idx.dtype == np.int64 and idx.shape == (12,)
    assert len(set(idx.tolist())) == 12 and set(idx.tolist()) <= set(UNLABELED.tolist())
    assert scores.shape == (UNLABELED.size,) and np.isfinite(scores).all()
    again = get_strategy(name).query(SCENE, UNLABELED, LABELED, 12, random_state=3)
    assert again.tolist() == idx.tolist()


@pytest.mark.parametrize("name", OBJECT_NAMES)
def test_contract_errors(name: str) -> None:
    strategy = get_strategy(name)
    with pytest.raises(BatchTooLargeError):
        strategy.query(SCENE, np.arange(20, 25), LABELED, 6)
    with pytest.raises(EmptyPoolError):
        strategy.query(SCENE, np.array([], np.int64), LABELED, 1)
    with pytest.raises(InvalidIndicesError, match="both labeled and unlabeled"):
        strategy.query(SCENE, np.arange(10, 120), LABELED, 3)
    with pytest.raises(MissingPredictionsError, match="object predictions"):
        strategy.query(Predictions(embeddings=np.zeros((5, 2))), None, None, 2)


@pytest.mark.parametrize("name", OBJECT_NAMES)
def test_whole_pool_batch_returns_every_image_once(name: str) -> None:
    small = np.arange(20, 32)
    idx = get_strategy(name).query(SCENE, small, LABELED, small.size, random_state=0)
    assert sorted(idx.tolist()) == small.tolist()


@pytest.mark.parametrize("name", OBJECT_NAMES)
def test_single_placeholder_label_is_not_a_single_class_error(name: str) -> None:
    # Every labeled detection item carries the same item label (its objects are the labels).
    y = np.array(["<objects>"] * LABELED.size)
    idx = get_strategy(name).query(SCENE, UNLABELED, LABELED, 5, y_labeled=y, random_state=0)
    assert idx.size == 5


@pytest.mark.parametrize("name", [n for n in OBJECT_NAMES if n != "box_uncertain_diverse"])
def test_bad_parameters_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="aggregate"):
        get_strategy(name, aggregate="median").utility(SCENE)
    with pytest.raises(ConfigError, match="k must"):
        get_strategy(name, aggregate="topk", k=0).utility(SCENE)
    with pytest.raises(ConfigError, match="min_score"):
        get_strategy(name, min_score=1.5).utility(SCENE)


@pytest.mark.parametrize("name", ["box_entropy", "box_margin", "box_committee"])
def test_nan_scores_are_rejected(name: str) -> None:
    bad = objs([[0, 0, 10, 10]], [float("nan")], [[0.5, 0.5]])
    p = preds([bad], samples=[[bad]], views=[[bad]])
    with pytest.raises(InvalidPredictionsError, match="NaN"):
        get_strategy(name).utility(p)


@pytest.mark.parametrize("name", ["box_entropy", "box_margin", "expected_count"])
def test_an_image_without_boxes_scores_zero(name: str) -> None:
    p = preds([objs([], []), objs([[0, 0, 10, 10]], [0.5], [[0.6, 0.4]])])
    scores = get_strategy(name).utility(p)
    assert scores[0] == 0.0 and scores[1] > 0.0
