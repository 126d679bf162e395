"""Meaning tests for the four uncertainty measures, plus their specific errors."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.errors import InvalidPredictionsError, MissingPredictionsError, SingleClassError
from exemplar.predictions import Predictions
from exemplar.strategies import Entropy, LeastConfidence, Margin, RatioOfConfidence

# Row 0: confident. Row 1: two-way tie. Row 2: uniform over three. Row 3: mildly unsure.
PROBA = np.array(
    [
        [0.98, 0.01, 0.01],
        [0.50, 0.49, 0.01],
        [1 / 3, 1 / 3, 1 / 3],
        [0.70, 0.20, 0.10],
    ]
)


def _query(strategy: object, k: int, proba: np.ndarray = PROBA) -> tuple[np.ndarray, np.ndarray]:
    return strategy.query(Predictions(proba=proba), batch_size=k, return_scores=True)  # type: ignore[attr-defined]


def test_margin_picks_smallest_top2_gap_not_most_confident() -> None:
    idx, scores = _query(Margin(), 2)
    # Uniform (gap 0) and the near-tie (gap 0.01) have the smallest margins.
    assert set(idx.tolist()) == {1, 2}
    assert 0 not in idx
    assert scores[0] == pytest.approx(-0.97, abs=1e-6)


def test_margin_prefers_near_tie_over_low_max_with_clear_runner_up() -> None:
    proba = np.array([[0.40, 0.39, 0.21], [0.40, 0.10, 0.50]])
    # Row 1: max 0.5 but margin 0.10; row 0: max 0.4, margin 0.01 -> row 0 first.
    idx = Margin().query(Predictions(proba=proba), batch_size=1)
    assert idx.tolist() == [0]


def test_least_confidence_ranks_by_max_probability() -> None:
    idx, scores = _query(LeastConfidence(), 4)
    assert idx.tolist() == [2, 1, 3, 0]
    np.testing.assert_allclose(scores, 1 - PROBA.max(axis=1), atol=1e-6)


def test_entropy_prefers_uniform_over_two_way_tie() -> None:
    idx, scores = _query(Entropy(), 4)
    assert idx[0] == 2  # log(3) > entropy of [.5, .49, .01]
    assert idx[-1] == 0
    assert scores[2] == pytest.approx(np.log(3), rel=1e-5)


def test_entropy_and_least_confidence_disagree_where_they_should() -> None:
    # Same max probability (0.5); entropy prefers mass spread over the other classes.
    proba = np.array([[0.5, 0.5, 0.0, 0.0], [0.5, 0.2, 0.15, 0.15]])
    assert Entropy().query(Predictions(proba=proba), batch_size=1).tolist() == [1]
    assert Margin().query(Predictions(proba=proba), batch_size=1).tolist() == [0]


def test_ratio_prefers_top2_ratio_close_to_one() -> None:
    idx, scores = _query(RatioOfConfidence(), 4)
    assert idx[0] == 2 and scores[2] == pytest.approx(1.0)
    assert idx[-1] == 0


@pytest.mark.parametrize("cls", [LeastConfidence, Margin, Entropy, RatioOfConfidence])
def test_never_returns_labeled_even_if_most_uncertain(cls: type) -> None:
    idx = cls().query(Predictions(proba=PROBA), labeled=[2], batch_size=2)
    assert 2 not in idx
    assert len(set(idx.tolist())) == 2


@pytest.mark.parametrize("cls", [LeastConfidence, Margin, Entropy, RatioOfConfidence])
def test_nan_probabilities_raise(cls: type) -> None:
    proba = PROBA.copy()
    proba[1, 0] = np.nan
    with pytest.raises(InvalidPredictionsError, match="NaN"):
        cls().query(Predictions(proba=proba), batch_size=1)


@pytest.mark.parametrize("cls", [LeastConfidence, Margin, Entropy, RatioOfConfidence])
def test_single_class_model_raises(cls: type) -> None:
    with pytest.raises(SingleClassError):
        cls().query(Predictions(proba=np.ones((5, 1))), batch_size=1)


def test_missing_proba_raises() -> None:
    with pytest.raises(MissingPredictionsError):
        Margin().query(Predictions(embeddings=np.ones((3, 2))), batch_size=1)


def test_utility_is_rowwise_so_chunks_agree_with_whole() -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=1000)
    whole = Entropy().utility(Predictions(proba=proba))
    chunks = np.concatenate([Entropy().utility(Predictions(proba=c)) for c in np.split(proba, 4)])
    np.testing.assert_allclose(whole, chunks)
