"""Tests of VariationRatios (Freeman, 1965; Gal et al., 2017)."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.errors import InvalidPredictionsError, MissingPredictionsError
from exemplar.predictions import Predictions
from exemplar.strategies.variation_ratios import VariationRatios


def _one_hot_votes(votes: list[list[int]], n_classes: int) -> np.ndarray:
    """Samples (t, n, c) in which member t puts 0.8 on class votes[t][i] for item i."""
    v = np.asarray(votes)
    samples = np.full((*v.shape, n_classes), 0.2 / (n_classes - 1))
    np.put_along_axis(samples, v[..., None], 0.8, axis=2)
    return samples


def _random_samples(t: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, 0.3), size=(t, n))


def test_unanimous_zero_split_highest() -> None:
    # 6 members, 3 items over 3 classes: unanimous, 4-2 split, 2-2-2 split.
    votes = [
        [1, 0, 0],
        [1, 0, 1],
        [1, 0, 2],
        [1, 0, 0],
        [1, 1, 1],
        [1, 1, 2],
    ]
    scores = VariationRatios().utility(Predictions(samples=_one_hot_votes(votes, 3)))
    np.testing.assert_allclose(scores, [0.0, 1 - 4 / 6, 1 - 2 / 6])
    assert scores[0] < scores[1] < scores[2]


def test_labels_not_zero_based_work() -> None:
    samples = _one_hot_votes([[0, 1], [2, 1], [2, 1]], 3)
    plain = VariationRatios().utility(Predictions(samples=samples))
    odd = VariationRatios().utility(Predictions(samples=samples, classes=np.array([5, 10, 99])))
    np.testing.assert_allclose(plain, odd)
    np.testing.assert_allclose(plain, [1 - 2 / 3, 0.0])


def test_query_returns_unique_unlabeled() -> None:
    preds = Predictions(samples=_random_samples(9, 60, 5))
    unlabeled = np.arange(10, 60)
    labeled = np.arange(10)
    idx, scores = VariationRatios().query(
        preds, unlabeled, labeled, batch_size=12, return_scores=True
    )
    assert idx.shape == (12,) and np.unique(idx).size == 12
    assert np.isin(idx, unlabeled).all()
    assert scores.shape == (50,)
    assert scores[idx - 10].min() >= np.delete(scores, idx - 10).max()


def test_deterministic_row_wise_and_float32() -> None:
    samples = _random_samples(10, 30, 4, seed=3)
    strategy = VariationRatios()
    a = strategy.utility(Predictions(samples=samples))
    np.testing.assert_array_equal(a, strategy.utility(Predictions(samples=samples)))
    rows = np.array([0, 5, 29])
    np.testing.assert_array_equal(
        strategy.utility(Predictions(samples=samples).take(rows)), a[rows]
    )
    np.testing.assert_allclose(strategy.utility(Predictions(samples=samples.astype(np.float32))), a)
    assert ((a >= 0) & (a <= 1 - 1 / 4 + 1e-12)).all()
    i1 = strategy.query(Predictions(samples=samples), batch_size=4, random_state=0)
    i2 = strategy.query(Predictions(samples=samples), batch_size=4, random_state=0)
    np.testing.assert_array_equal(i1, i2)


def test_missing_samples_raises() -> None:
    with pytest.raises(MissingPredictionsError):
        VariationRatios().query(Predictions(proba=np.full((3, 2), 0.5)), batch_size=1)


def test_nan_samples_raise() -> None:
    samples = _random_samples(3, 4, 3)
    samples[0, 0, 0] = np.nan
    with pytest.raises(InvalidPredictionsError):
        VariationRatios().query(Predictions(samples=samples), batch_size=1)
