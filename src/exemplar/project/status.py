"""What ``exemplar status`` shows: cycle, state, queue, label counts per class, metric history.

For detection and segmentation the counts per class are verified objects on labeled
images, and the metric is mAP@0.5.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select

from exemplar.store.annotations import AnnotationStatus, current_annotations
from exemplar.store.curation import count_open_proposals
from exemplar.store.labels import current_labels
from exemplar.store.queue import queue_counts
from exemplar.store.schema import CurationOperation, CurationStatus, Cycle, Item, ModelVersion

__all__ = ["project_status"]


def project_status(project: Any) -> dict[str, Any]:
    """A JSON-serializable snapshot of a project's progress."""
    db = project.db
    with db.read() as s:
        n_items = s.scalar(select(func.count()).select_from(Item)) or 0
        per_split = dict(s.execute(select(Item.split, func.count()).group_by(Item.split)).all())
        labels = current_labels(s, verified_only=False)
        cycles = list(s.scalars(select(Cycle).order_by(Cycle.number)))
        versions = {v.id: v.version for v in s.scalars(select(ModelVersion))}
        objects = project.config.project.objects
        if objects:  # object tasks: verified objects per class, on labeled images
            labeled = [c.item_id for c in labels if c.status == "verified"]
            found = current_annotations(s, labeled, statuses=(AnnotationStatus.VERIFIED,))
            per_object_class = Counter(a.label for a in found)
    verified = Counter(c.label for c in labels if c.status == "verified")
    counts = per_object_class if objects else verified
    per_class = {name: int(counts.get(name, 0)) for name in project.classes}
    history = [
        {
            "cycle": c.number,
            "state": c.state,
            "strategy": c.strategy,
            "model": versions.get(c.model_version_id) if c.model_version_id else None,
            "n_labels": c.metrics.get("n_labels"),
            "validation": c.metrics.get("validation", {}),
            "batch": c.metrics.get("batch", {}),
            "arm": c.metrics.get("albl_arm"),  # the strategy ALBL's bandit drew
            "decision": c.decision,
            "timings": c.timings,
            "stop_reason": c.stop_reason,
        }
        for c in cycles
    ]
    current = history[-1] if history else None
    rare = [name for name, n in per_class.items() if n == 0]
    return {
        "project": project.config.project.name,
        "task": project.config.project.task,
        "metric": "map50" if objects else "accuracy",
        "root": str(project.root),
        "database": project.db.dialect,
        "items": {"total": int(n_items), **{k: int(v) for k, v in per_split.items()}},
        "labels": {
            "verified": int(sum(verified.values())),
            "proposed": sum(1 for c in labels if c.status == "proposed"),
            "rejected": sum(1 for c in labels if c.status == "rejected"),
            "disputed": sum(1 for c in labels if c.status == "disputed"),
            "pruned": sum(1 for c in labels if c.status == "pruned"),
            "per_class": per_class,
            "per_class_counts": "objects" if objects else "items",
            "classes_without_labels": rare,
        },
        "curation": _curation(db),
        "queue": queue_counts(db),
        "cycle": current,
        "stopped": bool(current and current["state"] == "stopped"),
        "stop_reason": current["stop_reason"] if current else None,
        "history": history,
    }


def _curation(db: Any) -> dict[str, Any]:
    """Open proposals to verify and curation operations waiting for a reviewer."""
    with db.read() as s:
        open_proposals = count_open_proposals(s)
        waiting = dict(
            s.execute(
                select(CurationOperation.kind, func.count())
                .where(CurationOperation.status == CurationStatus.PROPOSED.value)
                .group_by(CurationOperation.kind)
            ).all()
        )
    return {"proposals_to_verify": open_proposals, "operations_to_review": waiting}
