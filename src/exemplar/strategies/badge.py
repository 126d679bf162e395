"""BADGE: batch active learning by diverse gradient embeddings (Ash et al., 2020).

Each unlabeled item gets the gradient of the cross-entropy loss with respect to the last
linear layer, taking the model's own prediction as the label; k-means++ seeding over those
gradient embeddings then picks a batch that is both uncertain (large gradients) and diverse
(gradients pointing in different directions).

The gradient embedding ``g_i = a_i ⊗ x_i`` (``a_i = p_i - onehot(argmax p_i)``, ``x_i`` the
penultimate-layer embedding) has C·D entries and is never formed (DESIGN.md §9). Distances
come from the identity::

    ||g_i - g_j||² = |a_i|²|x_i|² + |a_j|²|x_j|² - 2 (a_i·a_j)(x_i·x_j)

so the distance of every item to a new center costs O(N·(C + D)).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.strategies.base import QueryContext, Strategy

__all__ = ["Badge", "gradient_embedding_factors"]

_CHUNK_ROWS = 65536


class Badge(Strategy):
    """Pick a batch by k-means++ seeding over last-layer gradient embeddings.

    The first center is the item with the largest gradient norm (as in the authors' code);
    each next center is drawn with probability proportional to its squared gradient-space
    distance to the nearest center already chosen (D² sampling), using the seeded generator.

    The strategy has no hyper-parameters.

    Notes
    -----
    The gradient of the cross-entropy loss at the hypothesised label ``ŷ = argmax p`` with
    respect to the weights of class ``c`` of the last linear layer is ``(p_c - [c = ŷ]) x``.
    Its norm ``|p - onehot(ŷ)| · |x|`` is near zero for a confident prediction and grows
    with uncertainty, so confident items are rarely sampled.

    For a deep network, pass the penultimate activations (the input of the last linear
    layer) as embeddings: ``(p - onehot(ŷ)) ⊗ x`` is then exactly the gradient of the loss
    with respect to that layer's weights (the bias is left out, as in the authors' code); a
    test checks it against PyTorch autograd. For a linear scikit-learn model the "embedding"
    ``x`` is the input feature vector (the last layer is the whole model).

    Computations run in float32 on the unlabeled rows only; labeled items play no part, as
    in the paper. The N × C·D gradient matrix is never formed: memory is O(N·(C + D)) for
    one float32 copy of the unlabeled probabilities and at most one float32 copy of the
    embeddings (none when they are already float32, e.g. memory-mapped from streaming
    scoring, and the unlabeled items are most of the dataset).

    Scores (``return_scores``) are the gradient-embedding norms ``|a_i|·|x_i|``.

    References
    ----------
    Ash, J. T., Zhang, C., Krishnamurthy, A., Langford, J., & Agarwal, A. (2020). Deep batch
    active learning by diverse, uncertain gradient lower bounds. ICLR.
    Arthur, D., & Vassilvitskii, S. (2007). k-means++: The advantages of careful seeding.
    SODA.
    """

    name: ClassVar[str] = "badge"
    summary: ClassVar[str] = "k-means++ over gradient embeddings: uncertain and diverse"
    reference: ClassVar[str] = "Ash et al. 2020, ICLR"
    requires: ClassVar[frozenset[str]] = frozenset({"proba", "embeddings"})

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        assert ctx.predictions is not None
        proba = ctx.predictions.require_proba()
        emb = ctx.predictions.require_embeddings()
        full = 2 * ctx.unlabeled.size >= emb.shape[0]
        if full:
            # Whole-array view; rows outside the pool are masked out of the sampling.
            x, pos = np.asarray(emb, dtype=np.float32), ctx.unlabeled
            a_rows = np.arange(emb.shape[0])
        else:
            x, pos = np.asarray(emb[ctx.unlabeled], dtype=np.float32), None
            a_rows = ctx.unlabeled
        a, a_sq, x_sq = gradient_embedding_factors(proba, x, a_rows)
        g_sq = a_sq * x_sq  # squared gradient norms

        candidate = np.zeros(x.shape[0], dtype=bool)
        if pos is None:
            candidate[:] = True
        else:
            candidate[pos] = True
        # Squared distance to the nearest center; zero outside the candidates.
        min_dist = np.where(candidate, np.float32(np.inf), np.float32(0.0))

        picks = [int(np.argmax(np.where(candidate, g_sq, -np.inf)))]
        while True:
            row = picks[-1]
            candidate[row] = False
            _update(min_dist, a, x, g_sq, row)
            if len(picks) == ctx.batch_size:
                break
            picks.append(_d2_sample(min_dist, candidate, ctx.rng))

        rows = np.asarray(picks, dtype=np.int64)
        scores_rows = pos if pos is not None else slice(None)
        scores = np.sqrt(g_sq[scores_rows]).astype(np.float64)
        return (rows if full else ctx.unlabeled[rows]), scores


def gradient_embedding_factors(
    proba: np.ndarray, x: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two factors of the gradient embeddings ``g_i = a_i ⊗ x_i`` and their squared norms.

    Parameters
    ----------
    proba : ndarray of shape (n_items, n_classes)
        Class probabilities of the whole dataset.
    x : ndarray of shape (len(rows), n_features), float32
        Embeddings of ``rows``, in the same order.
    rows : ndarray of int
        Dataset rows described by ``x``.

    Returns
    -------
    a : ndarray of shape (len(rows), n_classes), float32
        ``p_i - onehot(argmax p_i)``.
    a_sq, x_sq : ndarray of shape (len(rows),), float32
        ``|a_i|²`` and ``|x_i|²``; the squared gradient norm is their product.
    """
    n = rows.size
    a = np.empty((n, proba.shape[1]), dtype=np.float32)
    a_sq = np.empty(n, dtype=np.float32)
    x_sq = np.empty(n, dtype=np.float32)
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n)
        block = np.asarray(proba[rows[start:stop]], dtype=np.float32)
        block[np.arange(stop - start), block.argmax(axis=1)] -= 1.0
        a[start:stop] = block
        a_sq[start:stop] = np.einsum("ij,ij->i", block, block)
        xc = x[start:stop]
        x_sq[start:stop] = np.einsum("ij,ij->i", xc, xc)
    return a, a_sq, x_sq


