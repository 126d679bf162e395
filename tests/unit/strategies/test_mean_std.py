"""Tests of MeanSTD (Kampffmeyer et al., 2016; Kendall et al., 2015)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exemplar.errors import InvalidPredictionsError, MissingPredictionsError
from exemplar.predictions import Predictions
from exemplar.strategies import get_strategy
from exemplar.strategies.mean_std import MeanSTD


def _random_samples(t: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, 0.5), size=(t, n))


def test_matches_definition_population_std() -> None:
    samples = _random_samples(7, 25, 4)
    expected = samples.std(axis=0, ddof=0).mean(axis=1)
    scores = MeanSTD().utility(Predictions(samples=samples))
    np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_agreement_scores_zero_and_a_confident_split_scores_one_over_c() -> None:
    agree = np.tile(np.array([0.4, 0.3, 0.3]), (6, 1, 1))  # high entropy, no spread
    assert MeanSTD().utility(Predictions(samples=agree))[0] == 0.0
    split = np.array([[[1.0, 0.0, 0.0, 0.0]], [[0.0, 1.0, 0.0, 0.0]]])  # c = 4
    assert MeanSTD().utility(Predictions(samples=split))[0] == pytest.approx(0.25)


def test_prefers_disagreement_over_shared_uncertainty() -> None:
    disagree = np.array([[0.9, 0.1], [0.1, 0.9]] * 3)  # (6, 2): members split
    unsure = np.array([[0.5, 0.5], [0.52, 0.48]] * 3)  # members agree it is a coin flip
    samples = np.stack([unsure, disagree], axis=1)  # (6, 2, 2)
    idx, scores = MeanSTD().query(Predictions(samples=samples), batch_size=1, return_scores=True)
    assert idx.tolist() == [1]
    assert scores[1] > 10 * scores[0]


def test_row_wise_float32_memmap_and_registered(tmp_path: Path) -> None:
    samples = _random_samples(5, 40, 3, seed=3)
    full = MeanSTD().utility(Predictions(samples=samples))
    rows = np.array([1, 7, 30])
    np.testing.assert_allclose(
        MeanSTD().utility(Predictions(samples=samples).take(rows)), full[rows]
    )
    path = tmp_path / "s.npy"
    np.save(path, samples.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    np.testing.assert_allclose(MeanSTD().utility(Predictions(samples=mm)), full, atol=1e-6)
    assert isinstance(get_strategy("mean_std"), MeanSTD)


def test_missing_and_invalid_samples_raise() -> None:
    with pytest.raises(MissingPredictionsError):
        MeanSTD().query(Predictions(proba=np.full((3, 2), 0.5)), batch_size=1)
    samples = _random_samples(3, 4, 3)
    samples[1, 2] = [0.9, 0.9, -0.8]
    with pytest.raises(InvalidPredictionsError, match="negative"):
        MeanSTD().utility(Predictions(samples=samples))
