"""Per-process caches of the labeling hot path: project facts that never change once written.

Serving the next item needs the item's feature row and the cycle model's probabilities.
Looking them up afresh costs several database reads and file opens per request, which is
most of a request's time under load. What is cached here is immutable once it exists, so
the caches are never stale:

* feature rows: ``features.f32`` is append-only and committed rows never change; the
  memory map is reopened only when a row beyond the mapped ones is asked for;
* a cycle's model version: set once when the cycle's model is selected (that a cycle has
  none is remembered for a few seconds only);
* a model version's probability array: written once, atomically, under a name of its own.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from exemplar.project import Project
from exemplar.store.schema import Cycle, ModelVersion

__all__ = ["HotCache", "ModelRef", "hot_cache"]

#: Probability arrays kept memory-mapped (the newest models are the ones served).
MAX_PROBA_ARRAYS = 4
#: How long "this cycle has no model" is remembered.
NO_MODEL_SECONDS = 5.0


@dataclass(frozen=True)
class ModelRef:
    """The model version a cycle scored the pool with."""

    version: str
    path: str


class HotCache:
    """Immutable facts of one open project, cached for this process (see the module doc)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._features: np.ndarray | None = None
        self._models: dict[int, tuple[float, ModelRef | None]] = {}
        self._proba: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def feature_row(self, row: int) -> np.ndarray:
        """Row ``row`` of the feature array (a view into the memory map)."""
        features = self._features
        if features is None or row >= features.shape[0]:
            features = self._features = self.project.features()
        return features[row]

    def cycle_model(self, cycle_id: int) -> ModelRef | None:
        """The model version of cycle ``cycle_id``, or None if it has none (yet).

        "None" is remembered for ``NO_MODEL_SECONDS`` only (a first, random cycle has no
        model; a cycle is queued only after its model is chosen, but this does not rely on
        that).
        """
        now = time.monotonic()
        hit = self._models.get(cycle_id)
        if hit is not None and (hit[1] is not None or hit[0] > now):
            return hit[1]
        with self.project.db.read() as s:
            row = s.execute(
                select(ModelVersion.version, ModelVersion.path)
                .join(Cycle, Cycle.model_version_id == ModelVersion.id)
                .where(Cycle.id == cycle_id)
            ).first()
        ref = None if row is None else ModelRef(row.version, row.path)
        self._models[cycle_id] = (now + NO_MODEL_SECONDS, ref)
        return ref

    def proba(self, version: str) -> np.ndarray | None:
        """The pool probabilities of model ``version`` (memory-mapped), or None if absent."""
        name = f"proba-{version}"
        with self._lock:
            if name in self._proba:
                self._proba.move_to_end(name)
                return self._proba[name]
        arrays = self.project.arrays
        proba = arrays.load(name) if arrays.exists(name) else None
        if proba is None:
            return None  # not cached: the array may be written later
        with self._lock:
            self._proba[name] = proba
            while len(self._proba) > MAX_PROBA_ARRAYS:
                self._proba.popitem(last=False)
        return proba


_CACHES: weakref.WeakKeyDictionary[Project, HotCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def hot_cache(project: Project) -> HotCache:
    """The :class:`HotCache` of ``project`` in this process (created on first use)."""
    cache = _CACHES.get(project)
    if cache is None:
        with _CACHES_LOCK:
            cache = _CACHES.get(project)
            if cache is None:
                cache = _CACHES[project] = HotCache(project)
    return cache
