"""Errors and pool handling shared by the four uncertainty measures."""

from __future__ import annotations

import numpy as np
import pytest
from uncertainty_cases import PROBA

from exemplar.errors import InvalidPredictionsError, MissingPredictionsError, SingleClassError
from exemplar.predictions import Predictions
from exemplar.strategies import Entropy, LeastConfidence, Margin, RatioOfConfidence


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
