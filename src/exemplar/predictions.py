"""The arrays a strategy reads (DESIGN.md §2, "Predictions")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exemplar.errors import (
    InvalidPredictionsError,
    MissingPredictionsError,
    ModelError,
    SingleClassError,
)
from exemplar.objects import ObjectPredictions

__all__ = ["Predictions", "check_outputs"]


@dataclass(frozen=True, slots=True)
class Predictions:
    """Model outputs for a set of items, row ``i`` describing item ``i``.

    Parameters
    ----------
    proba : ndarray of shape (n, c), optional
        Class probabilities. Rows must be finite and sum to one (within 1e-3).
    samples : ndarray of shape (t, n, c), optional
        Stochastic probability samples (MC dropout passes or committee members),
        following Baal's layout: the stochastic axis first.
    embeddings : ndarray of shape (n, d), optional
        A representation of each item used by diversity and density strategies.
    classes : ndarray of shape (c,), optional
        The class label of each probability column.
    objects : ObjectPredictions, optional
        Detection and segmentation: the objects the model found on each item (an image),
        with stochastic passes and augmented views for object strategies.
    counts : ndarray of shape (n,), optional
        Detection and segmentation: the expected number of objects on each item. What a
        scored pool keeps of the objects (with a strategy's utility), for stopping criteria.

    Notes
    -----
    When only ``samples`` are given, ``proba`` is their mean over the first axis.
    Arrays are kept as given (no copies), so a memory-mapped array stays on disk.
    """

    proba: np.ndarray | None = None
    samples: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    classes: np.ndarray | None = None
    objects: ObjectPredictions | None = None
    counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.proba is None and self.samples is not None:
            object.__setattr__(self, "proba", np.asarray(self.samples).mean(axis=0))
        sizes = {
            name: arr.shape[0] if name != "samples" else arr.shape[1]
            for name, arr in (
                ("proba", self.proba),
                ("samples", self.samples),
                ("embeddings", self.embeddings),
                ("counts", self.counts),
            )
            if arr is not None
        }
        if self.objects is not None:
            sizes["objects"] = len(self.objects)
        if self.proba is not None and np.ndim(self.proba) != 2:
            raise InvalidPredictionsError(
                f"proba must have shape (n_items, n_classes), got {np.shape(self.proba)}"
            )
        if self.samples is not None and np.ndim(self.samples) != 3:
            raise InvalidPredictionsError(
                f"samples must have shape (n_samples, n_items, n_classes), "
                f"got {np.shape(self.samples)}"
            )
        if self.embeddings is not None and np.ndim(self.embeddings) != 2:
            raise InvalidPredictionsError(
                f"embeddings must have shape (n_items, n_features), got {np.shape(self.embeddings)}"
            )
        if len(set(sizes.values())) > 1:
            raise InvalidPredictionsError(
                f"prediction arrays disagree on the number of items: {sizes}"
            )

    @property
    def n_items(self) -> int:
        """Number of items (rows) these predictions describe."""
        for arr in (self.proba, self.embeddings, self.counts):
            if arr is not None:
                return int(arr.shape[0])
        if self.samples is not None:
            return int(self.samples.shape[1])
        if self.objects is not None:
            return len(self.objects)
        return 0

    def take(self, rows: np.ndarray) -> Predictions:
        """Predictions for a subset of rows (fancy indexing copies only those rows)."""
        return Predictions(
            proba=None if self.proba is None else self.proba[rows],
            samples=None if self.samples is None else self.samples[:, rows],
            embeddings=None if self.embeddings is None else self.embeddings[rows],
            classes=self.classes,
            objects=None if self.objects is None else self.objects.take(rows),
            counts=None if self.counts is None else self.counts[rows],
        )

    def require_proba(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Return finite class probabilities (for ``rows`` if given) or raise a clear error."""
        if self.proba is None:
            raise MissingPredictionsError("this strategy needs class probabilities (proba)")
        proba = self.proba if rows is None else self.proba[rows]
        if proba.shape[1] < 2:
            raise SingleClassError(
                "the model predicts a single class: the labeled set must cover at least two "
                "classes before model-based strategies can rank items (use a cold-start strategy "
                "such as 'random', 'typiclust' or 'probcover' until it does)"
            )
        _check_finite(proba, "proba")
        return proba

    def require_samples(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Return finite stochastic samples ``(t, n, c)`` or raise a clear error."""
        if self.samples is None:
            raise MissingPredictionsError(
                "this strategy needs stochastic samples (t, n, c): use a committee or "
                "MC-dropout model adapter (for scikit-learn: exemplar.models.CommitteeAdapter)"
            )
        samples = self.samples if rows is None else self.samples[:, rows]
        if samples.shape[2] < 2:
            raise SingleClassError("the committee predicts a single class; label more classes")
        _check_finite(samples, "samples")
        return samples

    def require_objects(self, rows: np.ndarray | None = None) -> ObjectPredictions:
        """Return the predicted objects (of ``rows`` if given) or raise a clear error."""
        if self.objects is None:
            raise MissingPredictionsError(
                "this strategy needs object predictions (boxes): use it on a detection or "
                "segmentation task with a detector model"
            )
        return self.objects if rows is None else self.objects.take(rows)

    def require_embeddings(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Return finite embeddings ``(n, d)`` or raise a clear error."""
        if self.embeddings is None:
            raise MissingPredictionsError(
                "this strategy needs embeddings: predict with embeddings=True "
                "(for scikit-learn models these are the input features or a given transform)"
            )
        emb = self.embeddings if rows is None else self.embeddings[rows]
        _check_finite(emb, "embeddings")
        return emb


def check_outputs(
    pred: Predictions, rows: int, samples: bool, embeddings: bool, objects: bool = False
) -> None:
    """Raise ModelError unless a model's ``predict`` returned what was asked, for ``rows`` rows.

    ``objects`` asks a detector's objects (and their ``samples``) instead of ``proba``.
    Used by the local scorer (:func:`exemplar.loop.score_pool`) and the Ray one
    (:func:`exemplar.engines.score_pool_ray`) on every chunk.
    """
    for name, asked, value in (
        ("objects", objects, pred.objects),
        ("proba", not objects, pred.proba),
        ("samples", samples, pred.objects.samples if objects and pred.objects else pred.samples),
        ("embeddings", embeddings, pred.embeddings),
    ):
        if asked and value is None:
            raise ModelError(f"the model's predict returned no {name}")
    if pred.n_items != rows:
        raise ModelError(f"the model's predict returned {pred.n_items} rows for {rows}")


def _check_finite(arr: np.ndarray, name: str) -> None:
    # Chunk by chunk along the first axis: no (n, d) mask for a pool of millions of rows.
    per_row = max(1, arr.size // max(1, arr.shape[0])) if arr.ndim else 1
    step = max(1, (1 << 22) // per_row)
    n = arr.shape[0] if arr.ndim else 1
    if not all(np.isfinite(arr[i : i + step]).all() for i in range(0, n, step)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InvalidPredictionsError(
            f"{name} contains {bad} NaN or infinite value(s); the model produced invalid outputs "
            "(check for NaN features or a diverged model)"
        )
