"""TypiClust: typical points of uncovered clusters, for a cold start (Hacohen et al., 2022).

With few labels, the best items to label are typical ones (in dense regions) that are also
diverse. TypiClust clusters the embeddings into ``|L| + B`` clusters and labels the most
typical item of each of the largest clusters that hold no labeled item yet.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from exemplar.errors import StrategyError
from exemplar.strategies.base import QueryContext, Strategy

__all__ = ["TypiClust", "knn_mean_distance"]

_CHUNK_ROWS = 65536
#: Upper bound on the elements of one (rows × references) distance block.
_BLOCK_ELEMENTS = 1 << 22


class TypiClust(Strategy):
    """Most typical item of each large, uncovered k-means cluster.

    1. Cluster the labeled and unlabeled embeddings into ``min(|L| + B, max_clusters)``
       clusters with mini-batch k-means (seeded).
    2. Drop clusters of ``min_cluster_size`` items or fewer; order the rest by fewest
       labeled items, then largest size.
    3. Visit the clusters in that order (round-robin if the batch is larger) and take the
       most typical unlabeled item of each, where
       ``typicality(x) = 1 / (mean distance from x to its k nearest neighbours in its
       cluster)``, ``k = min(n_neighbors, cluster size // 2)``.

    Parameters
    ----------
    n_neighbors : int, default=20
        Neighbours in the typicality estimate (the paper's 20).
    max_clusters : int, default=500
        Cap on the number of clusters (the authors' code uses 500).
    min_cluster_size : int, default=5
        Clusters with this many items or fewer are visited only after all others (the
        authors' code drops them).
    n_reference : int, default=500
        Cap on the reference points per cluster for the nearest-neighbour search (see
        Notes).
    sample_size : int, default=20000
        k-means is fitted on a seeded random sample of at most this many items; every
        item is then assigned to its nearest centroid.

    Notes
    -----
    Approximation. Exact k-NN within a cluster of ``n_c`` items costs O(n_c²·D). Here the
    neighbours of every item are searched among a seeded random subsample of at most
    ``n_reference`` unlabeled items of its cluster (all of them when the cluster is
    smaller), in chunks: O(n_c·n_reference·D) time per cluster, O(N·n_reference·D) in
    all, with memory bounded by the chunk. The k nearest of ``n_reference`` references
    estimate the same local density at a coarser scale, so the ranking of dense versus
    sparse items is kept. Distances are Euclidean, in float32, after centering each
    cluster on its mean.

    As in the authors' code, labeled items count towards cluster sizes and the
    ordering but are not neighbours in the typicality estimate. Typicality is computed
    once per query; when the batch revisits a cluster it takes the next most typical
    item there (the authors recompute typicality without the items just picked).

    Works with no labels (cold start); then the embeddings are clustered into ``B``
    clusters. Scores (``return_scores``) are the typicality of every unlabeled item
    within its cluster.

    References
    ----------
    Hacohen, G., Dekel, A., & Weinshall, D. (2022). Active learning on a budget: Opposite
    strategies suit high and low budgets. ICML.
    """

    name: ClassVar[str] = "typiclust"
    summary: ClassVar[str] = "most typical item of each large cluster with no labels (cold start)"
    reference: ClassVar[str] = "Hacohen, Dekel & Weinshall 2022, ICML"
    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    cold_start: ClassVar[bool] = True

    def __init__(
        self,
        n_neighbors: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        n_reference: int = 500,
        sample_size: int = 20_000,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.n_reference = n_reference
        self.sample_size = sample_size

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        self._check_params()
        assert ctx.predictions is not None
        emb = ctx.predictions.require_embeddings()
        lab, unl, rng = ctx.labeled, ctx.unlabeled, ctx.rng
        rows = np.concatenate([lab, unl])
        n_clusters = min(lab.size + ctx.batch_size, self.max_clusters, rows.size)

        labels = _kmeans_labels(emb, rows, n_clusters, self.sample_size, rng)
        lab_labels, unl_labels = labels[: lab.size], labels[lab.size :]
        sizes = np.bincount(labels, minlength=n_clusters)
        n_labeled = np.bincount(lab_labels, minlength=n_clusters)
        n_unlabeled = sizes - n_labeled

        # Unlabeled positions grouped by cluster (ascending position within a cluster).
        by_cluster = np.argsort(unl_labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(n_unlabeled)])
        typicality = np.zeros(unl.size, dtype=np.float64)
        for c in np.flatnonzero(n_unlabeled):
            members = by_cluster[starts[c] : starts[c + 1]]
            typicality[members] = _typicality(
                emb, unl[members], self.n_neighbors, self.n_reference, rng
            )

        # Fewest labeled first, then largest; small clusters only after all others.
        small = sizes <= self.min_cluster_size
        clusters = np.flatnonzero(n_unlabeled > 0)
        order = clusters[np.lexsort((-sizes[clusters], n_labeled[clusters], small[clusters]))]
        ranked: dict[int, np.ndarray] = {}
        taken = dict.fromkeys(order.tolist(), 0)
        picks: list[int] = []
        while len(picks) < ctx.batch_size:
            for c in order.tolist():
                members = by_cluster[starts[c] : starts[c + 1]]
                if taken[c] >= members.size:
                    continue
                if c not in ranked:
                    ranked[c] = members[np.argsort(-typicality[members], kind="stable")]
                picks.append(int(ranked[c][taken[c]]))
                taken[c] += 1
                if len(picks) == ctx.batch_size:
                    break
        return unl[np.asarray(picks, dtype=np.int64)], typicality

    def _check_params(self) -> None:
        for name in ("n_neighbors", "max_clusters", "n_reference", "sample_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise StrategyError(f"{name} must be a positive integer, got {value!r}")
        value = self.min_cluster_size
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise StrategyError(f"min_cluster_size must be a non-negative integer, got {value!r}")


def _kmeans_labels(
    emb: np.ndarray, rows: np.ndarray, n_clusters: int, sample_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Cluster label of each of ``emb[rows]`` from mini-batch k-means fitted on a sample."""
    seed = int(rng.integers(2**31 - 1))
    if n_clusters == 1:
        return np.zeros(rows.size, dtype=np.int64)
    n_fit = min(rows.size, max(sample_size, n_clusters))
    fit_rows = rows if n_fit == rows.size else np.sort(rng.choice(rows, n_fit, replace=False))
    km = MiniBatchKMeans(
        n_clusters=n_clusters,
        n_init=1,
        batch_size=min(4096, n_fit),
        init_size=min(n_fit, max(3 * n_clusters, 1024)),  # k-means++ on a small sample
        random_state=seed,
        compute_labels=False,
    ).fit(np.asarray(emb[fit_rows], dtype=np.float32))
    labels = np.empty(rows.size, dtype=np.int64)
    for start in range(0, rows.size, _CHUNK_ROWS):
        chunk = np.asarray(emb[rows[start : start + _CHUNK_ROWS]], dtype=np.float32)
        labels[start : start + _CHUNK_ROWS] = km.predict(chunk)
    return labels


def _typicality(
    emb: np.ndarray, rows: np.ndarray, n_neighbors: int, n_reference: int, rng: np.random.Generator
) -> np.ndarray:
    """``1 / (mean distance to the k nearest neighbours + 1e-5)`` for each of ``emb[rows]``.

    Neighbours are searched among ``rows`` (a random subsample of ``n_reference`` of them
    when there are more), excluding the item itself; ``k = min(n_neighbors, len(rows)//2)``.
    """
    n = rows.size
    k = min(n_neighbors, n // 2)
    if k < 1:
        return np.zeros(n, dtype=np.float64)
    x = np.asarray(emb[rows], dtype=np.float32)
    x -= x.mean(axis=0, dtype=np.float64).astype(np.float32)
    if n <= n_reference:
        ref_pos = np.arange(n)
    else:
        ref_pos = np.sort(rng.choice(n, n_reference, replace=False))
    self_ref = np.full(n, -1, dtype=np.int64)
    self_ref[ref_pos] = np.arange(ref_pos.size)
    k = min(k, ref_pos.size - 1)  # a reference row is never its own neighbour
    return 1.0 / (knn_mean_distance(x, x[ref_pos], k, self_ref) + 1e-5)


def knn_mean_distance(
    x: np.ndarray, ref: np.ndarray, k: int, self_ref: np.ndarray | None = None
) -> np.ndarray:
    """Mean Euclidean distance from each row of ``x`` to its ``k`` nearest rows of ``ref``.

    Brute force in chunks of rows, so memory is bounded by one (chunk × len(ref)) block,
    with a partial sort (``np.partition``) per row. Computed in float32; centre ``x`` and
    ``ref`` on a common mean first to limit cancellation.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
        Query rows.
    ref : ndarray of shape (m, d), float32
        Reference rows.
    k : int
        Neighbours per row, ``1 <= k < m`` (``k <= m`` if ``self_ref`` is None).
    self_ref : ndarray of int of shape (n,), optional
        ``self_ref[i]`` is the row of ``ref`` that is ``x[i]`` itself (``-1`` if none); it
        is not counted as a neighbour.

    Returns
    -------
    ndarray of shape (n,), float64
    """
    n, m = x.shape[0], ref.shape[0]
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    ref_m2 = -2.0 * ref.T  # (d, m)
    step = max(1, min(_CHUNK_ROWS, _BLOCK_ELEMENTS // max(m, 1)))
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, step):
        xc = x[start : start + step]
        # |x - r|² minus the row constant |x|², which does not change the ranking.
        part = xc @ ref_m2
        part += ref_sq[None, :]
        if self_ref is not None:
            own = self_ref[start : start + step]
            hit = np.flatnonzero(own >= 0)
            part[hit, own[hit]] = np.inf
        nearest = np.partition(part, k - 1, axis=1)[:, :k].astype(np.float64)
        nearest += np.einsum("ij,ij->i", xc, xc)[:, None]
        np.maximum(nearest, 0.0, out=nearest)
        out[start : start + step] = np.sqrt(nearest).mean(axis=1)
    return out
