"""Cluster-Margin: margin sampling spread over clusters (Citovsky et al., 2021).

Take the lowest-margin candidates, cluster them with average-linkage hierarchical
clustering, and fill the batch round-robin over the clusters, smallest cluster first, so a
large batch does not spend itself on near-duplicates of one confusing region.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from exemplar.errors import StrategyError
from exemplar.strategies.base import QueryContext, Strategy, top_k

__all__ = ["ClusterMargin"]

_CHUNK_ROWS = 65536


class ClusterMargin(Strategy):
    """Lowest-margin items, diversified by round-robin over average-linkage clusters.

    1. Score every unlabeled item by its margin ``p_1 - p_2`` and keep the
       ``margin_multiple · batch_size`` smallest (the candidates).
    2. Cluster the candidates' embeddings with average-linkage agglomerative clustering
       (Euclidean) into ``n_clusters`` clusters.
    3. Sort the clusters by ascending size; visit them round-robin, taking each time the
       lowest-margin item not yet taken from the cluster, until the batch is full.

    Parameters
    ----------
    margin_multiple : int, default=10
        Candidates per batch slot (the paper's ``k_m``).
    n_clusters : int or None, default=None
        Number of clusters cut from the dendrogram; None uses ``batch_size``, so a batch
        that fits takes exactly one item per cluster.
    max_candidates : int, default=5000
        Upper bound on the candidate set, because average linkage needs O(m²) time and
        memory for ``m`` candidates. The candidate set is never smaller than the batch.

    Notes
    -----
    The paper clusters the whole pool once, before the first query, with a distance
    threshold, and reuses those clusters. Here the small candidate set is clustered at
    each query instead: it costs O(m²) for ``m = margin_multiple · batch_size`` candidates
    (not O(N²) for the pool), needs no state across queries, and follows the embeddings
    as the model changes. Choosing among the lowest-margin items is unchanged.

    When the candidate set is the batch itself (``margin_multiple == 1`` or a batch of
    ``max_candidates`` or more), the result is plain margin sampling.

    Scores (``return_scores``) are ``1 - (p_1 - p_2)``: higher means a smaller margin.

    References
    ----------
    Citovsky, G., DeSalvo, G., Gentile, C., Karydas, L., Rajagopalan, A., Rostamizadeh, A.,
    & Kumar, S. (2021). Batch active learning at scale. NeurIPS.
    """

    name: ClassVar[str] = "cluster_margin"
    summary: ClassVar[str] = "lowest-margin items, round-robin over their clusters"
    reference: ClassVar[str] = "Citovsky et al. 2021, NeurIPS"
    requires: ClassVar[frozenset[str]] = frozenset({"proba", "embeddings"})

    def __init__(
        self,
        margin_multiple: int = 10,
        n_clusters: int | None = None,
        max_candidates: int = 5000,
    ) -> None:
        self.margin_multiple = margin_multiple
        self.n_clusters = n_clusters
        self.max_candidates = max_candidates

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        self._check_params()
        assert ctx.predictions is not None
        proba = ctx.predictions.require_proba()
        emb = ctx.predictions.require_embeddings()
        unl, batch = ctx.unlabeled, ctx.batch_size

        scores = np.empty(unl.size, dtype=np.float64)
        for start in range(0, unl.size, _CHUNK_ROWS):
            block = np.asarray(proba[unl[start : start + _CHUNK_ROWS]], dtype=np.float32)
            part = np.partition(block, -2, axis=1)
            scores[start : start + _CHUNK_ROWS] = 1.0 - (part[:, -1] - part[:, -2])

        n_cand = min(unl.size, max(batch, min(self.margin_multiple * batch, self.max_candidates)))
        cand = top_k(scores, n_cand)  # positions in `unl`, lowest margin first
        if n_cand == batch:
            return unl[cand], scores

        n_clusters = min(batch if self.n_clusters is None else self.n_clusters, n_cand)
        x = np.asarray(emb[unl[cand]], dtype=np.float64)
        if n_clusters > 1:
            tree = linkage(x, method="average", metric="euclidean")
            labels = fcluster(tree, t=n_clusters, criterion="maxclust")
        else:
            labels = np.ones(n_cand, dtype=np.int64)
        return unl[cand[_round_robin(labels, batch)]], scores

    def _check_params(self) -> None:
        for name in ("margin_multiple", "max_candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise StrategyError(f"{name} must be a positive integer, got {value!r}")
        n = self.n_clusters
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise StrategyError(f"n_clusters must be a positive integer or None, got {n!r}")


def _round_robin(labels: np.ndarray, batch: int) -> np.ndarray:
    """Positions taken round-robin over clusters, smallest cluster first.

    ``labels`` are the cluster labels of candidates already sorted best (lowest margin)
    first, so within a cluster the earliest position is the next to take. Clusters of
    equal size are visited in the order of their best candidate.
    """
    by_cluster = np.argsort(labels, kind="stable")  # positions grouped, ascending within
    bounds = np.flatnonzero(np.diff(labels[by_cluster])) + 1
    groups = np.split(by_cluster, bounds)
    order = np.lexsort(([g[0] for g in groups], [g.size for g in groups]))
    members = [groups[i] for i in order]
    picks: list[int] = []
    depth = 0
    while len(picks) < batch:
        for group in members:
            if depth < group.size:
                picks.append(int(group[depth]))
                if len(picks) == batch:
                    break
        depth += 1
    return np.asarray(picks, dtype=np.int64)
