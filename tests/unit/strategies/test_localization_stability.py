"""Localization stability: an image whose boxes move between views ranks first."""

from __future__ import annotations

import numpy as np
import pytest
from object_cases import objs, preds, shifted

from exemplar.errors import MissingPredictionsError
from exemplar.strategies import LocalizationStability

BOXES = [[0, 0, 10, 10], [50, 50, 60, 60]]


def test_unstable_localization_ranks_above_stable() -> None:
    stable = objs(BOXES, [0.9, 0.8], [[0.9, 0.1], [0.9, 0.1]])
    unstable = objs(BOXES, [0.9, 0.8], [[0.9, 0.1], [0.9, 0.1]])
    views = [
        [shifted(stable, 0.5), shifted(unstable, 4.0)],
        [shifted(stable, -0.5), shifted(unstable, -4.0)],
    ]
    p = preds([stable, unstable], views=views)
    scores = LocalizationStability().utility(p)
    assert scores[1] > scores[0] > 0
    assert LocalizationStability().query(p, batch_size=1).tolist() == [1]


def test_hand_computed_score_weighted_instability() -> None:
    # Box A (score 0.9): IoU 1 in view 1, 0.5 in view 2 -> stability 0.75.
    # Box B (score 0.3): found in view 1 only (IoU 1), missing in view 2 -> stability 0.5.
    image = objs([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.3])
    view1 = objs([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.3])
    view2 = objs([[0, 0, 10, 5]], [0.9])  # IoU with A: 50 / 100
    p = preds([image], views=[[view1], [view2]])
    weighted = 1 - (0.9 * 0.75 + 0.3 * 0.5) / 1.2
    assert LocalizationStability().utility(p)[0] == pytest.approx(weighted, rel=1e-5)
    assert LocalizationStability(aggregate="max").utility(p)[0] == pytest.approx(0.5, rel=1e-5)
    assert LocalizationStability(aggregate="mean").utility(p)[0] == pytest.approx(0.375, rel=1e-5)


def test_confident_boxes_weigh_more_than_faint_ones() -> None:
    # Same geometry; in image 0 the moving box is confident, in image 1 it is faint.
    def image(s_moving: float, s_still: float) -> tuple:
        main = objs([[0, 0, 10, 10], [50, 50, 60, 60]], [s_moving, s_still])
        view = objs([[5, 0, 15, 10], [50, 50, 60, 60]], [s_moving, s_still])
        return main, view

    m0, v0 = image(0.9, 0.2)
    m1, v1 = image(0.2, 0.9)
    scores = LocalizationStability().utility(preds([m0, m1], views=[[v0, v1]]))
    assert scores[0] > scores[1]


def test_classification_term_breaks_ties_towards_uncertain_classes() -> None:
    sure = objs([[0, 0, 10, 10]], [0.9], [[0.95, 0.05]])
    unsure = objs([[0, 0, 10, 10]], [0.9], [[0.55, 0.45]])
    p = preds([sure, unsure], views=[[sure, unsure]])
    plain = LocalizationStability().utility(p)
    assert plain[0] == pytest.approx(plain[1])
    combined = LocalizationStability(classification=1.0).utility(p)
    np.testing.assert_allclose(combined - plain, [0.05, 0.45], rtol=1e-4)


def test_views_are_required() -> None:
    with pytest.raises(MissingPredictionsError, match="views=True"):
        LocalizationStability().utility(preds([objs(BOXES, [0.9, 0.9])]))
