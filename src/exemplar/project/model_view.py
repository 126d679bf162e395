"""The newest model's view of the pool: its probabilities and the class of each column.

Used by the review ranking (:mod:`exemplar.project.review`) and by the labeling server's
proposals. Probability arrays are written once per model version, under a name of their
own (``proba-<version>``), so what is read here never changes once it exists.

Detection and segmentation keep no such arrays: :func:`newest_detector` loads the newest
selected checkpoint (bound to the items' image files when it reads them, as the loop
does) and :func:`predict_item_objects` predicts chosen items chunk by chunk.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from exemplar.errors import ExemplarError, ModelError
from exemplar.loop.tasks import bind_files, model_inputs
from exemplar.models import ModelAdapter, checkpoint_classes, load_model
from exemplar.objects import Objects
from exemplar.project.project import Project
from exemplar.store.schema import ModelVersion

__all__ = [
    "OBJECT_CHUNK",
    "DetectorView",
    "ModelView",
    "load_detector",
    "model_classes",
    "newest_detector",
    "newest_model",
    "predict_item_objects",
]

#: Images a detector predicts at once outside the loop (review, gold-set curves): memory
#: stays bounded by this many images, whatever the number asked for.
OBJECT_CHUNK = 64


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


@dataclass(frozen=True)
class DetectorView:
    """The newest selected detector of an object project, loaded and ready to predict."""

    version: str
    recipe: str
    model: ModelAdapter


def load_detector(project: Project, version: ModelVersion) -> ModelAdapter:
    """A model version's checkpoint, loaded (and bound to the image files it reads).

    Raises
    ------
    ExemplarError
        When the checkpoint is missing or cannot be read.
    """
    # Checkpoints are written by this project only (DESIGN.md §4), never untrusted input.
    model = load_model(
        version.recipe, Path(project.root) / version.path, device=project.config.model.device
    )
    return bind_files(project, model)


def newest_detector(project: Project) -> DetectorView | None:
    """The newest selected model version whose checkpoint loads (None before any model)."""
    with project.db.read() as s:
        versions = list(
            s.scalars(
                select(ModelVersion)
                .where(ModelVersion.selected.is_(True))
                .order_by(ModelVersion.id.desc())
            )
        )
    for version in versions:
        if not (Path(project.root) / version.path).is_file():
            continue
        try:
            model = load_detector(project, version)
        except ExemplarError:  # an unreadable checkpoint: try the one before it
            continue
        return DetectorView(version.version, version.recipe, model)
    return None


def predict_item_objects(
    project: Project, model: ModelAdapter, rows: Sequence[int]
) -> list[Objects]:
    """A detector's objects on the items at feature ``rows``, in its own frame, in order.

    Predicts ``OBJECT_CHUNK`` images at a time from the pixel rows (or, for a model that
    reads image files, from the rows' files, see :func:`exemplar.loop.tasks.model_inputs`).
    """
    files = hasattr(model, "bind_items")
    out: list[Objects] = []
    for start in range(0, len(rows), OBJECT_CHUNK):
        part = np.asarray(rows[start : start + OBJECT_CHUNK], dtype=np.int64)
        out += list(model.predict_objects(model_inputs(project, files, part)))  # type: ignore[attr-defined]
    return out
