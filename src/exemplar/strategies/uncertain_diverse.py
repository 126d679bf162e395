"""Hybrid: take the top-m most uncertain items, then choose a diverse batch among them."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.cluster import KMeans

from exemplar.errors import ConfigError
from exemplar.strategies.base import QueryContext, ScoringStrategy, Strategy, top_k
from exemplar.strategies.registry import get_strategy

__all__ = ["UncertainThenDiverse"]


class UncertainThenDiverse(Strategy):
    """Pre-filter by uncertainty, then pick a diverse batch from the filtered candidates.

    Uncertainty alone fills a batch with near-duplicates from one confusing region;
    diversity alone wastes labels on easy items. This hybrid keeps the ``factor × batch``
    most uncertain items, then:

    * ``diversity="kmeans"`` (default): weighted k-means with ``batch`` clusters over the
      candidates' embeddings, weights being the (shifted) uncertainty, and the candidate
      nearest each centroid is selected (Zhdanov 2019);
    * ``diversity="coreset"``: greedy k-center over the candidates, seeded with the labeled
      set, so picks are far from what is already labeled and from each other.

    Parameters
    ----------
    base : str, default="margin"
        Row-wise uncertainty strategy used for the pre-filter.
    factor : int, default=10
        Candidates kept per batch slot (``m = factor × batch_size``).
    diversity : {"kmeans", "coreset"}, default="kmeans"
        How the diverse batch is drawn from the candidates.

    References
    ----------
    Zhdanov, F. (2019). Diverse mini-batch active learning. arXiv:1901.05954.
    Brinker, K. (2003). Incorporating diversity in active learning with support vector
    machines. ICML.
    """

    name: ClassVar[str] = "uncertain_diverse"
    summary: ClassVar[str] = "top factor×batch uncertain items, then a diverse batch among them"
    reference: ClassVar[str] = "Zhdanov 2019, arXiv:1901.05954; Brinker 2003, ICML"
    requires: ClassVar[frozenset[str]] = frozenset({"proba", "embeddings"})

    def __init__(self, base: str = "margin", factor: int = 10, diversity: str = "kmeans") -> None:
        self.base = base
        self.factor = factor
        self.diversity = diversity

    @property
    def row_scorer(self) -> ScoringStrategy:
        """The base strategy: streaming scoring keeps its utility of every item."""
        base = get_strategy(self.base)
        if not isinstance(base, ScoringStrategy):
            raise ConfigError(f"{self.name} needs a scoring strategy as base, not {self.base!r}")
        return base

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        assert ctx.predictions is not None
        if self.factor < 1:
            raise ConfigError(f"factor must be at least 1, got {self.factor}")
        if self.diversity not in ("kmeans", "coreset"):
            raise ConfigError(f"diversity must be 'kmeans' or 'coreset', got {self.diversity!r}")
        base = self.row_scorer
        if ctx.reduced is not None:  # the base's utility, kept while the pool was scored
            scores = np.asarray(ctx.reduced.utility[ctx.unlabeled], dtype=np.float64)
        else:
            scores = base._unlabeled_utility(ctx)  # reads only what the base requires
        m = min(scores.size, self.factor * ctx.batch_size)
        cand = top_k(scores, m)
        # Only the candidates' embeddings are read: a pool's may be on disk (memory-mapped).
        emb_cand = ctx.predictions.require_embeddings(ctx.unlabeled[cand])
        if m == ctx.batch_size:
            return ctx.unlabeled[cand], scores
        if self.diversity == "coreset":
            picked = get_strategy("coreset").query(
                ctx.predictions,
                ctx.unlabeled[cand],
                ctx.labeled,
                ctx.batch_size,
                random_state=ctx.rng,
            )
            return picked, scores
        picked_pos = _weighted_kmeans_picks(emb_cand, scores[cand], ctx.batch_size, ctx.rng)
        chosen = cand[picked_pos]
        chosen = chosen[np.argsort(-scores[chosen], kind="stable")]
        return ctx.unlabeled[chosen], scores


def _weighted_kmeans_picks(
    emb: np.ndarray, utility: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Positions of the candidates nearest each of ``k`` weighted k-means centroids."""
    weights = utility - utility.min() + 1e-6
    km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)))
    labels = km.fit_predict(emb, sample_weight=weights)
    dist = ((emb - km.cluster_centers_[labels]) ** 2).sum(axis=1)
    picks: list[int] = []
    taken = np.zeros(emb.shape[0], dtype=bool)
    for c in range(k):
        members = np.flatnonzero((labels == c) & ~taken)
        if members.size:
            best = int(members[np.argmin(dist[members])])
            picks.append(best)
            taken[best] = True
    if len(picks) < k:  # empty clusters: fill with the most uncertain leftovers
        rest = np.flatnonzero(~taken)
        picks.extend(rest[top_k(utility[rest], k - len(picks))].tolist())
    return np.asarray(picks, dtype=np.int64)
