"""Probable label errors by confident learning, on out-of-fold class probabilities.

Confident learning (Northcutt, Jiang & Chuang, 2021, "Confident Learning: Estimating
Uncertainty in Dataset Labels", JAIR 70) counts, for each given label ``i`` and each class
``j``, the items labeled ``i`` whose predicted probability of ``j`` reaches the class's
threshold ``t_j`` (the mean self-confidence of class ``j``): the *confident joint*. Its
off-diagonal mass estimates how many labels are wrong, and which items to flag.

Written here from the paper (cleanlab is AGPL-3.0 and is not used). The probabilities must be
out-of-sample (:func:`out_of_fold_proba`): a model's probabilities on its own training labels
agree with those labels and hide their errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.model_selection import StratifiedKFold

from exemplar.errors import ConfigError, InvalidPredictionsError, StrategyError
from exemplar.models import make_model

__all__ = [
    "LabelErrors",
    "find_label_errors",
    "out_of_fold_proba",
    "rank_by_self_confidence",
]

Method = Literal["prune_by_noise_rate", "confident_joint_off_diagonal"]
_METHODS = ("prune_by_noise_rate", "confident_joint_off_diagonal")
_MODULE = "exemplar.curation.label_errors"


@dataclass(frozen=True)
class LabelErrors:
    """Items whose given label is probably wrong, most likely error first.

    Attributes
    ----------
    indices : ndarray of int, shape (k,)
        Flagged items, ranked by self-confidence (probability of the given label), lowest first.
    suggested : ndarray, shape (k,)
        The class the model is confident in instead, for each flagged item.
    self_confidence : ndarray of float, shape (k,)
        ``proba[i, given label]`` of each flagged item.
    reasons : tuple of str
        One line per flagged item, saying what a reviewer sees in the queue.
    thresholds : ndarray of float, shape (c,)
        Per-class thresholds ``t_j``: mean self-confidence of the items labeled ``j``
        (NaN for a class no item has).
    confident_joint : ndarray of int, shape (c, c)
        Row: given label; column: the class an item confidently belongs to.
    n_estimated_errors : int
        Off-diagonal mass of the confident joint calibrated to the label counts
        (Northcutt et al. 2021, eq. 3): the estimated number of wrong labels.
    classes : ndarray, shape (c,)
        The classes that index the columns of the probabilities.
    method : str
        How items were flagged.
    """

    indices: np.ndarray
    suggested: np.ndarray
    self_confidence: np.ndarray
    reasons: tuple[str, ...]
    thresholds: np.ndarray
    confident_joint: np.ndarray
    n_estimated_errors: int
    classes: np.ndarray
    method: str

    def __len__(self) -> int:
        return int(self.indices.size)


def out_of_fold_proba(
    X: np.ndarray,
    y: np.ndarray,
    recipe: str = "logreg",
    folds: int = 5,
    seed: int = 0,
    **params: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of every item from a model that did not see its label.

    Stratified k-fold: each fold is predicted by a model (:func:`exemplar.models.make_model`)
    fitted on the other folds. When the rarest class has fewer than ``folds`` items, the
    largest possible ``k`` (its count) is used instead.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Features (texts for a text recipe).
    y : ndarray, shape (n,)
        Given labels.
    recipe : str
        A model recipe name; ``params`` are its hyper-parameters.
    folds : int
        Number of folds wanted (at least 2).
    seed : int
        Seed of the fold split and of every model.

    Returns
    -------
    proba : ndarray of float, shape (n, c)
        Out-of-fold probabilities; columns follow ``classes``.
    classes : ndarray, shape (c,)
        Sorted unique labels of ``y``.

    Raises
    ------
    ConfigError
        If ``folds`` < 2, or a class has fewer than 2 items (no fold split is possible).
    """
    y = np.asarray(y)
    if folds < 2:
        raise ConfigError(f"{_MODULE}.out_of_fold_proba: folds must be at least 2, got {folds}")
    if len(X) != y.size:
        raise StrategyError(
            f"{_MODULE}.out_of_fold_proba: X has {len(X)} rows but y has {y.size} labels"
        )
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        raise ConfigError(
            f"{_MODULE}.out_of_fold_proba: y needs at least 2 classes, got {classes.size}"
        )
    k = int(min(folds, counts.min()))
    if k < 2:
        rare = classes[counts < 2].tolist()
        raise ConfigError(
            f"{_MODULE}.out_of_fold_proba: classes {rare} have a single item; "
            "cross-validation needs at least 2 items per class"
        )
    proba = np.zeros((y.size, classes.size))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(y.size), y):
        model = make_model(recipe, seed, **params).fit(X[train], y[train])
        columns = np.searchsorted(classes, np.asarray(model.classes_))
        proba[np.ix_(test, columns)] = model.predict(X[test]).proba
    return proba, classes


