"""Box entropy: a box with uncertain classes makes its image worth labeling."""

from __future__ import annotations

import numpy as np
import pytest
from object_cases import objs, preds

from exemplar.errors import InvalidPredictionsError
from exemplar.strategies import BoxEntropy

BOX = [[0, 0, 10, 10]]


def test_uniform_class_proba_scores_above_a_confident_box() -> None:
    p = preds(
        [
            objs(BOX, [0.9], [[0.98, 0.01, 0.01]]),
            objs(BOX, [0.9], [[1 / 3, 1 / 3, 1 / 3]]),
            objs(BOX, [0.9], [[0.6, 0.3, 0.1]]),
        ],
        n_classes=3,
    )
    scores = BoxEntropy().utility(p)
    np.testing.assert_allclose(scores[1], np.log(3), rtol=1e-5)
    assert scores[1] > scores[2] > scores[0]
    idx = BoxEntropy().query(p, batch_size=2)
    assert idx.tolist() == [1, 2]


def test_without_class_proba_the_box_score_entropy_is_used() -> None:
    p = preds([objs(BOX, [0.95]), objs(BOX, [0.5]), objs(BOX, [0.7])], n_classes=1)
    scores = BoxEntropy().utility(p)
    np.testing.assert_allclose(scores[1], np.log(2), rtol=1e-5)
    assert np.argsort(-scores).tolist() == [1, 2, 0]


def test_one_class_proba_falls_back_to_the_box_score() -> None:
    # A one-class detector's class_proba is all ones: no information; the score decides.
    p = preds([objs(BOX, [0.95], [[1.0]]), objs(BOX, [0.5], [[1.0]])], n_classes=1)
    scores = BoxEntropy().utility(p)
    assert scores[1] > scores[0] > 0


def test_boxes_below_min_score_do_not_count() -> None:
    faint_uniform = objs([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.05], [[1, 0], [0.5, 0.5]])
    p = preds([faint_uniform])
    assert BoxEntropy(min_score=0.1).utility(p)[0] == pytest.approx(0.0, abs=1e-6)
    assert BoxEntropy(min_score=0.0).utility(p)[0] == pytest.approx(np.log(2), rel=1e-5)


def test_ground_truth_objects_without_scores_are_rejected() -> None:
    with pytest.raises(InvalidPredictionsError, match="box scores"):
        BoxEntropy().utility(preds([objs(BOX)]))
