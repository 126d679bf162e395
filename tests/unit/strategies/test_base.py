"""The shared helpers of the strategy contract."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.errors import ConfigError, InvalidIndicesError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies import Margin, get_strategy, top_k


def test_top_k_matches_full_sort() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(10_000)
    np.testing.assert_array_equal(top_k(scores, 50), np.argsort(-scores)[:50])


def test_top_k_breaks_ties_by_position() -> None:
    assert top_k(np.array([1.0, 2.0, 2.0, 2.0, 0.0]), 2).tolist() == [1, 2]


def test_top_k_keeps_the_lowest_positions_of_ties_at_the_cut() -> None:
    scores = np.round(np.random.default_rng(0).random(5_000), 1)  # many ties at every value
    for k in (1, 7, 260, 4_999):
        np.testing.assert_array_equal(top_k(scores, k), np.argsort(-scores, kind="stable")[:k])


def test_unlabeled_defaults_to_everything_not_labeled() -> None:
    proba = np.tile([0.5, 0.5], (5, 1))
    idx = Margin().query(Predictions(proba=proba), labeled=[0, 1, 2], batch_size=2)
    assert sorted(idx.tolist()) == [3, 4]


def test_boolean_mask_is_accepted_as_index_set() -> None:
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    idx = Margin().query(
        Predictions(proba=proba), unlabeled=np.array([False, True, True]), batch_size=1
    )
    assert idx.tolist() == [2]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_size(bad: object) -> None:
    with pytest.raises(StrategyError, match="batch_size"):
        Margin().query(Predictions(proba=np.tile([0.5, 0.5], (3, 1))), batch_size=bad)  # type: ignore[arg-type]


def test_float_indices_rejected() -> None:
    with pytest.raises(InvalidIndicesError, match="integer"):
        Margin().query(Predictions(proba=np.tile([0.5, 0.5], (3, 1))), unlabeled=[0.0, 1.0])


def test_y_labeled_length_must_match() -> None:
    with pytest.raises(InvalidIndicesError, match="labels for"):
        Margin().query(
            Predictions(proba=np.tile([0.5, 0.5], (3, 1))), labeled=[0], y_labeled=[1, 2]
        )


def test_unknown_strategy_lists_choices() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'nope'.*margin"):
        get_strategy("nope")


def test_predictions_shape_checks() -> None:
    from exemplar.errors import InvalidPredictionsError

    with pytest.raises(InvalidPredictionsError, match="disagree"):
        Predictions(proba=np.ones((3, 2)) / 2, embeddings=np.ones((4, 2)))
    with pytest.raises(InvalidPredictionsError, match="shape"):
        Predictions(proba=np.ones(3))
    p = Predictions(samples=np.full((4, 3, 2), 0.5))
    assert p.proba is not None and p.proba.shape == (3, 2)