def _update(
    min_dist: np.ndarray,
    a: np.ndarray,
    x: np.ndarray,
    g_sq: np.ndarray,
    row: int,
) -> None:
    """Lower ``min_dist`` with the squared gradient distances to center ``row``: O(N·(C+D)).

    ``||g_i - g_r||² = |g_i|² + |g_r|² - 2 (a_i·a_r)(x_i·x_r)`` with ``|g_i|² = |a_i|²|x_i|²``.
    """
    dot = a @ a[row]
    dot *= x @ x[row]
    dot *= -2.0
    dot += g_sq
    dot += g_sq[row]
    np.maximum(dot, 0.0, out=dot)
    np.minimum(min_dist, dot, out=min_dist)
    min_dist[row] = 0.0


def _d2_sample(min_dist: np.ndarray, candidate: np.ndarray, rng: np.random.Generator) -> int:
    """Draw a row with probability proportional to ``min_dist`` (D² sampling).

    Centers and non-candidates have ``min_dist == 0`` and are never drawn. If every
    remaining distance is zero (only duplicates of centers are left), a remaining candidate
    (``candidate`` marks the rows still available) is drawn uniformly.
    """
    cum = np.cumsum(min_dist, dtype=np.float64)
    total = cum[-1]
    if total > 0.0:
        row = int(np.searchsorted(cum, rng.random() * total, side="right"))
        if row < min_dist.size and candidate[row]:
            return row
        return int(np.flatnonzero(candidate & (min_dist > 0.0))[-1])  # rounding at the end
    remaining = np.flatnonzero(candidate)
    return int(remaining[rng.integers(remaining.size)])
