"""Shared pieces of the object strategies: box filtering, IoU matching and aggregation.

An object strategy scores every box the model found on an image (class uncertainty,
localization instability, committee disagreement), then reduces the box scores of each
image to one image score with :func:`aggregate` (DESIGN.md §8: one utility per item).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.special import entr

from exemplar.errors import ConfigError, InvalidPredictionsError
from exemplar.objects import ObjectPredictions, Objects, box_iou
from exemplar.predictions import Predictions
from exemplar.strategies.base import QueryContext, RandomState, ScoringStrategy

__all__ = [
    "AGGREGATES",
    "ObjectScoringStrategy",
    "ObjectTaskMixin",
    "aggregate",
    "binary_entropy",
    "box_detection_proba",
    "check_aggregate",
    "match_boxes",
]

#: How box scores become an image score.
AGGREGATES = ("max", "mean", "sum", "topk")


def check_aggregate(name: str, k: int, allowed: Sequence[str] = AGGREGATES) -> None:
    """Raise a clear :class:`ConfigError` for an unknown aggregation or a bad ``k``."""
    if name not in allowed:
        raise ConfigError(f"aggregate must be one of {', '.join(allowed)}; got {name!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")


def aggregate(
    per_box: Sequence[np.ndarray],
    how: str,
    k: int = 3,
    weights: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """One score per image from its box scores.

    Parameters
    ----------
    per_box : sequence of n arrays
        The scores of the boxes of each image (an empty array for an image with none).
    how : {"max", "mean", "sum", "topk", "weighted"}
        ``max``: the most uncertain box. ``mean``: the average box. ``sum``: the total,
        which grows with the number of uncertain boxes. ``topk``: the sum of the ``k``
        largest divided by ``k`` (an image with fewer than ``k`` boxes counts the missing
        ones as 0), so several uncertain boxes beat one. ``weighted``: the mean weighted
        by ``weights`` (0 where they sum to 0).
    k : int, default=3
        Boxes averaged by ``topk``.
    weights : sequence of n arrays, optional
        Per-box weights for ``weighted``.

    Returns
    -------
    ndarray of shape (n,), float64
        An image with no boxes scores 0 under every aggregation.
    """
    out = np.zeros(len(per_box), dtype=np.float64)
    for i, values in enumerate(per_box):
        v = np.asarray(values, dtype=np.float64)
        if not v.size:
            continue
        if how == "max":
            out[i] = v.max()
        elif how == "mean":
            out[i] = v.mean()
        elif how == "sum":
            out[i] = v.sum()
        elif how == "topk":
            top = np.sort(v)[::-1][:k]
            out[i] = top.sum() / k
        elif how == "weighted":
            if weights is None:
                raise ConfigError("aggregate 'weighted' needs per-box weights")
            w = np.asarray(weights[i], dtype=np.float64)
            total = w.sum()
            out[i] = float((w * v).sum() / total) if total > 0 else 0.0
        else:
            raise ConfigError(f"aggregate must be one of {', '.join(AGGREGATES)}; got {how!r}")
    return out


def binary_entropy(p: ArrayLike) -> np.ndarray:
    """Entropy (nats) of a Bernoulli with probability ``p``, elementwise; 0 at 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return np.asarray(entr(p) + entr(1.0 - p), dtype=np.float64)


def box_detection_proba(objects: Objects, what: str) -> np.ndarray:
    """The box scores of ``objects``, or a clear error naming ``what`` needs them."""
    if objects.scores is None:
        raise InvalidPredictionsError(
            f"{what} needs box scores: the predicted objects have none (ground truth?)"
        )
    scores = np.asarray(objects.scores, dtype=np.float64)
    if scores.size and not np.isfinite(scores).all():
        raise InvalidPredictionsError("box scores contain NaN or infinite values")
    return scores


