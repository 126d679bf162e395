"""Tests of VoteEntropy (Dagan & Engelson, 1995)."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.errors import InvalidPredictionsError, MissingPredictionsError
from exemplar.predictions import Predictions
from exemplar.strategies.vote_entropy import VoteEntropy


def _one_hot_votes(votes: list[list[int]], n_classes: int) -> np.ndarray:
    """Samples (t, n, c) in which member t puts 0.9 on class votes[t][i] for item i."""
    v = np.asarray(votes)
    samples = np.full((*v.shape, n_classes), 0.1 / (n_classes - 1))
    np.put_along_axis(samples, v[..., None], 0.9, axis=2)
    return samples


def _random_samples(t: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, 0.3), size=(t, n))


def test_unanimous_scores_zero_and_even_split_scores_log_k() -> None:
    # 4 members, 3 items: unanimous, 3-1 split, 2-2 split.
    votes = [[0, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]]
    scores = VoteEntropy().utility(Predictions(samples=_one_hot_votes(votes, 3)))
    assert scores[0] == pytest.approx(0.0)
    assert scores[2] == pytest.approx(np.log(2))
    assert scores[0] < scores[1] < scores[2]


def test_uses_hard_votes_not_confidence() -> None:
    # Same votes, different confidence: vote entropy is the same.
    confident = _one_hot_votes([[0], [1]], 2)
    timid = np.array([[[0.51, 0.49]], [[0.49, 0.51]]])
    s1 = VoteEntropy().utility(Predictions(samples=confident))
    s2 = VoteEntropy().utility(Predictions(samples=timid))
    np.testing.assert_allclose(s1, s2)


def test_labels_not_zero_based_work() -> None:
    samples = _one_hot_votes([[0, 2, 1], [2, 2, 1], [1, 2, 1]], 3)
    plain = VoteEntropy().utility(Predictions(samples=samples))
    odd = VoteEntropy().utility(Predictions(samples=samples, classes=np.array([3, 17, 42])))
    strings = VoteEntropy().utility(
        Predictions(samples=samples, classes=np.array(["cat", "dog", "eel"]))
    )
    np.testing.assert_allclose(plain, odd)
    np.testing.assert_allclose(plain, strings)
    assert plain[0] == pytest.approx(np.log(3))
    assert plain[1] == pytest.approx(0.0)


def test_query_returns_unique_unlabeled_best_first() -> None:
    samples = _random_samples(7, 50, 4)
    preds = Predictions(samples=samples)
    labeled = np.arange(0, 50, 5)
    idx, scores = VoteEntropy().query(preds, labeled=labeled, batch_size=8, return_scores=True)
    unlabeled = np.setdiff1d(np.arange(50), labeled)
    assert idx.dtype == np.int64 and idx.shape == (8,)
    assert np.unique(idx).size == 8
    assert np.isin(idx, unlabeled).all()
    assert scores.shape == unlabeled.shape
    picked = scores[np.searchsorted(unlabeled, idx)]
    assert (np.diff(picked) <= 0).all()
    assert picked.min() >= np.delete(scores, np.searchsorted(unlabeled, idx)).max()


def test_deterministic_row_wise_and_float32() -> None:
    samples = _random_samples(5, 40, 3, seed=1)
    strategy = VoteEntropy()
    a = strategy.utility(Predictions(samples=samples))
    b = strategy.utility(Predictions(samples=samples.copy()))
    np.testing.assert_array_equal(a, b)
    rows = np.array([3, 9, 27])
    np.testing.assert_allclose(strategy.utility(Predictions(samples=samples).take(rows)), a[rows])
    s32 = strategy.utility(Predictions(samples=samples.astype(np.float32)))
    np.testing.assert_allclose(s32, a, atol=1e-6)
    i1 = strategy.query(Predictions(samples=samples), batch_size=5, random_state=0)
    i2 = strategy.query(Predictions(samples=samples), batch_size=5, random_state=1)
    np.testing.assert_array_equal(i1, i2)


def test_missing_samples_raises() -> None:
    proba = np.full((4, 2), 0.5)
    with pytest.raises(MissingPredictionsError):
        VoteEntropy().query(Predictions(proba=proba), batch_size=1)


def test_nan_samples_raise() -> None:
    samples = _random_samples(3, 5, 2)
    samples[1, 2, 0] = np.nan
    with pytest.raises(InvalidPredictionsError):
        VoteEntropy().query(Predictions(samples=samples), batch_size=1)


def test_rows_that_are_not_distributions_raise() -> None:
    logits = np.random.default_rng(0).normal(size=(3, 5, 2))
    with pytest.raises(InvalidPredictionsError, match="softmax"):
        VoteEntropy().utility(Predictions(samples=logits))
