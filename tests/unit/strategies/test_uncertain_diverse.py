"""Top-m uncertain, then diverse: uncertain like margin, spread out unlike margin."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.errors import ConfigError, MissingPredictionsError
from exemplar.predictions import Predictions
from exemplar.strategies import Margin, UncertainThenDiverse


def _scene() -> Predictions:
    rng = np.random.default_rng(0)
    # Region A: 10 near-duplicates, the most uncertain. Regions B and C: 10 each, uncertain
    # too, a bit less. Region D: far-away confident outliers a pure diversity method would
    # grab. With batch 3 and factor 10, the 30 candidates are exactly A, B and C.
    emb = np.vstack(
        [
            rng.normal([0, 0], 0.01, (10, 2)),
            rng.normal([5, 0], 0.01, (10, 2)),
            rng.normal([0, 5], 0.01, (10, 2)),
            rng.normal([50, 50], 5.0, (20, 2)),
        ]
    )
    margin = np.r_[np.full(10, 0.01), np.full(10, 0.05), np.full(10, 0.06), np.full(20, 0.9)]
    p1 = (1 + margin) / 2
    proba = np.c_[p1, 1 - p1]
    return Predictions(proba=proba, embeddings=emb)


@pytest.mark.parametrize("diversity", ["kmeans", "coreset"])
def test_batch_spans_uncertain_regions_and_skips_confident(diversity: str) -> None:
    pred = _scene()
    idx = UncertainThenDiverse(diversity=diversity).query(pred, batch_size=3, random_state=0)
    regions = {min(i // 10, 3) for i in idx.tolist()}
    assert regions == {0, 1, 2}
    margin_regions = {min(i // 10, 3) for i in Margin().query(pred, batch_size=3).tolist()}
    assert margin_regions == {0}, "plain margin piles into the near-duplicates"


def test_factor_one_is_plain_uncertainty() -> None:
    pred = _scene()
    a = UncertainThenDiverse(factor=1).query(pred, batch_size=5)
    b = Margin().query(pred, batch_size=5)
    assert sorted(a.tolist()) == sorted(b.tolist())


def test_bad_parameters_and_missing_embeddings() -> None:
    pred = _scene()
    with pytest.raises(ConfigError, match="diversity"):
        UncertainThenDiverse(diversity="nope").query(pred, batch_size=2)
    with pytest.raises(ConfigError, match="factor"):
        UncertainThenDiverse(factor=0).query(pred, batch_size=2)
    with pytest.raises(MissingPredictionsError):
        UncertainThenDiverse().query(Predictions(proba=pred.proba), batch_size=2)
