"""Redundancy proposals: labeled items that add nothing (issue #12, step 5 "Prune redundancy").

Two kinds of labeled item are proposed for removal:

* **near duplicates**: items within a small distance of another labeled item in embedding
  space (with the same label); one representative of each group is kept;
* **confident items**: items the model classifies correctly with a large margin, on
  out-of-fold probabilities (the idea of data pruning by "easy" examples, Toneva et al.
  2019; Paul et al. 2021).

Nothing here deletes anything. :func:`prune_plan` returns a :class:`PrunePlan`, a proposal a
human confirms; the caller records the confirmed removals in the label history.
:func:`validate_plan` retrains without the proposed items and reports the validation
accuracy before and after, so a plan that loses accuracy can be dropped.

All indices are rows of the arrays passed in (the labeled items, in the caller's order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import GroupShuffleSplit

from exemplar.errors import UsageError
from exemplar.models import make_model
from exemplar.strategies._knn import FAISS_MIN_ROWS, NeighborIndex

__all__ = [
    "FAISS_MIN_ROWS",
    "DuplicateGroup",
    "PlanValidation",
    "PrunePlan",
    "Removal",
    "near_duplicates",
    "prune_plan",
    "redundant_by_margin",
    "validate_plan",
]

Metric = Literal["cosine", "euclidean"]
Keep = Literal["centroid", "first"]

# From FAISS_MIN_ROWS rows (shared with the strategies' k-NN module,
# exemplar.strategies._knn), near-duplicate search uses faiss when it is installed.

#: Default radius = this factor × the median distance to the k-th nearest neighbour.
RADIUS_FACTOR = 0.25
#: Reasons, in the order a plan lists them.
REASONS = ("near_duplicate", "confident")


@dataclass(frozen=True)
class DuplicateGroup:
    """Labeled items within the radius of each other (single linkage).

    Attributes
    ----------
    representative : int
        The member kept.
    members : tuple of int
        All members, sorted, the representative included.
    max_distance : float
        Largest distance of a member to the representative (in the group's metric).
    """

    representative: int
    members: tuple[int, ...]
    max_distance: float

    @property
    def removable(self) -> tuple[int, ...]:
        """Members proposed for removal: all but the representative."""
        return tuple(m for m in self.members if m != self.representative)


@dataclass(frozen=True)
class Removal:
    """One proposed removal: the row, why, and the row kept in its place (``-1`` if none)."""

    index: int
    reason: str
    kept: int = -1


@dataclass(frozen=True)
class PrunePlan:
    """Proposed removals, never applied: sorted by reason (``REASONS`` order), then index.

    Attributes
    ----------
    removals : tuple of Removal
        One entry per proposed row; each row appears once.
    n_items : int
        Number of labeled items the plan was made for.
    radius : float or None
        The near-duplicate radius used (None when duplicates were not searched).
    """

    removals: tuple[Removal, ...]
    n_items: int
    radius: float | None = None

    @property
    def indices(self) -> np.ndarray:
        """The proposed rows, in plan order."""
        return np.fromiter((r.index for r in self.removals), dtype=np.int64, count=len(self))

    @property
    def share(self) -> float:
        """Share of the labeled items the plan removes."""
        return len(self) / self.n_items if self.n_items else 0.0

    def keep_mask(self) -> np.ndarray:
        """Boolean mask over the ``n_items`` rows: True for the rows the plan keeps."""
        mask = np.ones(self.n_items, dtype=bool)
        mask[self.indices] = False
        return mask

    def count(self, reason: str) -> int:
        """How many removals have this reason."""
        return sum(r.reason == reason for r in self.removals)

    def __len__(self) -> int:
        return len(self.removals)


@dataclass(frozen=True)
class PlanValidation:
    """Validation accuracy of a recipe trained with and without a plan's removals."""

    accuracy_before: float
    accuracy_after: float
    n_train_before: int
    n_train_after: int
    n_validation: int

    @property
    def delta(self) -> float:
        """``accuracy_after - accuracy_before`` (negative: the plan loses accuracy)."""
        return self.accuracy_after - self.accuracy_before


def _as_embeddings(embeddings: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] == 0:
        raise UsageError(f"redundancy: embeddings must be a non-empty 2-D array, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise UsageError("redundancy: embeddings must be finite numbers")
    x = np.asarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    elif metric != "euclidean":
        raise UsageError(f"redundancy: metric must be 'cosine' or 'euclidean', got {metric!r}")
    return x


def _to_metric(euclid: np.ndarray, metric: str) -> np.ndarray:
    """Euclidean distances (between unit rows for cosine) to distances in ``metric``."""
    if metric == "cosine":
        return euclid * euclid / 2.0  # |u - v|² = 2 (1 - cos)
    return euclid


def _knn(x: np.ndarray, k: int, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of each row (Euclidean), queried in chunks of rows.

    Self matches are removed by index, so exact duplicates still count as neighbours.
    The search is the shared :class:`~exemplar.strategies._knn.NeighborIndex`:
    ``backend`` ``auto`` uses faiss (an exact flat index; Johnson, Douze & Jégou 2019)
    from :data:`FAISS_MIN_ROWS` rows when it is installed (``exemplar[faiss]``), and
    scikit-learn's neighbours otherwise; ``faiss``, ``sklearn`` or ``numpy`` force one.
    """
    index = NeighborIndex(x, backend=backend, fallback="sklearn")
    return index.knn(x, k, exclude=np.arange(x.shape[0]))


def near_duplicates(
    embeddings: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    radius: float | None = None,
    k: int = 5,
    same_label: bool = True,
    metric: Metric = "cosine",
    keep: Keep = "centroid",
) -> list[DuplicateGroup]:
    """Group labeled items that lie within ``radius`` of each other; keep one per group.

    Parameters
    ----------
    embeddings : ndarray of shape (n, d)
        One row per labeled item.
    labels : ndarray of shape (n,), optional
        The items' labels. With ``same_label=True`` only items with equal labels are linked.
    radius : float, optional
        Largest distance between two linked items, in ``metric`` (cosine distance is
        ``1 - cos``). None estimates it as ``RADIUS_FACTOR`` (0.25) times the median
        distance of an item to its ``k``-th nearest neighbour: a scale of the data's
        ordinary spacing that duplicates barely move, since a copy displaces only one of
        an item's ``k`` neighbours. On scikit-learn's digits (cosine on raw pixels) it is
        about 0.013, below the nearest-neighbour distance of 97% of the original items and
        above that of copies jittered by 0.2 feature standard deviations.
    k : int, default=5
        Neighbours searched per item. Groups are the connected components of the graph
        of links between an item and those of its ``k`` nearest neighbours within the
        radius (single linkage), so ``k`` bounds the links per item, not a group's size.
    same_label : bool, default=True
        Never link items whose labels differ (ignored when ``labels`` is None).
    metric : {"cosine", "euclidean"}, default="cosine"
    keep : {"centroid", "first"}, default="centroid"
        The representative: the member closest to the group's mean, or the lowest row
        (the earliest labeled when rows are in labeling order).

    Returns
    -------
    list of DuplicateGroup
        Groups of two or more items, ordered by their lowest member.

    Notes
    -----
    The k-NN search is the shared :mod:`exemplar.strategies._knn` (scikit-learn's
    :class:`~sklearn.neighbors.NearestNeighbors`, or faiss from ``FAISS_MIN_ROWS`` items
    when installed), queried in chunks of rows, so memory is O(n·k) beyond the index
    (DESIGN.md §9).
    """
    return _near_duplicates(embeddings, labels, radius, k, same_label, metric, keep)[0]


def _near_duplicates(
    embeddings: np.ndarray,
    labels: np.ndarray | None,
    radius: float | None,
    k: int,
    same_label: bool,
    metric: str,
    keep: str,
) -> tuple[list[DuplicateGroup], float | None]:
    """:func:`near_duplicates`, and the radius it used (None with fewer than two items)."""
    x = _as_embeddings(embeddings, metric)
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"near_duplicates: k must be a positive integer, got {k!r}")
    if keep not in ("centroid", "first"):
        raise UsageError(f"near_duplicates: keep must be 'centroid' or 'first', got {keep!r}")
    y = None
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (n,):
            raise UsageError(
                f"near_duplicates: labels must have shape ({n},) like embeddings, got {y.shape}"
            )
    if radius is not None and not (np.isfinite(radius) and radius >= 0):
        raise UsageError(f"near_duplicates: radius must be a number >= 0, got {radius!r}")
    if n < 2:
        return [], radius
    k = min(int(k), n - 1)
    euclid, nbr = _knn(x, k)
    dist = _to_metric(euclid, metric)
    if radius is None:
        radius = RADIUS_FACTOR * float(np.median(dist[:, -1]))
    link = dist <= radius
    if same_label and y is not None:
        link &= y[nbr] == y[:, None]
    rows, cols = np.nonzero(link)
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, nbr[rows, cols])), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=True, connection="weak")
    sizes = np.bincount(comp, minlength=n_comp)
    groups: list[DuplicateGroup] = []
    order = np.argsort(comp, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for c in np.flatnonzero(sizes >= 2):
        members = order[bounds[c] : bounds[c + 1]]  # sorted: the sort is stable
        xs = x[members].astype(np.float64)
        if keep == "first":
            rep_pos = 0
        else:
            rep_pos = int(np.argmin(((xs - xs.mean(axis=0)) ** 2).sum(axis=1)))
        to_rep = np.sqrt(((xs - xs[rep_pos]) ** 2).sum(axis=1))
        groups.append(
            DuplicateGroup(
                representative=int(members[rep_pos]),
                members=tuple(int(m) for m in members),
                max_distance=float(_to_metric(to_rep, metric).max()),
            )
        )
    groups.sort(key=lambda g: g.members[0])
    return groups, float(radius)


def _margins(proba: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Margin of each row's true class over the best other class (negative when wrong)."""
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(labels)
    cls = np.asarray(classes)
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] != cls.shape[0]:
        raise UsageError(
            f"redundant_by_margin: proba must have shape (len(labels), len(classes)) = "
            f"({y.shape[0]}, {cls.shape[0]}), got {p.shape}"
        )
    if cls.shape[0] < 2:
        raise UsageError("redundant_by_margin: classes must list at least two classes")
    pos = np.searchsorted(cls, y)
    pos = np.clip(pos, 0, cls.shape[0] - 1)
    if (cls[1:] <= cls[:-1]).any() or not (cls[pos] == y).all():
        raise UsageError("redundant_by_margin: classes must be sorted and hold every label")
    rows = np.arange(y.shape[0])
    true_p = p[rows, pos]
    other = p.copy()
    other[rows, pos] = -np.inf
    return true_p - other.max(axis=1)


def redundant_by_margin(
    proba: np.ndarray, labels: np.ndarray, classes: np.ndarray, *, margin: float = 0.5
) -> np.ndarray:
    """Rows the model classifies correctly with a margin of at least ``margin``.

    The margin is the probability of the labeled class minus the largest probability of
    any other class; it is positive exactly when the prediction is right.

    Parameters
    ----------
    proba : ndarray of shape (n, c)
        Class probabilities for the labeled items. Use out-of-fold probabilities (e.g.
        :func:`sklearn.model_selection.cross_val_predict`): a model scored on its own
        training items is confident on nearly all of them.
    labels : ndarray of shape (n,)
        The items' labels.
    classes : ndarray of shape (c,)
        Sorted class labels, the columns of ``proba``.
    margin : float, default=0.5
        Smallest margin, in (0, 1].

    Returns
    -------
    ndarray of int
        The candidate rows, largest margin first (ties by row).
    """
    if not (np.isfinite(margin) and 0 < margin <= 1):
        raise UsageError(f"redundant_by_margin: margin must be in (0, 1], got {margin!r}")
    m = _margins(proba, labels, classes)
    cand = np.flatnonzero(m >= margin)
    return cand[np.argsort(-m[cand], kind="stable")]


def prune_plan(
    embeddings: np.ndarray | None,
    labels: np.ndarray,
    *,
    proba: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    radius: float | None = None,
    k: int = 5,
    same_label: bool = True,
    metric: Metric = "cosine",
    margin: float = 0.5,
    max_confident_share: float = 0.1,
    min_per_class: int = 5,
) -> PrunePlan:
    """Combine near duplicates and confident items into one plan a human confirms.

    Near duplicates come first (all but each group's representative). Confident items
    (:func:`redundant_by_margin`) follow, largest margin first, skipping representatives
    and rows already proposed, up to ``max_confident_share`` of the items, and never
    taking a class below ``min_per_class`` remaining items.

    Parameters
    ----------
    embeddings : ndarray of shape (n, d) or None
        None skips the near-duplicate search.
    labels : ndarray of shape (n,)
    proba, classes : ndarray, optional
        Out-of-fold probabilities and their sorted classes; both or neither. None skips
        the confident items.
    radius, k, same_label, metric
        See :func:`near_duplicates`.
    margin : float, default=0.5
        See :func:`redundant_by_margin`.
    max_confident_share : float, default=0.1
        Cap on confident removals, as a share of ``n``.
    min_per_class : int, default=5
        Confident removals stop for a class when this many of its items would remain.

    Returns
    -------
    PrunePlan
        Sorted by reason (near duplicates, then confident), then by row.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise UsageError(f"prune_plan: labels must be 1-D, got shape {y.shape}")
    n = y.shape[0]
    if (proba is None) != (classes is None):
        raise UsageError("prune_plan: give proba and classes together, or neither")
    if not (0 <= max_confident_share <= 1):
        raise UsageError(
            f"prune_plan: max_confident_share must be in [0, 1], got {max_confident_share!r}"
        )
    removals: list[Removal] = []
    removed = np.zeros(n, dtype=bool)
    protected = np.zeros(n, dtype=bool)
    used_radius: float | None = None
    if embeddings is not None:
        if np.asarray(embeddings).shape[:1] != (n,):
            raise UsageError(
                f"prune_plan: embeddings must have one row per label ({n}), "
                f"got shape {np.asarray(embeddings).shape}"
            )
        groups, used_radius = _near_duplicates(
            embeddings, y, radius, k, same_label, metric, "centroid"
        )
        for g in groups:
            protected[g.representative] = True
            for m in g.removable:
                removed[m] = True
                removals.append(Removal(m, "near_duplicate", g.representative))
    if proba is not None and classes is not None:
        cand = redundant_by_margin(proba, y, classes, margin=margin)
        budget = int(np.floor(max_confident_share * n))
        values, inv = np.unique(y, return_inverse=True)
        remaining = np.bincount(inv[~removed], minlength=values.size)
        confident: list[int] = []
        for row in cand:
            if len(confident) >= budget:
                break
            if removed[row] or protected[row] or remaining[inv[row]] <= min_per_class:
                continue
            confident.append(int(row))
            removed[row] = True
            remaining[inv[row]] -= 1
        removals.extend(Removal(r, "confident") for r in sorted(confident))
    removals.sort(key=lambda r: (REASONS.index(r.reason), r.index))
    return PrunePlan(tuple(removals), n, used_radius)


def validate_plan(
    X: np.ndarray,
    y: np.ndarray,
    plan: PrunePlan,
    recipe: str = "logreg",
    seed: int = 0,
    *,
    validation_size: float = 0.25,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
) -> PlanValidation:
    """Retrain without the plan's rows and compare validation accuracy.

    Parameters
    ----------
    X, y : ndarray
        The labeled items the plan was made for (``plan.n_items`` rows).
    plan : PrunePlan
    recipe : str, default="logreg"
        A model recipe (:func:`exemplar.models.make_model`).
    seed : int, default=0
        Seeds the model and the split.
    validation_size : float, default=0.25
        When no ``X_val``/``y_val`` are given, this share of ``X`` is held out for
        validation (all its rows kept, whatever the plan says), each near-duplicate group
        of the plan whole on one side so no copy of a training item is validated; both
        models train on the rest, before and after removing the plan's rows there.
    X_val, y_val : ndarray, optional
        An explicit validation set; then both models train on all of ``X`` (before) and
        on the rows the plan keeps (after).
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.shape[0] != plan.n_items or y.shape != (plan.n_items,):
        raise UsageError(
            f"validate_plan: X and y must have the plan's {plan.n_items} rows, "
            f"got {X.shape[0]} and {y.shape}"
        )
    if (X_val is None) != (y_val is None):
        raise UsageError("validate_plan: give X_val and y_val together, or neither")
    keep = plan.keep_mask()
    if X_val is None:
        # Each near-duplicate group stays on one side, so no copy leaks into validation.
        group = np.arange(plan.n_items)
        for r in plan.removals:
            if r.kept >= 0:
                group[r.index] = r.kept
        splitter = GroupShuffleSplit(n_splits=1, test_size=validation_size, random_state=seed)
        train, val = next(splitter.split(X, y, groups=group))
        X_val, y_val = X[val], y[val]
    else:
        train = np.arange(plan.n_items)
    after = train[keep[train]]
    assert X_val is not None and y_val is not None  # given, or the held-out split above
    acc = []
    for rows in (train, after):
        model = make_model(recipe, seed).fit(X[rows], y[rows])
        acc.append(float(np.mean(model.predict_labels(X_val) == np.asarray(y_val))))
    return PlanValidation(acc[0], acc[1], int(train.size), int(after.size), len(y_val))
