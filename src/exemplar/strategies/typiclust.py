"""TypiClust: typical points of uncovered clusters, for a cold start (Hacohen et al., 2022).

With few labels, the best items to label are typical ones (in dense regions) that are also
diverse. TypiClust clusters the embeddings into ``|L| + B`` clusters and labels the most
typical item of each of the largest clusters that hold no labeled item yet.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from exemplar.errors import StrategyError
from exemplar.strategies._knn import knn_mean_distance
from exemplar.strategies.base import QueryContext, Strategy

__all__ = ["TypiClust", "knn_mean_distance"]

_CHUNK_ROWS = 65536
#: Upper bound on the elements of one (rows × references) or (rows × centroids) block.
_BLOCK_ELEMENTS = 1 << 22
#: Lloyd iterations of k-means on the fitting sample, at most.
_KMEANS_MAX_ITER = 5
#: Stop when the centroids move less than this, relative to the sample's mean variance.
_KMEANS_TOL = 1e-4
#: k-means++ seeds from a subsample of this many items per cluster (at least 2048).
_SEED_PER_CLUSTER = 4


@cache
def _threadpools() -> ThreadpoolController:
    # Found once: scanning the loaded libraries costs tens of milliseconds.
    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """Context that runs BLAS on one thread, for phases made of many small products.

    There a second thread only adds overhead, and contends on a busy machine.
    """
    return _threadpools().limit(limits=1, user_api="blas")


class TypiClust(Strategy):
    """Most typical item of each large, uncovered k-means cluster.

    1. Cluster the labeled and unlabeled embeddings into ``min(|L| + B, max_clusters)``
       clusters with k-means (seeded; fitted on a sample, see Notes).
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
    sample_size : int, default=10000
        k-means is fitted on a seeded random sample of at most this many items; every
        item is then assigned to its nearest centroid.

    Notes
    -----
    k-means. The centroids are seeded by greedy k-means++ on a random subsample of
    ``max(4 · n_clusters, 2048)`` items of the fitting sample, then refined by at most 5
    Lloyd iterations on the whole sample (fewer once the assignment stops changing or the
    centroids move by less than 1e-4 of the sample's variance). Every item is then
    assigned to its nearest centroid, in chunks. All of it runs in float32 on embeddings
    centred on the sample mean: O(N·K·D) time, memory linear in N. (The authors fit
    scikit-learn's (mini-batch) k-means on the whole pool.)

    The k-NN searches run in :mod:`exemplar.strategies._knn`: exact numpy blocks, or faiss
    (exact flat index) when ``n_reference`` reaches 20,000 and faiss is installed.

    Ten million items. Memory is linear in N (a cluster label and a distance per item,
    plus index arrays); the embeddings may be a memory-mapped ``.npy``
    (:func:`exemplar.data.embeddings.open_embeddings`) read chunk by chunk. The time is
    dominated by assigning every item to its nearest of ``K`` centroids, O(N·K·D)
    (measured at 10^7: bench/selection_10m.py, docs/scale.md).

    Typicality is computed only where the batch looks: for the unlabeled members of the
    clusters that the batch draws from (at most ``B`` clusters), which is all the
    selection needs; other items get a cheap proxy score (below). Exact k-NN within a
    cluster of ``n_c`` items costs O(n_c²·D). Here the neighbours of every item are
    searched among a seeded random subsample of at most ``n_reference`` unlabeled items
    of its cluster (all of them when the cluster is smaller), in chunks:
    O(n_c·n_reference·D) time per cluster, memory bounded by the chunk. The k nearest of
    ``n_reference`` references estimate the same local density at a coarser scale, so
    the ranking of dense versus sparse items is kept. Distances are Euclidean, in
    float32, after centering each cluster on its mean.

    As in the authors' code, labeled items count towards cluster sizes and the
    ordering but are not neighbours in the typicality estimate. Typicality is computed
    once per query; when the batch revisits a cluster it takes the next most typical
    item there (the authors recompute typicality without the items just picked).

    Works with no labels (cold start); then the embeddings are clustered into ``B``
    clusters.

    Scores (``return_scores``; higher means more typical within its cluster) are the
    typicality above for every unlabeled item of a cluster the batch draws from, so the
    score of every pick is its typicality. Items of the other clusters get a cheap proxy
    on the same scale: ``1 / (a · d + 1e-5)``, with ``d`` the item's distance to its
    centroid and ``a`` the median ratio of mean k-NN distance to centroid distance over
    the items whose typicality was computed. Items alone (unlabeled) in their cluster score
    0, as their typicality is undefined.

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
        sample_size: int = 10_000,
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

        labels, dist = _kmeans_assign(emb, rows, n_clusters, self.sample_size, rng)
        lab_labels, unl_labels = labels[: lab.size], labels[lab.size :]
        unl_dist = dist[lab.size :]
        sizes = np.bincount(labels, minlength=n_clusters)
        n_labeled = np.bincount(lab_labels, minlength=n_clusters)
        n_unlabeled = sizes - n_labeled

        # Fewest labeled first, then largest; small clusters only after all others.
        small = sizes <= self.min_cluster_size
        clusters = np.flatnonzero(n_unlabeled > 0)
        order = clusters[np.lexsort((-sizes[clusters], n_labeled[clusters], small[clusters]))]
        order, taken = _round_robin(n_unlabeled[order], order, ctx.batch_size)

        # Unlabeled positions of the visited clusters, grouped by cluster (ascending
        # position within a cluster).
        visited = np.zeros(n_clusters, dtype=bool)
        visited[order] = True
        in_visited = np.flatnonzero(visited[unl_labels])
        grouped = in_visited[np.argsort(unl_labels[in_visited], kind="stable")]
        starts = np.zeros(n_clusters + 1, dtype=np.int64)
        np.cumsum(np.bincount(unl_labels[in_visited], minlength=n_clusters), out=starts[1:])

        scores = np.zeros(unl.size, dtype=np.float64)
        ranked: list[np.ndarray] = []
        with _one_blas_thread():
            for c, n_take in zip(order.tolist(), taken.tolist(), strict=True):
                members = grouped[starts[c] : starts[c + 1]]
                typ = _typicality(emb, unl[members], self.n_neighbors, self.n_reference, rng)
                scores[members] = typ
                ranked.append(members[np.argsort(-typ, kind="stable")[:n_take]])

        # Emit round by round: every visited cluster's best, then their second best, ...
        rank = np.concatenate([np.arange(t) for t in taken.tolist()])
        visit = np.repeat(np.arange(order.size), taken)
        picks = np.concatenate(ranked)[np.lexsort((visit, rank))]

        _fill_proxy(scores, visited, unl_labels, unl_dist, n_unlabeled)
        return unl[picks], scores

    def _check_params(self) -> None:
        for name in ("n_neighbors", "max_clusters", "n_reference", "sample_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise StrategyError(f"{name} must be a positive integer, got {value!r}")
        value = self.min_cluster_size
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise StrategyError(f"min_cluster_size must be a non-negative integer, got {value!r}")


def _round_robin(
    capacity: np.ndarray, order: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clusters a round-robin visit of ``order`` draws from, and how many items from each.

    Round ``r`` takes one item from every cluster in ``order`` that still has one (cluster
    ``i`` holds ``capacity[i]``), until ``batch_size`` items are taken
    (``batch_size <= capacity.sum()``). Returns the visited clusters (in ``order``'s order)
    and the count taken from each.
    """
    # Fewest full rounds r with sum(min(r, capacity)) >= batch_size, by bisection.
    lo, hi = 0, int(capacity.max())
    while lo < hi:
        mid = (lo + hi) // 2
        if int(np.minimum(capacity, mid).sum()) >= batch_size:
            hi = mid
        else:
            lo = mid + 1
    taken = np.minimum(capacity, lo - 1)
    left = batch_size - int(taken.sum())
    # The last round stops after ``left`` of the clusters that still hold an item.
    last = np.flatnonzero(capacity > lo - 1)[:left]
    taken[last] += 1
    keep = taken > 0
    return order[keep], taken[keep]


def _fill_proxy(
    scores: np.ndarray,
    visited: np.ndarray,
    unl_labels: np.ndarray,
    unl_dist: np.ndarray,
    n_unlabeled: np.ndarray,
) -> None:
    """Scores of items outside the visited clusters: typicality estimated from ``unl_dist``.

    ``1 / (a · distance to centroid + 1e-5)``, where ``a`` is the median ratio of mean
    k-NN distance to centroid distance over the visited items with a typicality; 0 for an
    item alone in its cluster.
    """
    rest = ~visited[unl_labels]
    if not rest.any():
        return
    known = ~rest & (scores > 0)
    scale = 1.0
    if known.any():
        knn = 1.0 / scores[known] - 1e-5
        ratio = knn / np.maximum(unl_dist[known], 1e-12)
        scale = float(np.median(ratio))
    proxy = 1.0 / (scale * unl_dist[rest].astype(np.float64) + 1e-5)
    proxy[n_unlabeled[unl_labels[rest]] < 2] = 0.0
    scores[rest] = proxy


def _kmeans_assign(
    emb: np.ndarray, rows: np.ndarray, n_clusters: int, sample_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster of each of ``emb[rows]`` and its distance to its centroid (float32).

    k-means fitted on a seeded sample of at most ``sample_size`` of the rows (k-means++
    seeding on a smaller subsample, then Lloyd iterations), then every row is assigned to
    its nearest centroid in chunks. Computed in float32 on data centred on the sample mean.
    """
    n_fit = min(rows.size, max(sample_size, n_clusters))
    fit_rows = rows if n_fit == rows.size else np.sort(rng.choice(rows, n_fit, replace=False))
    xs = np.asarray(emb[fit_rows], dtype=np.float32)
    mean = xs.mean(axis=0, dtype=np.float64).astype(np.float32)
    xs -= mean
    if n_clusters == 1:
        centers = xs.mean(axis=0, dtype=np.float64).astype(np.float32)[None, :]
    else:
        n_seed = min(n_fit, max(_SEED_PER_CLUSTER * n_clusters, 2048))
        seed_pos = np.sort(rng.choice(n_fit, n_seed, replace=False))
        with _one_blas_thread():
            centers = _kmeans_plusplus(xs[seed_pos], n_clusters, rng)
        centers = _lloyd(xs, centers)
    labels, dist = _nearest(emb, centers, rows, mean)
    np.sqrt(dist, out=dist)
    return labels, dist


def _nearest(
    x: np.ndarray,
    centers: np.ndarray,
    rows: np.ndarray | None = None,
    shift: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each of ``x[rows] - shift`` and the squared distance to it.

    In float32 and in chunks; one product per chunk gives ``|c|² - 2 x·c`` (the rows
    padded with a column of ones), the squared distance less the row constant ``|x|²``.
    """
    n = x.shape[0] if rows is None else rows.size
    d = x.shape[1]
    k = centers.shape[0]
    aug = np.empty((d + 1, k), dtype=np.float32)
    aug[:d] = centers.T
    aug[:d] *= -2.0
    aug[d] = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(n, dtype=np.intp)
    d2 = np.empty(n, dtype=np.float32)
    step = max(1, min(_CHUNK_ROWS, _BLOCK_ELEMENTS // k, n))
    buf = np.empty((step, d + 1), dtype=np.float32)
    buf[:, d] = 1.0
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        xc = buf[:m, :d]
        xc[...] = x[start:stop] if rows is None else x[rows[start:stop]]
        if shift is not None:
            xc -= shift
        block = buf[:m] @ aug
        lab = block.argmin(axis=1)
        labels[start:stop] = lab
        best = block[np.arange(m), lab] + np.einsum("ij,ij->i", xc, xc)
        np.maximum(best, 0.0, out=d2[start:stop])
    return labels, d2


def _kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct rows of ``x`` chosen by greedy k-means++, float32.

    As scikit-learn's: each step draws ``2 + ln k`` candidates by D² sampling and keeps the
    one that lowers the potential most, so isolated outliers are rarely chosen.
    """
    n = x.shape[0]
    n_local = 2 + int(np.log(k))
    x_sq = np.einsum("ij,ij->i", x, x)
    x_m2 = -2.0 * x.T  # (d, n)
    chosen = np.empty(k, dtype=np.intp)
    picked = np.zeros(n, dtype=bool)
    idx = int(rng.integers(n))
    closest = np.maximum(x_sq + x_sq[idx] + x[idx] @ x_m2, 0.0)
    for i in range(k):
        chosen[i] = idx
        picked[idx] = True
        closest[idx] = 0.0  # not drawn again (duplicates of it are at distance 0 too)
        if i + 1 == k:
            break
        cum = np.cumsum(closest, dtype=np.float64)
        if cum[-1] <= 0:  # every row coincides with a centre: take any row not chosen yet
            idx = int(rng.choice(np.flatnonzero(~picked)))
            continue
        cand = np.searchsorted(cum, rng.random(n_local) * cum[-1], side="right")
        cand = np.minimum(cand, n - 1)
        d2 = x[cand] @ x_m2  # (n_local, n): squared distances less x_sq[cand]
        d2 += x_sq
        d2 += x_sq[cand][:, None]
        np.maximum(d2, 0.0, out=d2)
        np.minimum(d2, closest, out=d2)
        best = int(np.argmin(d2.sum(axis=1, dtype=np.float64)))
        idx = int(cand[best])
        closest = d2[best]
    return np.ascontiguousarray(x[chosen])


def _lloyd(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Lloyd iterations from ``centers``; a centre that loses all its rows stays put."""
    k = centers.shape[0]
    tol = _KMEANS_TOL * float(np.mean(np.var(x, axis=0, dtype=np.float64)))
    prev: np.ndarray | None = None
    for _ in range(_KMEANS_MAX_ITER):
        labels, _ = _nearest(x, centers)
        if prev is not None and np.array_equal(labels, prev):
            break
        prev = labels
        counts = np.bincount(labels, minlength=k)
        one_hot = sp.csr_matrix(
            (np.ones(labels.size, dtype=np.float32), labels, np.arange(labels.size + 1)),
            shape=(labels.size, k),
        )
        sums = np.asarray(one_hot.T @ x)
        full = np.flatnonzero(counts)
        new = centers.copy()
        new[full] = sums[full] / counts[full, None].astype(np.float32)
        shift = float(np.sum((new - centers) ** 2, dtype=np.float64))
        centers = new
        if shift <= tol:
            break
    return centers


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
