"""The newest model's view of the pool: its probabilities and the class of each column.

Used by the review ranking (:mod:`exemplar.project.review`) and by the labeling server's
proposals. Probability arrays are written once per model version, under a name of their
own (``proba-<version>``), so what is read here never changes once it exists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from exemplar.errors import ModelError
from exemplar.models import checkpoint_classes
from exemplar.project.project import Project
from exemplar.store.schema import ModelVersion

__all__ = ["ModelView", "model_classes", "newest_model"]


@dataclass(frozen=True)
class ModelView:
    """The newest model's probabilities over the pool, with its column classes."""

    version: str
    proba: np.ndarray
    classes: list[str]


@functools.lru_cache(maxsize=8)
def _checkpoint_classes(path: str, mtime: float, recipe: str | None) -> tuple[str, ...] | None:
    # Checkpoints are written by this project only (DESIGN.md §4), never untrusted input.
    try:
        return tuple(str(c) for c in checkpoint_classes(path, recipe))
    except ModelError:
        return None


def model_classes(
    project: Project, path: str, n_columns: int, recipe: str | None = None
) -> list[str] | None:
    """The class of each of the ``n_columns`` probability columns of a model version.

    ``path`` is the version's checkpoint, relative to the project folder. When the
    checkpoint was pruned, the columns are taken to be the project's classes sorted, as
    scikit-learn orders ``classes_``. None when neither fits ``n_columns``.
    """
    file = Path(project.root) / path
    if file.is_file():
        classes = _checkpoint_classes(str(file), file.stat().st_mtime, recipe)
        if classes is not None:
            return list(classes) if len(classes) == n_columns else None
    if n_columns == len(project.classes):
        return sorted(project.classes)
    return None


def newest_model(project: Project) -> ModelView | None:
    """The newest model version whose probability array exists (None before any model)."""
    with project.db.read() as s:
        versions = list(s.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))
    for version in versions:
        name = f"proba-{version.version}"
        if not project.arrays.exists(name):
            continue
        proba = np.asarray(project.arrays.load(name), dtype=np.float64)
        if proba.ndim != 2:
            continue
        classes = model_classes(project, version.path, proba.shape[1], version.recipe)
        if classes is not None:
            return ModelView(version.version, proba, classes)
    return None
