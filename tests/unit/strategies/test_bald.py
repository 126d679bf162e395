"""Tests of Bald (Houlsby et al., 2011; Gal et al., 2017)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import entropy

from exemplar.errors import InvalidPredictionsError, MissingPredictionsError
from exemplar.predictions import Predictions
from exemplar.strategies.bald import Bald


def _random_samples(t: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, 0.5), size=(t, n))


def _disagree_vs_uniform() -> np.ndarray:
    """Item 0: each of 4 samples confident, in different classes. Item 1: every sample ~uniform."""
    disagree = np.array([[0.97, 0.01, 0.01, 0.01], [0.01, 0.97, 0.01, 0.01]] * 2)
    uniform = np.array([[0.26, 0.25, 0.25, 0.24], [0.24, 0.25, 0.26, 0.25]] * 2)
    return np.stack([disagree, uniform], axis=1)  # (t=4, n=2, c=4)


def test_prefers_disagreement_over_uniform_uncertainty() -> None:
    samples = _disagree_vs_uniform()
    scores = Bald().utility(Predictions(samples=samples))
    assert scores[0] > scores[1]
    assert scores[1] == pytest.approx(0.0, abs=1e-3)
    # Predictive entropy ranks them the other way: BALD is not entropy.
    mean = samples.mean(axis=0)
    assert entropy(mean[1]) > entropy(mean[0])
    idx = Bald().query(Predictions(samples=samples), batch_size=1)
    np.testing.assert_array_equal(idx, [0])


def test_agreeing_committee_scores_zero_and_matches_definition() -> None:
    agree = np.tile(np.array([0.7, 0.2, 0.1]), (5, 1, 1))  # (5, 1, 3), all equal
    assert Bald().utility(Predictions(samples=agree))[0] == pytest.approx(0.0, abs=1e-12)
    samples = _random_samples(6, 20, 3)
    expected = entropy(samples.mean(axis=0), axis=1) - entropy(samples, axis=2).mean(axis=0)
    scores = Bald().utility(Predictions(samples=samples))
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    assert (scores >= 0).all()
    # Two confident members split between two classes: I = log 2 at the limit.
    split = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert Bald().utility(Predictions(samples=split))[0] == pytest.approx(np.log(2))


def test_labels_not_zero_based_work() -> None:
    samples = _random_samples(4, 6, 3)
    a = Bald().utility(Predictions(samples=samples))
    b = Bald().utility(Predictions(samples=samples, classes=np.array(["x", "y", "z"])))
    np.testing.assert_array_equal(a, b)


def test_query_returns_unique_unlabeled() -> None:
    preds = Predictions(samples=_random_samples(8, 40, 4))
    labeled = np.array([1, 3, 5, 7])
    idx = Bald().query(preds, labeled=labeled, batch_size=10)
    assert idx.shape == (10,) and np.unique(idx).size == 10
    assert not np.isin(idx, labeled).any()


def test_deterministic_row_wise_float32_and_memmap(tmp_path: Path) -> None:
    samples = _random_samples(5, 30, 4, seed=2)
    a = Bald().utility(Predictions(samples=samples))
    np.testing.assert_array_equal(a, Bald().utility(Predictions(samples=samples)))
    rows = np.array([2, 4, 8])
    np.testing.assert_allclose(Bald().utility(Predictions(samples=samples).take(rows)), a[rows])
    s32 = samples.astype(np.float32)
    np.testing.assert_allclose(Bald().utility(Predictions(samples=s32)), a, atol=1e-5)
    mm = np.lib.format.open_memmap(tmp_path / "s.npy", mode="w+", dtype=np.float32, shape=s32.shape)
    mm[:] = s32
    mm.flush()
    ro = np.load(tmp_path / "s.npy", mmap_mode="r")
    np.testing.assert_allclose(Bald().utility(Predictions(samples=ro)), a, atol=1e-5)


def test_missing_samples_raises() -> None:
    with pytest.raises(MissingPredictionsError):
        Bald().query(Predictions(proba=np.full((3, 2), 0.5)), batch_size=1)


def test_nan_samples_raise() -> None:
    samples = _random_samples(3, 4, 3)
    samples[2, 3, 1] = np.nan
    with pytest.raises(InvalidPredictionsError):
        Bald().query(Predictions(samples=samples), batch_size=1)


def test_negative_or_unnormalized_samples_raise() -> None:
    samples = _random_samples(3, 4, 3)
    samples[0, 1] = [1.2, -0.1, -0.1]
    with pytest.raises(InvalidPredictionsError, match="negative"):
        Bald().utility(Predictions(samples=samples))
    samples = _random_samples(3, 4, 3) * 2
    with pytest.raises(InvalidPredictionsError, match="sums to"):
        Bald().utility(Predictions(samples=samples))