def match_boxes(
    a: np.ndarray,
    b: np.ndarray,
    iou: float = 0.5,
    method: str = "hungarian",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of boxes ``a`` (m, 4) to boxes ``b`` (n, 4) by IoU.

    Parameters
    ----------
    a, b : ndarray of shape (m, 4) and (n, 4)
        Boxes, ``x0, y0, x1, y1``.
    iou : float, default=0.5
        Pairs with a lower IoU are not matched.
    method : {"hungarian", "greedy"}
        ``hungarian``: the assignment of largest total IoU
        (:func:`scipy.optimize.linear_sum_assignment`); ``greedy``: the highest-IoU pair
        first, then the next among the boxes still free.

    Returns
    -------
    rows, cols, ious : ndarrays of shape (p,)
        Matched positions in ``a`` and ``b`` and their IoU, every IoU ``>= iou``.
    """
    ious = box_iou(a, b)
    empty = np.empty(0, np.int64)
    if not ious.size:
        return empty, empty, np.empty(0, np.float32)
    if method == "hungarian":
        # Pairs under the threshold get weight 0 so they never displace a real match.
        weight = np.where(ious >= iou, ious, 0.0)
        rows, cols = linear_sum_assignment(weight, maximize=True)
    elif method == "greedy":
        order = np.argsort(-ious, axis=None, kind="stable")
        used_a = np.zeros(ious.shape[0], dtype=bool)
        used_b = np.zeros(ious.shape[1], dtype=bool)
        picked_r: list[int] = []
        picked_c: list[int] = []
        for flat in order:
            r, c = divmod(int(flat), ious.shape[1])
            if ious[r, c] < iou:
                break
            if used_a[r] or used_b[c]:
                continue
            used_a[r] = used_b[c] = True
            picked_r.append(r)
            picked_c.append(c)
        rows, cols = np.asarray(picked_r, np.int64), np.asarray(picked_c, np.int64)
    else:
        raise ConfigError(f"match must be 'hungarian' or 'greedy', got {method!r}")
    keep = ious[rows, cols] >= iou
    rows, cols = rows[keep].astype(np.int64), cols[keep].astype(np.int64)
    return rows, cols, ious[rows, cols]


class ObjectTaskMixin:
    """Query contract of strategies for detection and segmentation tasks.

    The labels of a detection item are its objects, not one class (the store writes the
    same marker label, ``<objects>``, for every labeled image), so the classification check that
    the labeled set holds two classes does not apply: ``y_labeled`` is accepted and
    ignored.
    """

    def _context(
        self,
        predictions: Predictions | None,
        unlabeled: ArrayLike | None,
        labeled: ArrayLike | None,
        batch_size: int,
        y_labeled: ArrayLike | None,
        random_state: RandomState,
    ) -> QueryContext:
        return super()._context(  # type: ignore[misc]
            predictions, unlabeled, labeled, batch_size, None, random_state
        )


class ObjectScoringStrategy(ObjectTaskMixin, ScoringStrategy):
    """A row-wise strategy over the boxes of each image (base of the object strategies).

    Subclasses implement :meth:`box_scores` (one array of box scores per image); the
    image utility is their :func:`aggregate`.

    Parameters
    ----------
    aggregate : {"max", "mean", "sum", "topk"}
        How box scores become the image score (see :func:`aggregate`).
    k : int, default=3
        Boxes averaged by ``topk``.
    min_score : float, default=0.1
        Boxes whose detection score is below this do not count (a detector keeps many
        faint candidates; counted, they would drown the image score in background).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"objects"})
    #: Aggregations this strategy accepts.
    aggregates: ClassVar[tuple[str, ...]] = AGGREGATES
    #: Extra prediction outputs the detector must give (``"samples"``, ``"views"``).
    object_passes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, aggregate: str = "max", k: int = 3, min_score: float = 0.1) -> None:
        self.aggregate = aggregate
        self.k = k
        self.min_score = min_score

    def utility(self, predictions: Predictions) -> np.ndarray:
        """One score per image: the aggregated box scores (0 for an image with no box).

        Parameters
        ----------
        predictions : Predictions
            Must carry ``objects``.

        Returns
        -------
        ndarray of shape (n,), float64

        Raises
        ------
        MissingPredictionsError, InvalidPredictionsError, ConfigError
        """
        self._check_params()
        objects = predictions.require_objects()
        per_box, weights = self.box_scores(objects)
        return aggregate(per_box, self.aggregate, self.k, weights)

    def _check_params(self) -> None:
        check_aggregate(self.aggregate, self.k, self.aggregates)
        if not 0.0 <= float(self.min_score) <= 1.0:
            raise ConfigError(f"min_score must be in [0, 1], got {self.min_score!r}")

    def kept(self, objects: Objects) -> Objects:
        """The boxes that count: score at least ``min_score`` (all of them when unscored)."""
        if objects.scores is not None and not np.isfinite(objects.scores).all():
            raise InvalidPredictionsError("box scores contain NaN or infinite values")
        return objects.above(self.min_score)

    @abstractmethod
    def box_scores(
        self, objects: ObjectPredictions
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Per image, the score of each counted box (and per-box weights, or None)."""
