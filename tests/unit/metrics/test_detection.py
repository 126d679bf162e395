"""COCO mAP in memory and box matching counts, checked against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from exemplar.metrics import match_boxes, mean_average_precision
from exemplar.objects import Objects

CLASSES = ["cell", "debris"]


def _o(boxes: list, classes: list, scores: list | None = None, masks: list | None = None):
    return Objects(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(classes, np.int64),
        None if scores is None else np.asarray(scores, np.float32),
        masks=masks,
    )


TRUTH = [
    _o([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]),
    _o([[5, 5, 15, 15], [40, 40, 60, 60]], [0, 0]),
]


def test_perfect_predictions_score_one() -> None:
    pred = [_o(t.boxes, t.classes, [0.9] * len(t)) for t in TRUTH]
    got = mean_average_precision(TRUTH, pred, CLASSES)
    assert got["map50"] == pytest.approx(1.0) and got["map"] == pytest.approx(1.0)
    assert got["per_class"] == {"cell": pytest.approx(1.0), "debris": pytest.approx(1.0)}
    assert (got["n_truth"], got["n_predicted"]) == (4, 4)


def test_all_wrong_predictions_score_zero() -> None:
    wrong_place = [_o([[100, 100, 110, 110]], [0], [0.9]), _o([[200, 0, 210, 10]], [0], [0.8])]
    assert mean_average_precision(TRUTH, wrong_place, CLASSES)["map50"] == 0.0
    wrong_class = [_o(t.boxes, 1 - t.classes, [0.9] * len(t)) for t in TRUTH]
    assert mean_average_precision(TRUTH, wrong_class, CLASSES)["map50"] == 0.0


def test_partial_case_matches_a_hand_computation() -> None:
    # Class "cell" has 3 true boxes. Ranked predictions: TP (0.9), FP (0.8), TP (0.7); the
    # third true cell is missed. Precision/recall: (1, 1/3), (1/2, 1/3), (2/3, 2/3).
    # COCO's 101-point interpolated AP: recall points 0..0.33 -> precision 1 (34 points),
    # 0.34..0.66 -> 2/3 (33 points), above 2/3 -> 0.  AP = (34 + 33 * 2/3) / 101.
    # Class "debris": one true box, found at the top -> AP 1.
    pred = [
        _o([[0, 0, 10, 10], [20, 20, 30, 30], [60, 0, 70, 10]], [0, 1, 0], [0.9, 0.95, 0.8]),
        _o([[5, 5, 15, 15]], [0], [0.7]),
    ]
    got = mean_average_precision(TRUTH, pred, CLASSES)
    cell = (34 + 33 * 2 / 3) / 101
    assert got["per_class"]["cell"] == pytest.approx(cell, abs=1e-6)
    assert got["per_class"]["debris"] == pytest.approx(1.0)
    assert got["map50"] == pytest.approx((cell + 1) / 2, abs=1e-6)


def test_loose_box_counts_at_05_but_not_at_strict_thresholds() -> None:
    # IoU 0.6: a hit at 0.5, 0.55 and 0.6, a miss at 0.65..0.95 -> mAP 3/10.
    truth = [_o([[0, 0, 10, 10]], [0])]
    pred = [_o([[0, 0, 10, 6]], [0], [0.9])]
    got = mean_average_precision(truth, pred, CLASSES, iou="0.5:0.95")
    assert got["map50"] == pytest.approx(1.0)
    assert got["map"] == pytest.approx(0.3)
    assert got["per_class"]["cell"] == pytest.approx(0.3)
    assert math.isnan(got["per_class"]["debris"])


def test_no_predictions_and_no_truth() -> None:
    none = [Objects.empty(), Objects.empty()]
    got = mean_average_precision(TRUTH, none, CLASSES)
    assert got["map50"] == 0.0 and got["map"] == 0.0 and got["n_predicted"] == 0
    empty_truth = mean_average_precision(none, TRUTH, CLASSES)
    assert math.isnan(empty_truth["map50"]) and math.isnan(empty_truth["map"])


def test_more_than_100_objects_per_image_are_all_evaluated() -> None:
    xy = np.array([[12.0 * (i % 15), 12.0 * (i // 15)] for i in range(150)])
    boxes = np.c_[xy, xy + 10]
    truth = [_o(boxes, [0] * 150)]
    pred = [_o(boxes, [0] * 150, np.linspace(0.99, 0.5, 150))]
    assert mean_average_precision(truth, pred, CLASSES)["map50"] == pytest.approx(1.0)


def _rle(h: int, w: int, rows: slice, cols: slice) -> dict:
    m = np.zeros((h, w), np.uint8, order="F")
    m[rows, cols] = 1
    rle = mask_utils.encode(m)
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def test_segm_map_with_rle_masks() -> None:
    # Same boxes, different masks: box AP is perfect, mask AP sees that one mask is wrong.
    m_a = _rle(64, 64, slice(0, 20), slice(0, 20))
    m_b = _rle(64, 64, slice(30, 50), slice(30, 50))
    m_b_wrong = _rle(64, 64, slice(30, 50), slice(30, 33))  # IoU 3/20 with m_b
    truth = [_o([[0, 0, 20, 20], [30, 30, 50, 50]], [0, 0], masks=[m_a, m_b])]
    good = [_o([[0, 0, 20, 20], [30, 30, 50, 50]], [0, 0], [0.9, 0.8], masks=[m_a, m_b])]
    half = [_o([[0, 0, 20, 20], [30, 30, 50, 50]], [0, 0], [0.9, 0.8], masks=[m_a, m_b_wrong])]
    assert mean_average_precision(truth, good, CLASSES, segm=True)["map"] == pytest.approx(1.0)
    got = mean_average_precision(truth, half, CLASSES, segm=True)
    # One of two cells found, at the top of the ranking: precision 1 up to recall 0.5.
    assert got["map50"] == pytest.approx(51 / 101, abs=1e-6)
    assert mean_average_precision(truth, half, CLASSES)["map50"] == pytest.approx(1.0)


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="2 images of truth but 1"):
        mean_average_precision(TRUTH, TRUTH[:1], CLASSES)
    with pytest.raises(ValueError, match="iou must be"):
        mean_average_precision(TRUTH, TRUTH, CLASSES, iou="0.75")
    with pytest.raises(ValueError, match="class index 1 outside"):
        mean_average_precision(TRUTH, TRUTH, ["cell"])
    with pytest.raises(ValueError, match="needs masks"):
        mean_average_precision(TRUTH, TRUTH, CLASSES, segm=True)


def test_match_boxes_counts_and_ratios() -> None:
    pred = [
        _o([[0, 0, 10, 10], [20, 20, 30, 30], [60, 0, 70, 10]], [0, 0, 0], [0.9, 0.95, 0.8]),
        _o([[5, 5, 15, 15], [5, 5, 15, 15]], [0, 0], [0.7, 0.6]),
    ]
    # TP: image 0 box 0, image 1 box 0; FP: wrong class, nowhere, duplicate; FN: 2.
    got = match_boxes(TRUTH, pred)
    assert (got["tp"], got["fp"], got["fn"]) == (2, 3, 2)
    assert got["precision"] == pytest.approx(0.4) and got["recall"] == pytest.approx(0.5)
    assert got["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    agnostic = match_boxes(TRUTH, pred, class_aware=False)
    assert (agnostic["tp"], agnostic["fp"], agnostic["fn"]) == (3, 2, 1)
    faint_out = match_boxes(TRUTH, pred, min_score=0.75)
    assert (faint_out["tp"], faint_out["fp"], faint_out["fn"]) == (1, 2, 3)


def test_match_boxes_on_empty_sets() -> None:
    empty = [Objects.empty()]
    assert match_boxes(empty, empty) == {
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
    }
    missed = match_boxes([_o([[0, 0, 5, 5]], [0])], empty)
    assert missed["recall"] == 0.0 and missed["precision"] == 0.0 and missed["f1"] == 0.0
