"""Tests of ConsensusKL (McCallum & Nigam, 1998)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy

from exemplar.errors import InvalidPredictionsError, MissingPredictionsError
from exemplar.predictions import Predictions
from exemplar.strategies.bald import Bald
from exemplar.strategies.consensus_kl import ConsensusKL


def _random_samples(t: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, 0.5), size=(t, n))


def test_matches_mean_kl_to_consensus() -> None:
    samples = _random_samples(5, 25, 4)
    consensus = samples.mean(axis=0)
    expected = np.mean([entropy(samples[t], consensus, axis=1) for t in range(5)], axis=0)
    scores = ConsensusKL().utility(Predictions(samples=samples))
    np.testing.assert_allclose(scores, expected, atol=1e-10)
    # Mean KL to the mean is the mutual information BALD scores.
    np.testing.assert_allclose(scores, Bald().utility(Predictions(samples=samples)), atol=1e-10)


def test_agreement_lowest_confident_split_highest() -> None:
    agree = np.array([[0.6, 0.3, 0.1]] * 4)
    unsure = np.array([[0.4, 0.35, 0.25], [0.3, 0.4, 0.3], [0.35, 0.3, 0.35], [0.3, 0.35, 0.35]])
    split = np.array(
        [[0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98], [0.98, 0.01, 0.01]]
    )
    samples = np.stack([agree, unsure, split], axis=1)  # (4, 3, 3)
    scores = ConsensusKL().utility(Predictions(samples=samples))
    assert scores[0] == pytest.approx(0.0, abs=1e-12)
    assert scores[0] < scores[1] < scores[2]


def test_exact_zeros_are_stable() -> None:
    samples = np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]]])
    scores = ConsensusKL().utility(Predictions(samples=samples))
    assert np.isfinite(scores).all()
    expected = np.mean([entropy(samples[t, 0], samples.mean(axis=0)[0]) for t in range(3)])
    assert scores[0] == pytest.approx(expected)


def test_labels_not_zero_based_work() -> None:
    samples = _random_samples(3, 5, 3)
    a = ConsensusKL().utility(Predictions(samples=samples))
    b = ConsensusKL().utility(Predictions(samples=samples, classes=np.array([10, 20, 30])))
    np.testing.assert_array_equal(a, b)


def test_query_returns_unique_unlabeled() -> None:
    preds = Predictions(samples=_random_samples(6, 30, 3))
    unlabeled = np.arange(0, 30, 2)
    idx, scores = ConsensusKL().query(preds, unlabeled, batch_size=5, return_scores=True)
    assert idx.shape == (5,) and np.unique(idx).size == 5
    assert np.isin(idx, unlabeled).all()
    assert scores.shape == unlabeled.shape


def test_deterministic_row_wise_and_float32() -> None:
    samples = _random_samples(7, 20, 5, seed=4)
    a = ConsensusKL().utility(Predictions(samples=samples))
    np.testing.assert_array_equal(a, ConsensusKL().utility(Predictions(samples=samples)))
    rows = np.array([1, 10, 19])
    np.testing.assert_allclose(
        ConsensusKL().utility(Predictions(samples=samples).take(rows)), a[rows]
    )
    s32 = samples.astype(np.float32)
    np.testing.assert_allclose(ConsensusKL().utility(Predictions(samples=s32)), a, atol=1e-5)


def test_missing_samples_raises() -> None:
    with pytest.raises(MissingPredictionsError):
        ConsensusKL().query(Predictions(proba=np.full((3, 2), 0.5)), batch_size=1)


def test_nan_samples_raise() -> None:
    samples = _random_samples(3, 4, 3)
    samples[1, 1, 1] = np.nan
    with pytest.raises(InvalidPredictionsError):
        ConsensusKL().query(Predictions(samples=samples), batch_size=1)
