"""The Model Selector: train every candidate, validate, and pick the best checkpoint.

Validation uses a stratified hold-out split drawn from the labeled data when there are
enough labels, and stratified k-fold cross-validation when labels are few, as the
"fully automated active learning pipeline" seed asks. Every candidate is then refitted on
all labels; those fits are the checkpoints the loop saves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import StratifiedKFold, train_test_split

from exemplar.metrics.detection import mean_average_precision
from exemplar.models import ModelAdapter, make_model
from exemplar.objects import Objects

__all__ = [
    "Candidate",
    "CandidateResult",
    "best_candidate",
    "evaluate_candidates",
    "evaluate_object_candidates",
]

#: Fewer labeled images than this: detectors are fitted on all of them, unvalidated.
MIN_OBJECT_VALIDATION_IMAGES = 5

#: Criteria where lower is better.
_LOWER_IS_BETTER = frozenset({"log_loss"})


@dataclass(frozen=True)
class Candidate:
    """A model recipe plus hyper-parameters."""

    recipe: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class CandidateResult:
    """A candidate's validation metrics and its fit on all labels."""

    candidate: Candidate
    metrics: dict[str, float]
    protocol: str
    model: ModelAdapter


def evaluate_candidates(
    X: np.ndarray,
    y: np.ndarray,
    candidates: Sequence[Candidate],
    *,
    validation_fraction: float = 0.2,
    min_validation_labels: int = 50,
    cv_folds: int = 3,
    seed: int = 0,
    device: str = "cpu",
    repeats: np.ndarray | None = None,
    trusted: np.ndarray | None = None,
) -> list[CandidateResult]:
    """Validate each candidate with the same splits, then refit it on all of ``(X, y)``.

    Candidates name any recipe of :data:`~exemplar.models.MODEL_RECIPES` (scikit-learn or
    PyTorch); ``device`` is where deep candidates train. ``repeats`` (one int per row)
    weights training rows by repetition, so every recipe honours it (curation's hard
    negatives and weak labels); validation reads each row once and only ``trusted`` rows
    (default: all), so weak labels are trained on but never validated against.
    """
    n = y.size
    trusted_rows = np.arange(n) if trusted is None else np.flatnonzero(trusted)
    untrusted = np.setdiff1d(np.arange(n), trusted_rows)
    base, protocol = _splits(
        y[trusted_rows], validation_fraction, min_validation_labels, cv_folds, seed
    )
    splits = [
        (_expand(np.concatenate([trusted_rows[tr], untrusted]), repeats), trusted_rows[va])
        for tr, va in base
    ]
    classes = np.unique(y)
    everything = _expand(np.arange(n), repeats)
    results = []
    for cand in candidates:
        metrics = _validate(X, y, cand, splits, classes, seed, device) if splits else {}
        model = make_model(cand.recipe, seed, device=device, **cand.params)
        model.fit(X[everything], y[everything])
        results.append(CandidateResult(cand, metrics, protocol, model))
    return results


def _expand(rows: np.ndarray, repeats: np.ndarray | None) -> np.ndarray:
    """``rows``, each repeated ``repeats[row]`` times (in order)."""
    return rows if repeats is None else np.repeat(rows, repeats[rows])


