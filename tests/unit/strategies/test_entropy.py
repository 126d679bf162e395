"""Entropy prefers spread-out distributions; its utility is row-wise."""

from __future__ import annotations

import numpy as np
import pytest
from uncertainty_cases import query

from exemplar.predictions import Predictions
from exemplar.strategies import Entropy, Margin


def test_entropy_prefers_uniform_over_two_way_tie() -> None:
    idx, scores = query(Entropy(), 4)
    assert idx[0] == 2  # log(3) > entropy of [.5, .49, .01]
    assert idx[-1] == 0
    assert scores[2] == pytest.approx(np.log(3), rel=1e-5)


def test_entropy_and_least_confidence_disagree_where_they_should() -> None:
    # Same max probability (0.5); entropy prefers mass spread over the other classes.
    proba = np.array([[0.5, 0.5, 0.0, 0.0], [0.5, 0.2, 0.15, 0.15]])
    assert Entropy().query(Predictions(proba=proba), batch_size=1).tolist() == [1]
    assert Margin().query(Predictions(proba=proba), batch_size=1).tolist() == [0]


def test_utility_is_rowwise_so_chunks_agree_with_whole() -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=1000)
    whole = Entropy().utility(Predictions(proba=proba))
    chunks = np.concatenate([Entropy().utility(Predictions(proba=c)) for c in np.split(proba, 4)])
    np.testing.assert_allclose(whole, chunks)
