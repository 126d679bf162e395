"""Badge on a deep net's penultimate activations is BADGE on its real last-layer gradients.

The gradients are taken with PyTorch autograd (Ash et al., 2020: the gradient of the
cross-entropy at the predicted label with respect to the last linear layer's weights).
"""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.predictions import Predictions
from exemplar.strategies.badge import Badge

torch = pytest.importorskip("torch")


def _net_outputs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities, penultimate activations and autograd last-layer gradients of a small MLP."""
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    head = torch.nn.Linear(8, 3)
    x = torch.randn(n, 5)
    grads = []
    for i in range(n):
        head.zero_grad()
        logits = head(torch.relu(body(x[i : i + 1])))
        predicted = logits.argmax(dim=1)  # the hypothesised label, as in the paper
        torch.nn.functional.cross_entropy(logits, predicted).backward()
        grads.append(head.weight.grad.flatten().numpy().copy())
    with torch.no_grad():
        h = torch.relu(body(x))
        proba = torch.softmax(head(h), dim=1)
    return proba.numpy(), h.numpy(), np.asarray(grads, dtype=np.float64)


def test_scores_are_the_autograd_gradient_norms() -> None:
    proba, h, grads = _net_outputs(40)
    _, scores = Badge().query(
        Predictions(proba=proba, embeddings=h), batch_size=1, return_scores=True
    )
    np.testing.assert_allclose(scores, np.linalg.norm(grads, axis=1), rtol=1e-4, atol=1e-7)


def test_selection_is_kmeans_pp_over_the_autograd_gradients() -> None:
    proba, h, grads = _net_outputs(40)
    picked = Badge().query(Predictions(proba=proba, embeddings=h), batch_size=6, random_state=3)
    # k-means++ seeding over the explicit gradients, drawing from the same generator.
    rng = np.random.default_rng(3)
    picks = [int(np.argmax((grads**2).sum(axis=1)))]
    min_dist = ((grads - grads[picks[0]]) ** 2).sum(axis=1)
    while len(picks) < 6:
        cum = np.cumsum(min_dist)
        row = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        picks.append(row)
        min_dist = np.minimum(min_dist, ((grads - grads[row]) ** 2).sum(axis=1))
    assert picked.tolist() == picks