def evaluate_object_candidates(
    X: np.ndarray,
    objects: Sequence[Objects],
    candidates: Sequence[Candidate],
    *,
    classes: Sequence[str],
    negatives: Sequence[Objects] | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
    device: str = "cpu",
    build: Mapping[str, Any] | None = None,
    segmentation: bool = False,
    prepare: Callable[[ModelAdapter], object] | None = None,
    repeats: np.ndarray | None = None,
    trusted: np.ndarray | None = None,
) -> list[CandidateResult]:
    """Fit each detector candidate on the same labeled images and validate it by mAP.

    A fraction of the labeled images (the same for every candidate, drawn from ``seed``)
    is held out; each candidate is fitted on the rest and scored by COCO mAP@0.5 and
    mAP@[.5:.95] (boxes, or masks with ``segmentation``) on the held-out images. Detectors
    are slow to fit, so the validated fit is the checkpoint (no refit on all labels).
    With fewer than :data:`MIN_OBJECT_VALIDATION_IMAGES` images, every candidate is fitted
    on all of them, unvalidated, and the first one is kept.

    Parameters
    ----------
    X : ndarray of shape (n, C * S * S)
        The labeled images' pixel rows (the model's frame).
    objects : sequence of Objects
        Each image's verified objects, in the model's frame.
    candidates : sequence of Candidate
        Detector recipes and their parameters.
    classes : sequence of str
        The project's classes (``Objects.classes`` index them).
    negatives : sequence of Objects, optional
        Each image's hard negatives, passed to ``fit``.
    build : mapping, optional
        Parameters every candidate is built with (image side, channels); a candidate's own
        parameters override them.
    prepare : callable, optional
        Called with each fresh model before it is fitted (e.g. to bind image files).
    repeats, trusted : ndarray, optional
        As for :func:`evaluate_candidates`: training images repeated ``repeats`` times, and
        only ``trusted`` images (verified, not weak) held out for validation.
    """
    trusted_rows = np.arange(len(objects)) if trusted is None else np.flatnonzero(trusted)
    n = trusted_rows.size
    n_val = math.ceil(validation_fraction * n) if n >= MIN_OBJECT_VALIDATION_IMAGES else 0
    order = trusted_rows[np.random.default_rng(seed % (2**32)).permutation(n)]
    val = np.sort(order[:n_val])
    train = _expand(np.setdiff1d(np.arange(len(objects)), val), repeats)
    protocol = (
        f"holdout: fitted on {train.size} image(s), validated on {n_val}"
        if n_val
        else f"none (fewer than {MIN_OBJECT_VALIDATION_IMAGES} labeled images to validate)"
    )
    results = []
    for cand in candidates:
        params = {**(build or {}), **cand.params}
        model = make_model(cand.recipe, seed, device=device, classes=list(classes), **params)
        if prepare is not None:
            prepare(model)
        fit_negatives = None if negatives is None else [negatives[i] for i in train]
        model.fit(  # type: ignore[call-arg]
            X[train],
            [objects[i] for i in train],  # type: ignore[arg-type]
            negatives=fit_negatives,
        )
        metrics: dict[str, float] = {}
        if n_val:
            predicted = model.predict_objects(X[val])  # type: ignore[attr-defined]
            ap = mean_average_precision(
                [objects[i] for i in val], predicted, classes, segm=segmentation
            )
            metrics = {"map50": float(ap["map50"]), "map": float(ap["map"]), "n_validation": n_val}
        results.append(CandidateResult(cand, metrics, protocol, model))
    return results


def best_candidate(metrics: Sequence[Mapping[str, Any]], criterion: str) -> int:
    """Index of the best validation ``metrics`` by ``criterion`` (first on ties or none)."""
    sign = -1.0 if criterion in _LOWER_IS_BETTER else 1.0
    best, best_value = 0, -math.inf
    for i, values in enumerate(metrics):
        value = values.get(criterion)
        if isinstance(value, (int, float)) and not math.isnan(value) and sign * value > best_value:
            best, best_value = i, sign * value
    return best


def _splits(
    y: np.ndarray, fraction: float, min_holdout: int, folds: int, seed: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    _, counts = np.unique(y, return_counts=True)
    rows = np.arange(y.size)
    n_val = math.ceil(fraction * y.size)
    if y.size >= min_holdout and counts.min() >= 2 and n_val >= counts.size:
        train, val = train_test_split(
            rows, test_size=fraction, stratify=y, random_state=seed % (2**32)
        )
        return [(np.sort(train), np.sort(val))], "holdout"
    k = min(folds, int(counts.min()))
    if k >= 2:
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % (2**32))
        return [(tr, va) for tr, va in skf.split(rows, y)], f"cv{k}"
    return [], "none (too few labels per class to validate)"


def _validate(
    X: np.ndarray,
    y: np.ndarray,
    cand: Candidate,
    splits: list[tuple[np.ndarray, np.ndarray]],
    classes: np.ndarray,
    seed: int,
    device: str,
) -> dict[str, float]:
    truth, pred, proba_rows = [], [], []
    for train, val in splits:
        if np.unique(y[train]).size < 2:
            continue
        model = make_model(cand.recipe, seed, device=device, **cand.params)
        model.fit(X[train], y[train])
        proba = np.zeros((val.size, classes.size))
        proba[:, np.searchsorted(classes, model.classes_)] = model.predict(X[val]).proba
        truth.append(y[val])
        pred.append(classes[proba.argmax(axis=1)])
        proba_rows.append(proba)
    if not truth:
        return {}
    t, p = np.concatenate(truth), np.concatenate(pred)
    pr = np.clip(np.vstack(proba_rows), 1e-12, 1.0)
    pr /= pr.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(accuracy_score(t, p)),
        "macro_f1": float(f1_score(t, p, average="macro")),
        "log_loss": float(log_loss(t, pr, labels=classes)),
    }
