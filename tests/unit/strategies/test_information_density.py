"""Tests of InformationDensity (Settles & Craven, 2008)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from exemplar.errors import MissingPredictionsError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies import Entropy
from exemplar.strategies.information_density import InformationDensity


def _dirichlet(n: int, c: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(c), size=n)


def _blob_with_outliers() -> tuple[np.ndarray, np.ndarray]:
    """300 items in a Gaussian blob, then 5 isolated outliers far from it and each other."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(300, 5))
    outliers = np.eye(5) * 25.0
    return np.vstack([dense, outliers]), np.arange(300, 305)


@pytest.mark.parametrize("n_reference", [1000, 60])
def test_dense_items_beat_outliers_at_equal_uncertainty(n_reference: int) -> None:
    x, outliers = _blob_with_outliers()
    proba = np.tile([0.5, 0.3, 0.2], (len(x), 1))
    idx, scores = InformationDensity(n_reference=n_reference).query(
        Predictions(proba=proba, embeddings=x), batch_size=10, random_state=0, return_scores=True
    )
    assert not np.isin(idx, outliers).any()
    assert scores[outliers].max() < scores[:300].min()
    # Within the blob, the centre is denser than the fringe.
    r = np.linalg.norm(x[:300], axis=1)
    assert (
        scores[:300][r < np.quantile(r, 0.1)].mean() > scores[:300][r > np.quantile(r, 0.9)].mean()
    )


def test_uncertain_outlier_loses_to_slightly_less_uncertain_dense_item() -> None:
    x, outliers = _blob_with_outliers()
    proba = np.tile([0.7, 0.2, 0.1], (len(x), 1))
    proba[outliers] = [1 / 3, 1 / 3, 1 / 3]  # the most uncertain items are outliers
    pred = Predictions(proba=proba, embeddings=x)
    assert set(Entropy().query(pred, batch_size=5).tolist()) == set(outliers.tolist())
    idx = InformationDensity().query(pred, batch_size=5, random_state=0)
    assert not np.isin(idx, outliers).any()


def test_bigger_cluster_is_denser() -> None:
    x, y = make_blobs(
        n_samples=[240, 30], centers=[[0, 0], [10, 10]], cluster_std=1.0, random_state=1
    )
    proba = np.tile([0.6, 0.4], (len(x), 1))
    _, scores = InformationDensity().query(
        Predictions(proba=proba, embeddings=x), batch_size=1, random_state=0, return_scores=True
    )
    assert np.median(scores[y == 0]) > np.median(scores[y == 1])


def test_beta_zero_is_plain_uncertainty() -> None:
    proba = _dirichlet(80, 4, 2)
    x = np.random.default_rng(2).normal(size=(80, 3))
    pred = Predictions(proba=proba, embeddings=x)
    first, second = np.sort(proba, axis=1)[:, -1], np.sort(proba, axis=1)[:, -2]
    expected = {
        "entropy": -(proba * np.log(proba)).sum(axis=1),
        "margin": 1.0 - (first - second),
        "least_confidence": 1.0 - first,
    }
    for base, want in expected.items():
        strat = InformationDensity(base=base, beta=0.0)
        idx, scores = strat.query(pred, batch_size=5, return_scores=True)
        np.testing.assert_allclose(scores, want, rtol=1e-5)
        assert idx.tolist() == np.argsort(-want, kind="stable")[:5].tolist()


def test_cosine_density_is_the_exact_mean_cosine_similarity() -> None:
    rng = np.random.default_rng(3)
    x = np.abs(rng.normal(size=(60, 4)))
    proba = _dirichlet(60, 3, 3)
    labeled = np.arange(10)
    unl = np.arange(10, 60)
    _, scores = InformationDensity(density="cosine", beta=2.0).query(
        Predictions(proba=proba, embeddings=x), unl, labeled, 3, return_scores=True
    )
    unit = x[unl] / np.linalg.norm(x[unl], axis=1, keepdims=True)
    density = (unit @ unit.T).mean(axis=1)  # the paper's formula, over the unlabeled pool
    entropy = -(proba[unl] * np.log(proba[unl])).sum(axis=1)
    np.testing.assert_allclose(scores, entropy * density**2, rtol=1e-5)


def test_valid_unique_deterministic() -> None:
    x, _ = make_blobs(n_samples=400, centers=4, n_features=6, random_state=4)
    proba = _dirichlet(400, 4, 4)
    pred = Predictions(proba=proba, embeddings=x.astype(np.float32))
    labeled = np.arange(0, 400, 8)
    strat = InformationDensity(n_neighbors=5, n_reference=150)
    a = strat.query(pred, labeled=labeled, batch_size=25, random_state=6)
    assert np.unique(a).size == 25 and not np.isin(a, labeled).any()
    assert a.tolist() == strat.query(pred, labeled=labeled, batch_size=25, random_state=6).tolist()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": "bald"},
        {"density": "euclid"},
        {"beta": -1.0},
        {"beta": float("nan")},
        {"n_neighbors": 0},
        {"n_reference": 0},
    ],
)
def test_invalid_parameters_raise(kwargs: dict[str, object]) -> None:
    pred = Predictions(proba=_dirichlet(10, 2, 0), embeddings=np.ones((10, 2)))
    with pytest.raises(StrategyError):
        InformationDensity(**kwargs).query(pred, batch_size=1)


def test_missing_embeddings_raise() -> None:
    with pytest.raises(MissingPredictionsError, match="embeddings"):
        InformationDensity().query(Predictions(proba=_dirichlet(5, 2, 0)), batch_size=1)
