"""Relabel an item or label a new one? ActiveLab-style scores with several annotators.

With several annotators of unequal accuracy, one more label can go to a new item (more
data) or to an item already labeled (a more reliable label). ActiveLab (Goh & Mueller
2023) answers with one score for every item, labeled or not, on one scale: how sure we
would be of the item's label if we stopped now. The items with the lowest scores get the
next labels, whichever kind they are. This module writes that rule here, from the paper's
description (it is not cleanlab's code, which is AGPL):

1. **Consensus.** Each labeled item's label distribution is a weighted mix of the model's
   predicted probabilities and of each annotator's label, read through that annotator's
   estimated accuracy ``a_j`` (its label with probability ``a_j``, any other class with
   ``(1 - a_j) / (K - 1)``). The weights are how much better than a majority-class guess
   each source is (CROWDLAB, Goh, Tkachenko & Mueller 2022): an annotator's accuracy is
   read from its agreement with the *other* annotators on the items they share (pairwise
   agreement through the symmetric noise model, see ``_annotator_accuracy``), shrunk
   towards the model's probability of its labels while few are; the model's is its agreement
   with the consensus, and its weight grows with the square root of the mean number of
   labels per item. The consensus label is the mix's most likely class, its quality the
   mix's probability of it.
2. **Labeled items** score the average of that quality and ``1/K`` (what one more label of
   an average annotator is worth when nothing is known), weighted by the total weight of
   the item's annotators plus the model's, against an average annotator's weight.
3. **New items** score the average of the model's top probability and ``1/K``, weighted by
   the model's weight against an average annotator's.

A low score means little confidence in the item's label: label it (again) first. Items
that every annotator has labeled are not proposed for relabeling.

The model's probabilities of labeled items should be out-of-sample (cross-validated), as
the paper does, or the model only echoes the labels it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exemplar.errors import ConfigError

__all__ = [
    "NO_LABEL",
    "ActiveLabScores",
    "RelabelPlan",
    "activelab_scores",
    "consensus_labels",
    "majority_vote",
    "plan_batch",
    "to_project_classes",
]

#: The entry of the ``(n_items, n_annotators)`` label matrix for "this annotator gave none".
NO_LABEL = -1
#: Floor of every weight, so that no source is ignored entirely.
_MIN_WEIGHT = 1e-6
#: Shared labels the model's opinion of an annotator is worth (see _annotator_accuracy).
PRIOR_STRENGTH = 5.0


@dataclass(frozen=True)
class ActiveLabScores:
    """The outcome of :func:`activelab_scores`.

    Attributes
    ----------
    consensus : ndarray of int64, shape (n_labeled,)
        Consensus class index of each labeled item.
    quality : ndarray, shape (n_labeled,)
        The consensus distribution's probability of the consensus label.
    labeled : ndarray, shape (n_labeled,)
        ActiveLab score of each labeled item (low: relabel it).
    unlabeled : ndarray, shape (n_unlabeled,)
        ActiveLab score of each unlabeled item (low: label it).
    annotator_accuracy : ndarray, shape (n_annotators,)
        Estimated accuracy of each annotator (agreement with the others).
    annotator_weight : ndarray, shape (n_annotators,)
        Weight of each annotator's labels in the consensus.
    model_weight : float
        Weight of the model's probabilities in the consensus.
    """

    consensus: np.ndarray
    quality: np.ndarray
    labeled: np.ndarray
    unlabeled: np.ndarray
    annotator_accuracy: np.ndarray
    annotator_weight: np.ndarray
    model_weight: float


@dataclass(frozen=True)
class RelabelPlan:
    """Which labeled items to relabel and which new items to label, for one batch.

    ``relabel`` indexes the labeled items (rows of the label matrix), ``new`` the unlabeled
    ones; ``scores`` holds the ActiveLab score of each pick, lowest first, in pick order.
    """

    relabel: np.ndarray
    new: np.ndarray
    order: list[tuple[str, int]]
    scores: np.ndarray


def _check(labels: np.ndarray, proba: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    lab = np.asarray(labels)
    p = np.asarray(proba, dtype=np.float64)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ConfigError("labels must be an (n_items, n_annotators) integer matrix")
    if p.ndim != 2 or p.shape[0] != lab.shape[0]:
        raise ConfigError(f"{name} must have shape ({lab.shape[0]}, n_classes), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ConfigError(f"{name} must hold finite, non-negative probabilities")
    k = p.shape[1]
    if k < 2:
        raise ConfigError("ActiveLab needs at least two classes")
    if ((lab < NO_LABEL) | (lab >= k)).any():
        raise ConfigError(f"labels must be class indices 0..{k - 1} or {NO_LABEL} (none)")
    if (lab == NO_LABEL).all(axis=1).any():
        raise ConfigError("every labeled item needs at least one annotator's label")
    return lab.astype(np.int64), p


def to_project_classes(
    proba: np.ndarray, model_classes: list[str], classes: list[str]
) -> tuple[np.ndarray, list[str]]:
    """A model's probabilities in the columns of the project's ``classes``.

    ``model_classes`` names ``proba``'s columns (the classes the model was trained on, in
    its order). Columns of classes the project no longer has (renamed or removed since
    the model was trained) are dropped and each row renormalized (uniform when nothing is
    left); their names are the second value.
    """
    index = {c: i for i, c in enumerate(classes)}
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(model_classes):
        raise ConfigError(f"proba has {p.shape[-1]} columns for {len(model_classes)} classes")
    known = [j for j, c in enumerate(model_classes) if c in index]
    dropped = [c for c in model_classes if c not in index]
    out = np.zeros((p.shape[0], len(classes)))
    out[:, [index[model_classes[j]] for j in known]] = p[:, known]
    if dropped:
        total = out.sum(axis=1, keepdims=True)
        out = np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / len(classes))
    return out, dropped


def majority_vote(
    labels: np.ndarray, n_classes: int, proba: np.ndarray | None = None
) -> np.ndarray:
    """Majority vote per item of a label matrix; ties go to the class ``proba`` finds most
    likely (without ``proba``, to the class the item's first annotator column gave)."""
    lab = np.asarray(labels)
    counts = np.zeros((lab.shape[0], n_classes))
    for j in range(lab.shape[1]):
        given = lab[:, j] != NO_LABEL
        counts[np.flatnonzero(given), lab[given, j]] += 1 + 1e-6 * (lab.shape[1] - j)
    if proba is not None:
        counts += 1e-3 * np.asarray(proba)
    return np.argmax(counts, axis=1).astype(np.int64)


def _annotator_accuracy(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Each annotator's estimated accuracy, from how often the *other* annotators gave the
    same label on the items they share, shrunk towards its agreement with the model.

    As CROWDLAB scores an annotator by its agreement with the other annotators (never with
    a vote its own label is part of, which would flatter it and hand ties to one column),
    the agreement ``A_jl`` of each pair of annotators is measured on the items both
    labeled. Under the symmetric noise model of the consensus (right with probability
    ``a``, else any other class alike), ``A_jl = 1/K + (K-1)/K · u_j u_l`` with
    ``u = (K a - 1) / (K - 1)``, so every triplet of annotators gives
    ``u_j^2 = (u_j u_l)(u_j u_r) / (u_l u_r)`` (the moment estimator of a rank-one
    agreement matrix); their weighted mean gives each annotator's accuracy (with two
    annotators only, the pair's agreement is split evenly between them). The model's
    (out-of-sample) probability of the annotator's labels is a prior worth
    :data:`PRIOR_STRENGTH` items: with no item labeled twice yet (the start of a project),
    annotators are judged by the model alone, and the more items they share with others,
    the more the pairs count. An annotator with no label gets the others' mean.
    """
    m = labels.shape[1]
    k = proba.shape[1]
    given = labels != NO_LABEL
    shared = np.zeros((m, m))
    agree = np.zeros((m, m))
    for j in range(m):
        for other in range(j + 1, m):
            both = given[:, j] & given[:, other]
            if both.any():
                shared[j, other] = shared[other, j] = float(both.sum())
                same = float((labels[both, j] == labels[both, other]).mean())
                agree[j, other] = agree[other, j] = same
    # u_j u_l for each pair (0 at chance agreement; negative agreement is read as chance).
    product = np.clip((agree - 1.0 / k) * k / (k - 1.0), 0.0, 1.0)
    u = np.full(m, np.nan)
    for j in range(m):
        # Triplets: u_j^2 = (u_j u_l)(u_j u_r) / (u_l u_r), weighted by the items behind
        # the weakest pair and by u_l u_r squared (a small divisor is a noisy one).
        num = den = 0.0
        for left in range(m):
            for right in range(left + 1, m):
                if j in (left, right) or min(shared[j, left], shared[j, right]) == 0:
                    continue
                weight = min(shared[j, left], shared[j, right], shared[left, right])
                weight *= product[left, right] ** 2
                if weight > 0:
                    num += weight * product[j, left] * product[j, right] / product[left, right]
                    den += weight
        if den > 0:
            u[j] = np.sqrt(min(num / den, 1.0))
        elif shared[j].any():  # two annotators: the pair's product, split evenly
            u[j] = np.sqrt((shared[j] * product[j]).sum() / shared[j].sum())
    pairwise = (1.0 + (k - 1.0) * np.nan_to_num(u)) / k
    n_shared = (given & ((given.sum(axis=1) > 1)[:, None])).sum(axis=0).astype(np.float64)
    acc = np.full(m, np.nan)
    for j in range(m):
        mine = given[:, j]
        if not mine.any():
            continue
        prior = float(proba[np.flatnonzero(mine), labels[mine, j]].mean())
        acc[j] = (n_shared[j] * pairwise[j] + PRIOR_STRENGTH * prior) / (
            n_shared[j] + PRIOR_STRENGTH
        )
    if np.isnan(acc).all():
        return np.full(m, 0.5)
    return np.where(np.isnan(acc), np.nanmean(acc), acc)


def activelab_scores(
    labels: np.ndarray,
    proba_labeled: np.ndarray,
    proba_unlabeled: np.ndarray | None = None,
) -> ActiveLabScores:
    """ActiveLab scores of labeled and unlabeled items (Goh & Mueller 2023).

    Parameters
    ----------
    labels : int array of shape (n_labeled, n_annotators)
        Class index each annotator gave each labeled item, :data:`NO_LABEL` where none.
    proba_labeled : array of shape (n_labeled, n_classes)
        The model's out-of-sample probabilities of the labeled items.
    proba_unlabeled : array of shape (n_unlabeled, n_classes), optional
        The model's probabilities of the unlabeled items.

    Returns
    -------
    ActiveLabScores

    References
    ----------
    Goh, H. W., & Mueller, J. (2023). ActiveLab: Active learning with re-labeling by
    multiple annotators. ICLR Workshop on Trustworthy ML. arXiv:2301.11856.
    Goh, H. W., Tkachenko, U., & Mueller, J. (2022). CROWDLAB: Supervised learning to infer
    consensus labels and quality scores for data with multiple annotators. arXiv:2210.06812.
    """
    lab, p = _check(labels, proba_labeled, "proba_labeled")
    n, m = lab.shape
    k = p.shape[1]
    p = p / p.sum(axis=1, keepdims=True).clip(1e-12)
    majority = majority_vote(lab, k, p)
    # A majority-class guess: the error every source is measured against.
    guess_error = max(1.0 - np.bincount(majority, minlength=k).max() / n, _MIN_WEIGHT)
    accuracy = np.clip(_annotator_accuracy(lab, p), 1.0 / k, 1.0 - 1e-6)
    annotator_weight = np.maximum(1.0 - (1.0 - accuracy) / guess_error, _MIN_WEIGHT)
    model_error = 1.0 - float((p.argmax(axis=1) == majority).mean())
    per_item = float((lab != NO_LABEL).sum(axis=1).mean())
    model_weight = max(1.0 - model_error / guess_error, _MIN_WEIGHT) * np.sqrt(per_item)
    mix = model_weight * p
    total = np.full(n, model_weight)
    for j in range(m):
        given = lab[:, j] != NO_LABEL
        if not given.any():
            continue
        like = np.full((int(given.sum()), k), (1.0 - accuracy[j]) / (k - 1))
        like[np.arange(like.shape[0]), lab[given, j]] = accuracy[j]
        mix[given] += annotator_weight[j] * like
        total[given] += annotator_weight[j]
    mix /= total[:, None]
    consensus = mix.argmax(axis=1)
    quality = mix[np.arange(n), consensus]
    mean_weight = float(annotator_weight.mean())
    labeled_scores = (total * quality + mean_weight / k) / (total + mean_weight)
    if proba_unlabeled is None or np.shape(proba_unlabeled)[0] == 0:
        unlabeled_scores = np.empty(0)
    else:
        q = np.asarray(proba_unlabeled, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != k or not np.isfinite(q).all():
            raise ConfigError(f"proba_unlabeled must have shape (n, {k}) and finite values")
        top = q.max(axis=1) / q.sum(axis=1).clip(1e-12)
        unlabeled_scores = (model_weight * top + mean_weight / k) / (model_weight + mean_weight)
    return ActiveLabScores(
        consensus=consensus.astype(np.int64),
        quality=quality,
        labeled=labeled_scores,
        unlabeled=unlabeled_scores,
        annotator_accuracy=accuracy,
        annotator_weight=annotator_weight,
        model_weight=float(model_weight),
    )


def consensus_labels(labels: np.ndarray, proba_labeled: np.ndarray) -> np.ndarray:
    """The consensus class index of each labeled item (see :func:`activelab_scores`)."""
    return activelab_scores(labels, proba_labeled).consensus


def plan_batch(
    scores: ActiveLabScores,
    labels: np.ndarray,
    batch_size: int,
    max_labels: int | None = None,
    eligible: np.ndarray | None = None,
) -> RelabelPlan:
    """Spend ``batch_size`` labels on the lowest ActiveLab scores, labeled or new.

    A labeled item with ``max_labels`` labels already (default: one per annotator column,
    so every annotator has labeled it) cannot be relabeled and is left out (the batch is
    then made of what remains); so is one ``eligible`` (a boolean mask over the labeled
    items) marks False. Each item gets at most one label per batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ConfigError(f"batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    lab = np.asarray(labels)
    cap = lab.shape[1] if max_labels is None else max_labels
    if cap < 1:
        raise ConfigError(f"max_labels must be at least 1, got {max_labels}")
    room = (lab != NO_LABEL).sum(axis=1) < cap
    if eligible is not None:
        if np.shape(eligible) != room.shape:
            raise ConfigError(f"eligible must have one flag per labeled item ({room.size})")
        room &= np.asarray(eligible, dtype=bool)
    open_rows = np.flatnonzero(room)
    kinds = np.concatenate(
        [np.zeros(open_rows.size, dtype=np.int8), np.ones(scores.unlabeled.size, dtype=np.int8)]
    )
    index = np.concatenate([open_rows, np.arange(scores.unlabeled.size)])
    values = np.concatenate([scores.labeled[open_rows], scores.unlabeled])
    # Lowest score first; ties: new items first (more data), then by position.
    order = np.lexsort((index, -kinds, values))[:batch_size]
    picks = [("relabel" if kinds[o] == 0 else "new", int(index[o])) for o in order]
    relabel = np.array([i for kind, i in picks if kind == "relabel"], dtype=np.int64)
    new = np.array([i for kind, i in picks if kind == "new"], dtype=np.int64)
    return RelabelPlan(relabel=relabel, new=new, order=picks, scores=values[order])
