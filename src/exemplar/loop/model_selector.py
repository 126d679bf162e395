"""The Model Selector: train every candidate, validate, and pick the best checkpoint.

Validation uses a stratified hold-out split drawn from the labeled data when there are
enough labels, and stratified k-fold cross-validation when labels are few, as the
"fully automated active learning pipeline" seed asks. Every candidate is then refitted on
all labels; those fits are the checkpoints the loop saves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import StratifiedKFold, train_test_split

from exemplar.models import ModelAdapter, make_model

__all__ = ["Candidate", "CandidateResult", "best_candidate", "evaluate_candidates"]

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
) -> list[CandidateResult]:
    """Validate each candidate with the same splits, then refit it on all of ``(X, y)``.

    Candidates name any recipe of :data:`~exemplar.models.MODEL_RECIPES` (scikit-learn or
    PyTorch); ``device`` is where deep candidates train.
    """
    splits, protocol = _splits(y, validation_fraction, min_validation_labels, cv_folds, seed)
    classes = np.unique(y)
    results = []
    for cand in candidates:
        metrics = _validate(X, y, cand, splits, classes, seed, device) if splits else {}
        model = make_model(cand.recipe, seed, device=device, **cand.params).fit(X, y)
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
