"""Tests of Badge (Ash et al., 2020)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from exemplar.errors import MissingPredictionsError, SingleClassError
from exemplar.predictions import Predictions
from exemplar.strategies.badge import Badge, gradient_embedding_factors


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _explicit_gradients(proba: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The (n, C·D) gradient embeddings, formed explicitly as in the authors' code."""
    a = proba.copy()
    a[np.arange(len(a)), a.argmax(axis=1)] -= 1.0
    return (a[:, :, None] * x[:, None, :]).reshape(len(a), -1)


def test_gradient_norm_is_larger_for_uncertain_items() -> None:
    x = np.ones((3, 4))
    proba = np.array([[0.98, 0.01, 0.01], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33]])
    _, scores = Badge().query(
        Predictions(proba=proba, embeddings=x), batch_size=1, return_scores=True
    )
    assert scores[0] < scores[1] < scores[2]
    np.testing.assert_allclose(
        scores, np.linalg.norm(_explicit_gradients(proba, x), axis=1), rtol=1e-5
    )


def test_distance_identity_matches_explicit_gradient_embeddings() -> None:
    rng = np.random.default_rng(0)
    proba = _softmax(rng.normal(size=(30, 5)))
    x = rng.normal(size=(30, 7)).astype(np.float32)
    a, a_sq, x_sq = gradient_embedding_factors(proba, x, np.arange(30))
    g = _explicit_gradients(proba, x.astype(np.float64))
    np.testing.assert_allclose(a_sq * x_sq, (g**2).sum(axis=1), rtol=1e-5)
    via_identity = (a_sq * x_sq)[:, None] + (a_sq * x_sq)[None, :] - 2.0 * (a @ a.T) * (x @ x.T)
    np.testing.assert_allclose(via_identity, cdist(g, g, "sqeuclidean"), atol=1e-4)


def test_first_pick_is_largest_gradient_norm() -> None:
    rng = np.random.default_rng(1)
    proba = _softmax(rng.normal(size=(50, 4)))
    x = rng.normal(size=(50, 3))
    idx = Badge().query(Predictions(proba=proba, embeddings=x), batch_size=5, random_state=0)
    norms = np.linalg.norm(_explicit_gradients(proba, x), axis=1)
    assert idx[0] == int(np.argmax(norms))


def test_confident_items_are_rarely_selected() -> None:
    rng = np.random.default_rng(2)
    n = 100
    confident = _softmax(rng.normal(size=(n, 4)) + np.eye(4)[rng.integers(0, 4, n)] * 12.0)
    uncertain = _softmax(rng.normal(size=(n, 4)) * 0.3)
    proba = np.vstack([confident, uncertain])
    x = rng.normal(size=(2 * n, 8))
    for seed in range(5):
        idx = Badge().query(
            Predictions(proba=proba, embeddings=x), batch_size=10, random_state=seed
        )
        # Near-zero gradients form one tight group at the origin: at most one is drawn.
        assert (idx < n).sum() <= 1


def test_batch_is_diverse_not_near_duplicates() -> None:
    rng = np.random.default_rng(3)
    proba = _softmax(rng.normal(size=(60, 3)) * 0.2)
    x = rng.normal(size=(60, 5))
    x[:20] = 3.0 * x[0] + rng.normal(scale=1e-3, size=(20, 5))  # near-duplicates, largest norm
    proba[:20] = proba[0]
    pred = Predictions(proba=proba, embeddings=x)
    _, scores = Badge().query(pred, batch_size=1, return_scores=True)
    assert set(np.argsort(-scores)[:6].tolist()) <= set(range(20))  # top-k by norm: duplicates
    for seed in range(5):
        idx = Badge().query(pred, batch_size=6, random_state=seed)
        assert (idx < 20).sum() == 1


def test_copy_and_view_paths_agree() -> None:
    rng = np.random.default_rng(4)
    proba = _softmax(rng.normal(size=(80, 3)))
    x = rng.normal(size=(80, 4))
    pred = Predictions(proba=proba, embeddings=x)
    labeled = np.arange(0, 80, 3)
    for unl in (np.setdiff1d(np.arange(80), labeled), np.arange(1, 30, 3)):
        via_pool = Badge().query(pred, unl, labeled, batch_size=6, random_state=9)
        via_take = Badge().query(pred.take(unl), batch_size=6, random_state=9)
        assert via_pool.tolist() == unl[via_take].tolist()


def test_valid_unique_deterministic_and_float32() -> None:
    rng = np.random.default_rng(5)
    proba = _softmax(rng.normal(size=(300, 6)))
    x = rng.normal(size=(300, 10))
    labeled = np.arange(20)
    pred = Predictions(proba=proba, embeddings=x)
    a = Badge().query(pred, labeled=labeled, batch_size=40, random_state=1)
    assert np.unique(a).size == 40 and not np.isin(a, labeled).any()
    assert (
        a.tolist() == Badge().query(pred, labeled=labeled, batch_size=40, random_state=1).tolist()
    )
    pred32 = Predictions(proba=proba.astype(np.float32), embeddings=x.astype(np.float32))
    b = Badge().query(pred32, labeled=labeled, batch_size=40, random_state=1)
    assert np.unique(b).size == 40


def test_all_zero_gradients_still_fill_the_batch() -> None:
    proba = np.tile([1.0, 0.0], (12, 1))
    idx = Badge().query(Predictions(proba=proba, embeddings=np.ones((12, 2))), batch_size=12)
    assert sorted(idx.tolist()) == list(range(12))


def test_missing_outputs_raise() -> None:
    proba = np.full((4, 2), 0.5)
    with pytest.raises(MissingPredictionsError, match="embeddings"):
        Badge().query(Predictions(proba=proba), batch_size=1)
    with pytest.raises(MissingPredictionsError, match="proba"):
        Badge().query(Predictions(embeddings=np.ones((4, 2))), batch_size=1)
    with pytest.raises(SingleClassError):
        Badge().query(Predictions(proba=np.ones((4, 1)), embeddings=np.ones((4, 2))), batch_size=1)
