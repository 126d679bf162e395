"""What labeling costs in time: the recorded seconds per label and the learned cost model.

One service for ``exemplar costs`` and ``GET /api/v1/costs``. It reads every label that
carries a time (``labels.seconds``: the labeling app's timer, else the time from the lease
to the answer), summarizes it per class and per annotator, and fits the cost model the
loop's cost-aware selection uses (:class:`~exemplar.models.label_cost.LabelCostModel`,
Settles, Craven & Friedland 2008) on the item features only. The loop's own fit adds the
model's out-of-sample (cross-validated) probabilities of the timed items, too costly to
repeat per request; what the newest cycle fitted is under ``last_cycle``. The report is
cached per project until a label, a model version or the item count changes.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sqlalchemy import func, select

from exemplar.errors import ExemplarError
from exemplar.models.label_cost import LabelCostModel
from exemplar.project.project import Project
from exemplar.store.label_times import timed_labels
from exemplar.store.schema import Cycle, Label

__all__ = ["label_costs"]

#: The last report per project folder, with the state it was computed on.
_CACHE: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}


def label_costs(project: Project) -> dict[str, Any]:
    """The project's labeling times and cost model, as JSON-ready data.

    Keys: ``n_timed``, ``median_seconds``, ``mean_seconds``, ``total_seconds``,
    ``per_class`` and ``per_annotator`` (labels and median seconds), ``model`` (the cost
    model's summary: ``kind`` regression or median, and why), ``cost_aware`` and
    ``cost_min_labels`` (the project's setting), ``last_cycle`` (what the newest cycle
    that recorded a cost model applied, or None).
    """
    sel = project.config.selection
    with project.db.read() as s:
        key = (
            s.scalar(select(func.max(Label.id))),
            s.scalar(select(func.count(Label.id))),
            s.scalar(select(func.max(Cycle.updated_at))),
            project.n_rows,
            sel.cost_aware,
            sel.cost_min_labels,
        )
        cached = _CACHE.get(str(project.root))
        if cached is not None and cached[0] == key:
            return copy.deepcopy(cached[1])
        timed = timed_labels(s)
        recorded = [
            (c.number, c.metrics["cost_model"])
            for c in s.scalars(select(Cycle).order_by(Cycle.number.desc()))
            if isinstance(c.metrics, dict) and "cost_model" in c.metrics
        ]
    out: dict[str, Any] = {
        "n_timed": len(timed),
        "median_seconds": float(np.median(timed.seconds)) if len(timed) else None,
        "mean_seconds": float(timed.seconds.mean()) if len(timed) else None,
        "total_seconds": float(timed.seconds.sum()),
        "per_class": _groups(timed.labels, timed.seconds),
        "per_annotator": _groups(timed.annotators, timed.seconds),
        "cost_aware": sel.cost_aware,
        "cost_min_labels": sel.cost_min_labels,
        "model": None,
        "last_cycle": None if not recorded else {"cycle": recorded[0][0], **recorded[0][1]},
    }
    if len(timed):
        try:
            X: np.ndarray | None = project.features()
        except ExemplarError:
            X = None
        model = LabelCostModel(min_labels=sel.cost_min_labels).fit(
            None if X is None else np.asarray(X[timed.rows]), timed.seconds, labels=timed.labels
        )
        out["model"] = {
            **model.summary_.to_dict(),
            "inputs": ["features"] if X is not None else [],
        }
    _CACHE[str(project.root)] = (key, copy.deepcopy(out))
    return out


def _groups(keys: np.ndarray, seconds: np.ndarray) -> dict[str, dict[str, float]]:
    return {
        name or "(none)": {
            "labels": int((keys == name).sum()),
            "median_seconds": float(np.median(seconds[keys == name])),
        }
        for name in sorted(set(keys.tolist()))
    }
