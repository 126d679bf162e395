"""The learned cost model (Settles, Craven & Friedland 2008): expected seconds per item."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.errors import ConfigError
from exemplar.models.label_cost import LabelCostModel, uncertainty_features


def _timed(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items whose labeling time grows with feature 0 and with the model's uncertainty."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    top = rng.uniform(0.4, 1.0, size=n)
    proba = np.column_stack([top, 1 - top])
    seconds = np.exp(1.5 + 0.6 * X[:, 0] + 1.2 * (1 - top) + rng.normal(scale=0.1, size=n))
    return X, proba, seconds


def test_it_learns_what_makes_an_item_slow() -> None:
    X, proba, seconds = _timed(120)
    model = LabelCostModel(min_labels=20).fit(X, seconds, proba=proba)
    assert model.summary_.kind == "regression"
    assert model.summary_.cv_error_model < model.summary_.cv_error_median
    X_new, proba_new, truth = _timed(200, seed=1)
    predicted = model.predict(X_new, proba=proba_new)
    assert np.corrcoef(np.log(predicted), np.log(truth))[0, 1] > 0.9
    # Chunked prediction gives the same numbers.
    np.testing.assert_allclose(model.predict(X_new, proba=proba_new, chunk_size=7), predicted)
    assert predicted.min() >= seconds.min() and predicted.max() <= seconds.max()


def test_noise_only_times_fall_back_to_the_median() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 5))
    seconds = np.exp(rng.normal(2.0, 0.5, size=80))
    model = LabelCostModel().fit(X, seconds)
    assert model.summary_.kind == "median"
    assert "does not beat the median" in model.summary_.reason
    np.testing.assert_allclose(model.predict(X[:4]), np.median(seconds))


def test_too_few_timed_labels_use_the_median_and_summarize_per_class() -> None:
    X, proba, seconds = _timed(10)
    labels = np.array(["a", "b"] * 5)
    model = LabelCostModel(min_labels=20).fit(X, seconds, proba=proba, labels=labels)
    s = model.summary_
    assert s.kind == "median" and "fewer than 20" in s.reason
    assert s.n_timed == 10 and s.median_seconds == pytest.approx(np.median(seconds))
    assert s.per_class["a"]["median"] == pytest.approx(np.median(seconds[labels == "a"]))
    assert s.to_dict()["per_class"]["b"]["labels"] == 5


def test_uncertainty_features_describe_the_models_doubt() -> None:
    f = uncertainty_features(np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]))
    assert f.shape == (2, 6)
    assert f[0, 0] == 1.0 and f[0, 1] == 1.0 and f[0, 2] == pytest.approx(0.0, abs=1e-9)
    assert f[1, 1] == pytest.approx(0.0) and f[1, 2] == pytest.approx(np.log(3))


def test_bad_input_is_refused() -> None:
    X, proba, seconds = _timed(30)
    with pytest.raises(ConfigError, match="over 0"):
        LabelCostModel().fit(X, np.r_[seconds[:-1], 0.0])
    with pytest.raises(ConfigError, match="24 h"):
        LabelCostModel().fit(X, np.r_[seconds[:-1], 90_000.0])
    with pytest.raises(ConfigError, match="rows"):
        LabelCostModel().fit(X[:-1], seconds)
    with pytest.raises(ConfigError, match="NaN"):
        LabelCostModel().fit(np.where(X > 1, np.nan, X), seconds)
    with pytest.raises(ConfigError, match="fit the cost model"):
        LabelCostModel().predict(X)
    with pytest.raises(ConfigError, match="at least 2"):
        LabelCostModel(min_labels=1).fit(X, seconds)
    model = LabelCostModel(min_labels=20).fit(X, seconds, proba=proba)
    with pytest.raises(ConfigError, match="pass item features"):
        model.predict(None)
    if model.pipeline_ is not None:
        with pytest.raises(ConfigError, match="columns"):
            model.predict(X[:, :2], proba=proba)