def _validate(
    proba: np.ndarray, labels: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked arrays, and the column index of each given label."""
    proba = np.asarray(proba, dtype=float)
    labels = np.asarray(labels)
    classes = np.asarray(classes)
    if proba.ndim != 2 or proba.shape[1] != classes.size:
        raise InvalidPredictionsError(
            f"{_MODULE}: proba must have shape (n, {classes.size}) for {classes.size} classes, "
            f"got {proba.shape}"
        )
    if not np.all(np.isfinite(proba)) or np.any(proba < 0):
        raise InvalidPredictionsError(f"{_MODULE}: proba has NaN, infinite or negative values")
    if labels.shape != (proba.shape[0],):
        raise StrategyError(
            f"{_MODULE}: labels must have shape ({proba.shape[0]},), got {labels.shape}"
        )
    if np.unique(classes).size != classes.size:
        raise StrategyError(f"{_MODULE}: classes must be unique, got {classes.tolist()}")
    order = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes[order], labels)
    pos = np.clip(pos, 0, classes.size - 1)
    found = classes[order][pos] == labels
    if not np.all(found):
        missing = np.unique(labels[~found])[:5].tolist()
        raise StrategyError(f"{_MODULE}: labels {missing} are not in classes {classes.tolist()}")
    return proba, classes, order[pos]


def rank_by_self_confidence(
    proba: np.ndarray, labels: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """All items ordered by the probability of their given label, lowest (most suspect) first.

    Self-confidence is the ranking score Northcutt et al. (2021, §3.2) use to order the
    items confident learning flags. Ties keep item order.

    Returns
    -------
    ndarray of int, shape (n,)
    """
    proba, _, given = _validate(proba, labels, classes)
    score = proba[np.arange(given.size), given]
    return np.argsort(score, kind="stable")


def _thresholds(proba: np.ndarray, given: np.ndarray) -> np.ndarray:
    """t_j: mean of ``proba[:, j]`` over items labeled ``j`` (NaN where none is)."""
    c = proba.shape[1]
    counts = np.bincount(given, minlength=c)
    sums = np.bincount(given, weights=proba[np.arange(given.size), given], minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _confident_labels(proba: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per item, the most probable class among those at or above their threshold; -1 if none."""
    above = proba >= np.where(np.isnan(thresholds), np.inf, thresholds)[None, :]
    masked = np.where(above, proba, -np.inf)
    best = masked.argmax(axis=1)
    return np.where(above.any(axis=1), best, -1)


def find_label_errors(
    proba: np.ndarray,
    labels: np.ndarray,
    classes: np.ndarray,
    *,
    method: Method = "prune_by_noise_rate",
) -> LabelErrors:
    """Flag probable label errors by confident learning (Northcutt et al. 2021).

    Parameters
    ----------
    proba : ndarray of float, shape (n, c)
        Out-of-sample class probabilities (see :func:`out_of_fold_proba`).
    labels : ndarray, shape (n,)
        Given labels; each must be in ``classes``.
    classes : ndarray, shape (c,)
        The class of each column of ``proba``.
    method : {"prune_by_noise_rate", "confident_joint_off_diagonal"}
        ``confident_joint_off_diagonal`` (the paper's C_confusion/C_{ỹ,y*} off-diagonal
        variant) flags every item counted off the diagonal of the confident joint.
        ``prune_by_noise_rate`` (the paper's "PBNR") flags, for each off-diagonal cell (i, j)
        of the calibrated joint, its ``round(n * Q[i, j])`` items labeled ``i`` with the
        largest margin ``p_j - p_i``.

    Returns
    -------
    LabelErrors
        Flagged items ranked by self-confidence, lowest first, with the thresholds, the
        confident joint, the estimated error count and a reason per item.
    """
    if method not in _METHODS:
        raise ConfigError(f"{_MODULE}: unknown method {method!r}; choose one of {_METHODS}")
    proba, classes, given = _validate(proba, labels, classes)
    n, c = proba.shape
    thresholds = _thresholds(proba, given)
    confident = _confident_labels(proba, thresholds)
    counted = confident >= 0
    joint = np.zeros((c, c), dtype=np.int64)
    np.add.at(joint, (given[counted], confident[counted]), 1)

    # Calibrate each row to the number of items given that label (eq. 3), then off-diagonal mass.
    label_counts = np.bincount(given, minlength=c).astype(float)
    row_sums = joint.sum(axis=1).astype(float)
    calibrated = np.divide(
        joint * label_counts[:, None],
        row_sums[:, None],
        out=np.zeros((c, c)),
        where=row_sums[:, None] > 0,
    )
    off = calibrated.copy()
    np.fill_diagonal(off, 0.0)
    n_estimated = round(float(off.sum()))

    suggested_col = np.full(n, -1)
    if method == "confident_joint_off_diagonal":
        flagged = counted & (confident != given)
        suggested_col[flagged] = confident[flagged]
    else:
        flagged = np.zeros(n, dtype=bool)
        for i in range(c):
            members = np.flatnonzero(given == i)
            for j in range(c):
                quota = round(float(off[i, j]))
                if i == j or quota == 0 or members.size == 0:
                    continue
                candidates = members[~flagged[members]]
                margin = proba[candidates, j] - proba[candidates, i]
                pick = candidates[np.argsort(-margin, kind="stable")[:quota]]
                pick = pick[proba[pick, j] > proba[pick, i]]
                flagged[pick] = True
                suggested_col[pick] = j

    idx = np.flatnonzero(flagged)
    self_conf = proba[idx, given[idx]]
    idx = idx[np.argsort(self_conf, kind="stable")]
    cols = suggested_col[idx]
    self_conf = proba[idx, given[idx]]
    reasons = tuple(
        f"labeled '{classes[given[k]]}', model says '{classes[j]}' with p={proba[k, j]:.2f} "
        f"(threshold {thresholds[j]:.2f})"
        for k, j in zip(idx.tolist(), cols.tolist(), strict=True)
    )
    return LabelErrors(
        indices=idx,
        suggested=classes[cols],
        self_confidence=self_conf,
        reasons=reasons,
        thresholds=thresholds,
        confident_joint=joint,
        n_estimated_errors=n_estimated,
        classes=classes,
        method=method,
    )
