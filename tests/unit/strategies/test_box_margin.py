"""Box margin: a box torn between two classes makes its image worth labeling."""

from __future__ import annotations

import numpy as np
from object_cases import objs, preds

from exemplar.strategies import BoxEntropy, BoxMargin

BOX = [[0, 0, 10, 10]]


def test_one_minus_the_top_two_gap_per_box() -> None:
    p = preds(
        [
            objs(BOX, [0.9], [[0.98, 0.01, 0.01]]),
            objs(BOX, [0.9], [[0.45, 0.45, 0.10]]),
            objs(BOX, [0.9], [[0.10, 0.30, 0.60]]),
        ],
        n_classes=3,
    )
    np.testing.assert_allclose(BoxMargin().utility(p), [0.03, 1.0, 0.7], rtol=1e-5)


def test_margin_differs_from_entropy_on_a_two_way_tie() -> None:
    # A two-way tie is the least certain box for margin, a three-way spread for entropy.
    p = preds(
        [objs(BOX, [0.9], [[0.5, 0.5, 0.0]]), objs(BOX, [0.9], [[0.4, 0.3, 0.3]])], n_classes=3
    )
    assert np.argmax(BoxMargin().utility(p)) == 0
    assert np.argmax(BoxEntropy().utility(p)) == 1


def test_without_class_proba_object_against_background() -> None:
    p = preds([objs(BOX, [0.9]), objs(BOX, [0.5]), objs(BOX, [0.3])], n_classes=1)
    np.testing.assert_allclose(BoxMargin().utility(p), [0.2, 1.0, 0.6], rtol=1e-5)


def test_image_with_the_most_torn_box_is_queried_first() -> None:
    p = preds(
        [
            objs([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.9], [[0.9, 0.1], [0.95, 0.05]]),
            objs([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.9], [[0.99, 0.01], [0.52, 0.48]]),
        ]
    )
    assert BoxMargin().query(p, batch_size=1).tolist() == [1]
