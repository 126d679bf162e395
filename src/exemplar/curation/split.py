"""Split one class into several by clustering its exemplars, and map merged classes.

Step 7 of the curation workflow (issue #12). :func:`propose_split` clusters the verified
exemplars of one class in embedding space and proposes a new class for each item, with a
per-item margin that tells a reviewer which proposals to look at before confirming the rest
in bulk. :func:`merge_mapping` validates a merge and returns the old-to-new class mapping.
Both are pure functions of arrays and names; recording the operation (and undoing it) is the
caller's job.

References
----------
Lloyd, S. (1982). Least squares quantization in PCM. IEEE Trans. Inf. Theory 28(2).
Ward, J. H. (1963). Hierarchical grouping to optimize an objective function. JASA 58(301).
Rousseeuw, P. J. (1987). Silhouettes: a graphical aid to the interpretation and validation
of cluster analysis. J. Comput. Appl. Math. 20.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import silhouette_score

from exemplar.errors import ConfigError, UsageError

__all__ = ["SplitProposal", "choose_n_classes", "merge_mapping", "propose_split"]

SplitMethod = Literal["kmeans", "agglomerative"]
_METHODS: tuple[str, ...] = ("kmeans", "agglomerative")
_EPS = 1e-12


@dataclass(frozen=True)
class SplitProposal:
    """A proposed split of one class, for a reviewer to confirm.

    Attributes
    ----------
    names : tuple of str
        The new classes, in their deterministic order: largest cluster first, ties broken
        by the centroid's coordinates (lexicographic).
    cluster : ndarray of int, shape (n,)
        Index into ``names`` of each item's proposed class.
    margin : ndarray of float, shape (n,)
        Distance from the item to the nearest *other* cluster's centroid minus its distance
        to its own cluster's centroid, in the preprocessed space. Low (or negative, possible
        with agglomerative clustering) means ambiguous: a reviewer should look.
    order : ndarray of int, shape (n,)
        Item indices for bulk confirmation, most confident (largest margin) first; ties by
        index.
    sizes : dict of str to int
        Items per new class, in the order of ``names``.
    silhouette : float
        Mean silhouette coefficient of the split (Rousseeuw 1987), in [-1, 1].
    centroids : ndarray of float, shape (n_classes, d)
        Mean of each new class's preprocessed embeddings, in the order of ``names``.
    method : str
        ``"kmeans"`` or ``"agglomerative"``.
    seed : int
        The seed the clustering used.
    """

    names: tuple[str, ...]
    cluster: np.ndarray
    margin: np.ndarray
    order: np.ndarray
    sizes: dict[str, int]
    silhouette: float
    centroids: np.ndarray
    method: str
    seed: int

    @property
    def assignment(self) -> tuple[str, ...]:
        """The proposed new class name of each item, in item order."""
        return tuple(self.names[k] for k in self.cluster)

    def review_order(self, name: str) -> np.ndarray:
        """Indices of the items proposed for ``name``, most confident first.

        Raises
        ------
        ConfigError
            If ``name`` is not one of the proposal's new classes.
        """
        if name not in self.names:
            raise ConfigError(
                f"split proposal: unknown new class {name!r}; the new classes are "
                f"{', '.join(map(repr, self.names))}"
            )
        k = self.names.index(name)
        return self.order[self.cluster[self.order] == k]


def _preprocess(embeddings: np.ndarray, standardize: bool, l2_normalize: bool) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise UsageError(
            f"split: embeddings must be a non-empty 2-D array (items, dims), got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise UsageError(f"split: embeddings must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise UsageError(f"split: embeddings hold NaN or inf values (first at row {bad})")
    if standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > _EPS, std, 1.0)
    if l2_normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, _EPS)
    return x


def _check_k(x: np.ndarray, n_classes: int) -> None:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise ConfigError(f"split: n_classes must be an integer, got {n_classes!r}")
    if n_classes < 2:
        raise ConfigError(f"split: n_classes must be at least 2, got {n_classes}")
    n_distinct = len(np.unique(x, axis=0))
    if n_distinct <= n_classes:
        raise UsageError(
            f"split: {n_classes} new classes need more than {n_classes} distinct "
            f"embeddings, got {n_distinct} distinct among {x.shape[0]} items"
        )


def _cluster(x: np.ndarray, n_classes: int, method: str, seed: int, n_init: int) -> np.ndarray:
    if method == "kmeans":
        model = KMeans(n_clusters=n_classes, n_init=n_init, random_state=seed)
        return np.asarray(model.fit_predict(x))
    if method == "agglomerative":
        return np.asarray(
            AgglomerativeClustering(n_clusters=n_classes, linkage="ward").fit_predict(x)
        )
    raise ConfigError(
        f"split: unknown method {method!r}; choose one of {', '.join(map(repr, _METHODS))}"
    )


def propose_split(
    embeddings: np.ndarray,
    *,
    n_classes: int = 2,
    names: Sequence[str] | None = None,
    seed: int = 0,
    method: SplitMethod = "kmeans",
    standardize: bool = False,
    l2_normalize: bool = True,
    n_init: int = 10,
) -> SplitProposal:
    """Cluster one class's exemplars and propose a new class for each.

    The embeddings are optionally standardized per dimension, then L2-normalized (so that
    Euclidean distance orders pairs as cosine similarity does), then clustered with k-means
    (Lloyd 1982; ``n_init`` seeded restarts) or Ward agglomerative clustering (Ward 1963).
    Clusters are named in a fixed order, largest first, so the same data and seed always give
    the same names.

    Parameters
    ----------
    embeddings : array of shape (n, d)
        Embeddings of the class's verified exemplars.
    n_classes : int, default 2
        Number of new classes (see :func:`choose_n_classes`).
    names : sequence of str, optional
        Names of the new classes, applied in the order described above. Defaults to
        ``cluster_1``, ``cluster_2``, ...
    seed : int, default 0
        Seed of k-means (agglomerative clustering is deterministic).
    method : {"kmeans", "agglomerative"}, default "kmeans"
    standardize : bool, default False
        Scale each dimension to zero mean and unit variance first (constant dimensions are
        only centred).
    l2_normalize : bool, default True
        Scale each embedding to unit length (after standardizing).
    n_init : int, default 10
        k-means restarts; the best inertia wins.

    Returns
    -------
    SplitProposal

    Raises
    ------
    UsageError
        If the embeddings are not a finite 2-D array with more distinct rows than classes.
    ConfigError
        If ``n_classes``, ``names`` or ``method`` is invalid.
    """
    x = _preprocess(embeddings, standardize, l2_normalize)
    _check_k(x, n_classes)
    if names is None:
        names = [f"cluster_{k + 1}" for k in range(n_classes)]
    names = list(names)
    if len(names) != n_classes:
        raise ConfigError(f"split: {n_classes} new classes need {n_classes} names, got {names!r}")
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise ConfigError(f"split: class names must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"split: class names must be distinct, got {names!r}")

    raw = _cluster(x, n_classes, method, seed, n_init)
    found = np.unique(raw)
    centroids = np.stack([x[raw == k].mean(axis=0) for k in found])
    sizes = np.array([int((raw == k).sum()) for k in found])
    # Deterministic naming: size descending, then centroid coordinates ascending.
    keys = [(-int(sizes[i]), *centroids[i].round(12).tolist()) for i in range(len(found))]
    rank = sorted(range(len(found)), key=lambda i: keys[i])
    relabel = np.empty(int(found.max()) + 1, dtype=np.int64)
    for new, old in enumerate(rank):
        relabel[found[old]] = new
    cluster = relabel[raw]
    centroids = centroids[rank]

    # Squared distances by expansion: O(n * k) memory, never (n, k, d).
    sq = (x**2).sum(axis=1)[:, None] - 2.0 * x @ centroids.T + (centroids**2).sum(axis=1)[None, :]
    dist = np.sqrt(np.maximum(sq, 0.0))
    own = dist[np.arange(len(x)), cluster]
    others = dist.copy()
    others[np.arange(len(x)), cluster] = np.inf
    margin = others.min(axis=1) - own
    order = np.lexsort((np.arange(len(x)), -margin))
    return SplitProposal(
        names=tuple(names),
        cluster=cluster,
        margin=margin,
        order=order,
        sizes={names[k]: int((cluster == k).sum()) for k in range(n_classes)},
        silhouette=float(silhouette_score(x, cluster)),
        centroids=centroids,
        method=method,
        seed=seed,
    )


def choose_n_classes(
    embeddings: np.ndarray,
    max_k: int = 5,
    *,
    seed: int = 0,
    method: SplitMethod = "kmeans",
    standardize: bool = False,
    l2_normalize: bool = True,
) -> int:
    """The number of new classes, from 2 to ``max_k``, with the best mean silhouette.

    The silhouette (Rousseeuw 1987) is undefined for one cluster, so this never answers
    "do not split"; read the winning proposal's ``silhouette`` for that (near 0 or below
    means no clear structure). Ties go to the smaller number.

    Raises
    ------
    ConfigError
        If ``max_k`` is below 2.
    UsageError
        If the embeddings cannot be split in two (see :func:`propose_split`).
    """
    if isinstance(max_k, bool) or not isinstance(max_k, (int, np.integer)) or max_k < 2:
        raise ConfigError(f"split: max_k must be an integer of at least 2, got {max_k!r}")
    x = _preprocess(embeddings, standardize, l2_normalize)
    n_distinct = len(np.unique(x, axis=0))
    _check_k(x, 2)
    best_k, best = 2, -np.inf
    for k in range(2, min(max_k, n_distinct - 1) + 1):
        score = silhouette_score(x, _cluster(x, k, method, seed, 10))
        if score > best + 1e-12:
            best_k, best = k, score
    return best_k


def merge_mapping(classes: Sequence[str], merge: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Validate a merge and map every current class to its class after the merge.

    Parameters
    ----------
    classes : sequence of str
        The project's current classes.
    merge : mapping of str to sequence of str
        ``{new_class: [old classes merged into it]}``. The new class may be one of its own
        old classes (``{"cat": ["cat", "kitten"]}``) or a new name, but not another existing
        class that is left out of the merge.

    Returns
    -------
    dict of str to str
        Every class in ``classes`` (in that order) to its class after the merge; classes
        outside the merge map to themselves.

    Raises
    ------
    ConfigError
        On an empty list, an unknown class, a class merged twice, duplicate class names, or
        a target that is another existing class.
    """
    classes = list(classes)
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise ConfigError(f"merge: the current classes repeat {', '.join(map(repr, dup))}")
    known = set(classes)
    mapping = {c: c for c in classes}
    claimed: dict[str, str] = {}
    for target, sources in merge.items():
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(f"merge: the merged class needs a non-empty name, got {target!r}")
        if isinstance(sources, str):
            raise ConfigError(
                f"merge: classes merged into {target!r} must be a list of names, got {sources!r}"
            )
        sources = list(sources)
        if not sources:
            raise ConfigError(f"merge: no classes listed to merge into {target!r}")
        unknown = [s for s in sources if s not in known]
        if unknown:
            raise ConfigError(
                f"merge into {target!r}: unknown class {unknown[0]!r}; the classes are "
                f"{', '.join(map(repr, classes))}"
            )
        if target in known and target not in sources:
            raise ConfigError(
                f"merge: {target!r} is an existing class not listed among "
                f"{', '.join(map(repr, sources))}; list it too to merge into it"
            )
        for s in sources:
            if s in claimed:
                if claimed[s] == target:
                    raise ConfigError(f"merge into {target!r}: class {s!r} is listed twice")
                raise ConfigError(
                    f"merge: class {s!r} is merged into both {claimed[s]!r} and {target!r}"
                )
            claimed[s] = target
            mapping[s] = target
    return mapping
