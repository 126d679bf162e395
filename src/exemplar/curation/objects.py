"""Probable label errors of objects (detection), by confident learning on held-out images.

An object's class is checked the way an item's label is (:mod:`.label_errors`): a model that
never saw its image gives the probability of each class at the object's box, and confident
learning (Northcutt, Jiang & Chuang, 2021, JAIR 70) flags the objects whose given class is
improbable. :func:`out_of_fold_object_proba` makes those probabilities with ``k`` detectors,
each trained on the images of ``k - 1`` folds and describing the objects of the images of the
last fold (:meth:`exemplar.models.detector.DetectorAdapter.describe_objects`);
:func:`object_label_errors` ranks and flags the objects.

Objects are numbered flat: image by image, then object by object within an image
(:func:`object_positions` maps the flat number back).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from sklearn.model_selection import GroupKFold, KFold

from exemplar.curation.label_errors import LabelErrors, Method, find_label_errors
from exemplar.errors import ConfigError, InvalidPredictionsError, StrategyError
from exemplar.objects import Objects

__all__ = [
    "ObjectDescriber",
    "object_label_errors",
    "object_positions",
    "out_of_fold_object_proba",
]

_MODULE = "exemplar.curation.objects"


class ObjectDescriber(Protocol):
    """A fitted detector that gives class probabilities of given objects."""

    def describe_objects(
        self, X: np.ndarray, objects: Sequence[Objects]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(proba (m, K), embeddings (m, d))`` of the objects of ``X``'s images."""
        ...


def object_positions(objects: Sequence[Objects]) -> tuple[np.ndarray, np.ndarray]:
    """Image and position within its image of every object, in flat order.

    Returns
    -------
    image : ndarray of int, shape (m,)
    position : ndarray of int, shape (m,)
    """
    sizes = np.fromiter((len(o) for o in objects), dtype=np.int64, count=len(objects))
    image = np.repeat(np.arange(sizes.size), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes.size else sizes
    position = np.arange(image.size) - np.repeat(starts, sizes)
    return image, position


def out_of_fold_object_proba(
    images: np.ndarray,
    objects: Sequence[Objects],
    fit_detector: Callable[[np.ndarray, list[Objects], int], ObjectDescriber],
    n_splits: int = 4,
    *,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Class probabilities of every object from a detector that never saw its image.

    Images are split into ``n_splits`` folds (shuffled with ``seed``; with ``groups``, the
    images of one group stay in one fold, so near-duplicate tiles of an image do not leak
    its labels). For each fold, ``fit_detector(images, objects, fold)`` trains a detector on
    the other folds' images, and its ``describe_objects`` gives the probabilities of the
    held-out images' objects.

    Parameters
    ----------
    images : ndarray, shape (n, ...)
        Model input rows, one per image.
    objects : sequence of n Objects
        The given (possibly wrong) objects of each image.
    fit_detector : callable
        ``(images, objects, fold) -> fitted detector`` with ``describe_objects``. It must
        fix the class list, so that every fold's detector has the same ``K`` columns even if
        a class is absent from its training images.
    n_splits : int, default=4
        Folds (at least 2, at most ``n``).
    seed : int, default=0
        Seed of the fold shuffle (ignored with ``groups``, whose folds are deterministic).
    groups : ndarray of shape (n,), optional
        Group of each image.

    Returns
    -------
    ndarray of float, shape (m, K)
        ``m`` = total objects, flat order (:func:`object_positions`).

    Raises
    ------
    ConfigError
        If ``n_splits`` is below 2 or above the number of images (or of groups).
    InvalidPredictionsError
        If the folds' detectors disagree on the number of classes, or give a wrong shape.
    """
    objs = list(objects)
    n = len(objs)
    if len(images) != n:
        raise StrategyError(f"{_MODULE}: {len(images)} images but {n} Objects")
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)):
        raise ConfigError(f"{_MODULE}: n_splits must be an integer, got {n_splits!r}")
    n_units = n if groups is None else np.unique(np.asarray(groups)).size
    if not 2 <= n_splits <= n_units:
        raise ConfigError(
            f"{_MODULE}: n_splits must be between 2 and {n_units} (the images or groups), "
            f"got {n_splits}"
        )
    sizes = np.fromiter((len(o) for o in objs), dtype=np.int64, count=n)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if groups is None:
        folds = KFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(n))
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise StrategyError(f"{_MODULE}: groups must have shape ({n},), got {groups.shape}")
        folds = GroupKFold(n_splits).split(np.zeros(n), groups=groups)
    proba: np.ndarray | None = None
    for fold, (train, test) in enumerate(folds):
        detector = fit_detector(images[train], [objs[i] for i in train], fold)
        held = [objs[i] for i in test]
        p, _ = detector.describe_objects(images[test], held)
        p = np.asarray(p, dtype=float)
        m = int(sizes[test].sum())
        if p.ndim != 2 or p.shape[0] != m:
            raise InvalidPredictionsError(
                f"{_MODULE}: fold {fold}: describe_objects gave shape {p.shape} for {m} objects"
            )
        if proba is None:
            proba = np.zeros((int(starts[-1]), p.shape[1]))
        elif p.shape[1] != proba.shape[1]:
            raise InvalidPredictionsError(
                f"{_MODULE}: fold {fold}: {p.shape[1]} classes, earlier folds had "
                f"{proba.shape[1]}; fit_detector must fix the class list"
            )
        rows = np.concatenate(
            [np.arange(starts[i], starts[i + 1]) for i in test] or [np.empty(0, np.int64)]
        )
        proba[rows] = p
    assert proba is not None  # at least two folds ran
    return proba


def object_label_errors(
    proba: np.ndarray,
    objects: Sequence[Objects],
    classes: Sequence[str] | None = None,
    *,
    method: Method = "prune_by_noise_rate",
) -> LabelErrors:
    """Objects whose given class is probably wrong (confident learning), most likely first.

    Parameters
    ----------
    proba : ndarray of float, shape (m, K)
        Out-of-sample class probabilities of the objects, flat order
        (:func:`out_of_fold_object_proba`).
    objects : sequence of Objects
        The given objects; ``classes`` of each are indexes ``0 .. K-1``.
    classes : sequence of str, optional
        Class names, column order; default ``"0" .. "K-1"``. The reasons and
        ``LabelErrors.suggested`` use them.
    method : {"prune_by_noise_rate", "confident_joint_off_diagonal"}
        See :func:`exemplar.curation.find_label_errors`.

    Returns
    -------
    LabelErrors
        ``indices`` are flat object numbers (:func:`object_positions` gives their image and
        position), ranked by the probability of the given class, lowest first.
    """
    p = np.asarray(proba)
    k = p.shape[1] if p.ndim == 2 else 0
    names = np.asarray(
        [str(c) for c in classes] if classes is not None else [str(j) for j in range(k)]
    )
    if names.size != k:
        raise StrategyError(f"{_MODULE}: {names.size} class names for {k} probability columns")
    given = np.concatenate([o.classes for o in objects]) if len(objects) else np.empty(0, np.int64)
    if given.size and (given.min() < 0 or given.max() >= k):
        raise StrategyError(f"{_MODULE}: object classes must be in 0..{k - 1}")
    return find_label_errors(p, names[given], names, method=method)
