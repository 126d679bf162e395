"""Expected count: an image whose number of objects is uncertain ranks first."""

from __future__ import annotations

import numpy as np
import pytest
from object_cases import objs, preds

from exemplar.errors import MissingPredictionsError
from exemplar.strategies import ExpectedCount


def _grid(k: int, score: float) -> object:
    xy = np.array([[12.0 * (i % 8), 12.0 * (i // 8)] for i in range(k)])
    return objs(np.c_[xy, xy + 10], [score] * k)


def test_crowded_uncertain_image_ranks_highest() -> None:
    images = [
        _grid(3, 0.95),  # few, sure
        _grid(30, 0.97),  # crowded, sure
        _grid(3, 0.5),  # few, unsure
        _grid(30, 0.5),  # crowded, unsure
    ]
    p = preds(images, n_classes=1)
    scores = ExpectedCount().utility(p)
    assert np.argsort(-scores).tolist()[0] == 3
    # Poisson-binomial variance: sum of s (1 - s).
    np.testing.assert_allclose(scores, [3 * 0.95 * 0.05, 30 * 0.97 * 0.03, 0.75, 7.5], rtol=1e-4)
    assert ExpectedCount().query(p, batch_size=1).tolist() == [3]


def test_count_samples_variance_is_preferred_when_given() -> None:
    images = [_grid(5, 0.5), _grid(5, 0.99)]
    counts = np.array([[5.0, 5.0], [5.0, 9.0], [5.0, 1.0]])  # passes disagree on image 1 only
    p = preds(images, n_classes=1, count_samples=counts)
    scores = ExpectedCount().utility(p)
    np.testing.assert_allclose(scores, [0.0, np.var([5.0, 9.0, 1.0])])
    assert ExpectedCount(source="boxes").utility(p)[0] == pytest.approx(1.25, rel=1e-5)


def test_pass_counts_from_box_samples() -> None:
    main = _grid(4, 0.9)
    passes = [[_grid(4, 0.9)], [_grid(2, 0.9)], [_grid(6, 0.9)]]
    p = preds([main], n_classes=1, samples=passes)
    expected = np.var([3.6, 1.8, 5.4])
    assert ExpectedCount().utility(p)[0] == pytest.approx(expected, rel=1e-5)


def test_forcing_a_missing_source_is_an_error() -> None:
    with pytest.raises(MissingPredictionsError, match="count_samples"):
        ExpectedCount(source="count_samples").utility(preds([_grid(2, 0.5)], n_classes=1))
