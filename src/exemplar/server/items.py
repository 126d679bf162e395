"""What the labeling page shows for a leased item: display fields and the model's proposal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exemplar.project import Project
from exemplar.project.model_view import model_classes
from exemplar.server.cache import ModelRef, hot_cache
from exemplar.server.security import media_file
from exemplar.store.queue import LeasedItem
from exemplar.store.schema import Item, ModelVersion, QueueEntry

__all__ = ["Proposal", "display_fields", "item_payload", "proposal_for"]

#: Feature rows longer than this are truncated in the compact summary.
MAX_FEATURES_SHOWN = 64


@dataclass(frozen=True)
class Proposal:
    """The model's suggested class for an item, with its probability."""

    label: str
    confidence: float
    model_version: str


def _model_classes(
    project: Project, version: ModelVersion | ModelRef, n_columns: int
) -> list[str] | None:
    """The class of each probability column of ``version``'s proba array."""
    return model_classes(project, version.path, n_columns, getattr(version, "recipe", None))


def proposal_for(project: Project, item_row: int, cycle_id: int | None) -> Proposal | None:
    """The top class of the cycle's model for the item, if that model scored the pool."""
    if cycle_id is None:
        return None
    cache = hot_cache(project)  # the model and its scores never change once written
    version = cache.cycle_model(cycle_id)
    if version is None:
        return None
    proba = cache.proba(version.version)
    if proba is None or proba.ndim != 2 or item_row >= proba.shape[0]:
        return None
    classes = _model_classes(project, version, proba.shape[1])
    if classes is None:
        return None
    row = np.asarray(proba[item_row], dtype=np.float64)
    best = int(row.argmax())
    return Proposal(classes[best], float(row[best]), version.version)


def display_fields(project: Project, item: Item) -> dict[str, Any]:
    """The fields the page shows: ``text``, ``media_url`` or a compact ``features`` summary.

    The item's URI (a server path) is never sent.
    """
    if item.kind == "text":
        return {"text": item.text or ""}
    if item.kind == "image":
        return {"media_url": f"/api/v1/media/{item.id}"}
    values = np.asarray(hot_cache(project).feature_row(item.row), dtype=np.float64)
    shown = values[:MAX_FEATURES_SHOWN]
    return {
        "features": {
            "dim": int(values.size),
            "values": [round(float(v), 4) for v in shown],
            "truncated": bool(values.size > shown.size),
            "min": float(values.min()) if values.size else None,
            "max": float(values.max()) if values.size else None,
        }
    }


def item_payload(project: Project, leased: LeasedItem) -> dict[str, Any]:
    """The JSON of ``GET /api/v1/items/next`` for a leased queue entry."""
    item = Item(
        id=leased.item_id, row=leased.item_row, kind=leased.item_kind, text=leased.item_text
    )
    proposal = proposal_for(project, item.row, leased.cycle_id)
    return {
        "entry_id": leased.entry_id,
        "item_id": item.id,
        "kind": item.kind,
        "display": display_fields(project, item),
        "proposal": None
        if proposal is None
        else {
            "label": proposal.label,
            "confidence": proposal.confidence,
            "model_version": proposal.model_version,
        },
        "strategy": leased.strategy,
        "score": leased.score,
        "rank": leased.rank,
        "lease_expires": leased.lease_expires.isoformat(),
        "classes": project.classes,
        # detection and segmentation: the client fetches the item's objects
        # (GET /api/v1/items/{item_id}/objects) and submits them as a set
        "task": project.config.project.task,
    }


def entry_proposal(project: Project, entry_id: int) -> Proposal | None:
    """The proposal for a queue entry's item (None if the entry or a model is missing)."""
    with project.db.read() as s:
        entry = s.get(QueueEntry, entry_id)
        if entry is None:
            return None
        row = s.get_one(Item, entry.item_id).row
        cycle_id = entry.cycle_id
    return proposal_for(project, row, cycle_id)


def registered_image(project: Project, item_id: int) -> Path | None:
    """The file of a registered image item, or None (unknown id, not an image, missing, or
    not the file that was imported: see :func:`~exemplar.server.security.media_file`)."""
    with project.db.read() as s:
        item = s.get(Item, item_id)
    if item is None or item.kind != "image":
        return None
    return media_file(item.uri, item.file_id)
