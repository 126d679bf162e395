"""Curation for a project (issue #12): one home the CLI, the API and the app all call.

Each function runs a step of :mod:`exemplar.loop.curate` or a verdict of
:mod:`exemplar.store.curation` on a :class:`~exemplar.project.Project` and returns plain,
JSON-able dicts (what ``exemplar curate`` prints and ``/api/v1/curation`` returns). The
newest model comes from :mod:`exemplar.project.model_view`: its stored probabilities for
classification, its loaded checkpoint for detection and segmentation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from sqlalchemy import func, select

from exemplar.loop.curate import (
    apply_curation,
    label_error_operation,
    merge_operation,
    propose,
    prune_operation,
    split_operation,
    undo_curation,
)
from exemplar.project.model_view import newest_detector, newest_model
from exemplar.project.project import Project
from exemplar.store.annotations import OBJECTS_LABEL, current_annotations
from exemplar.store.curation import (
    ApplyReport,
    CurationConflict,
    CurationError,
    CurationNotFound,
    decide,
    dismiss_operation,
    get_operation,
    list_operations,
    operation_candidates,
    reject_proposal,
    verification_queue,
    verify_proposal,
)
from exemplar.store.db import id_chunks
from exemplar.store.labels import current_labels
from exemplar.store.schema import (
    Annotation,
    AnnotationStatus,
    CurationCandidate,
    CurationOperation,
    CurationStatus,
    Item,
    Split,
)

__all__ = [
    "apply",
    "curate",
    "decide_candidates",
    "dismiss",
    "gallery",
    "merge_classes",
    "operation",
    "operations",
    "propose_now",
    "reject",
    "split_class",
    "undo",
    "verification",
    "verify",
]

Kind = Literal["label", "object"]


def propose_now(project: Project, *, sample: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The newest model labels a sample of the pool (``[curation] propose_sample``)."""
    if project.config.project.objects:
        detector = newest_detector(project)
        if detector is None:
            raise CurationConflict("no trained detector yet: run `exemplar run` first")
        written = propose(
            project,
            detector.model,
            detector.version,
            detector.recipe,
            cycle_id=None,
            seed=seed,
            sample=sample,
        )
        return {"model_version": detector.version, "proposed": written}
    view = newest_model(project)
    if view is None:
        raise CurationConflict("no trained model yet: run `exemplar run` first")
    written = propose(
        project,
        None,
        view.version,
        None,
        cycle_id=None,
        proba=view.proba,
        classes=view.classes,
        seed=seed,
        sample=sample,
    )
    return {"model_version": view.version, "proposed": written}


def curate(
    project: Project,
    steps: Sequence[str] = ("label_errors", "prune"),
    *,
    reviewer: str | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Find label errors and/or redundant items now; the operations recorded (proposed)."""
    found = []
    for step in steps:
        if step == "label_errors":
            op = label_error_operation(project, created_by=reviewer, seed=seed)
        elif step == "prune":
            op = prune_operation(project, created_by=reviewer, seed=seed)
        else:
            raise CurationError(f"unknown curation step {step!r}; expected label_errors or prune")
        if op is not None:
            found.append(operation(project, op.id, limit=0))
    return found


def split_class(
    project: Project,
    label: str,
    *,
    names: Sequence[str] | None = None,
    n_classes: int | None = None,
    reviewer: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Propose a split of ``label`` (applied once a reviewer confirms it)."""
    op = split_operation(
        project, label, names=names, n_classes=n_classes, created_by=reviewer, seed=seed
    )
    return operation(project, op.id)


def merge_classes(
    project: Project, sources: Sequence[str], into: str, *, reviewer: str | None = None
) -> dict[str, Any]:
    """Propose merging ``sources`` into ``into`` (applied once a reviewer confirms it)."""
    op = merge_operation(project, sources, into, created_by=reviewer)
    return operation(project, op.id)


def _operation_dict(op: CurationOperation, counts: Mapping[str, int]) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind,
        "status": op.status,
        "summary": op.summary,
        "params": op.params,
        "cycle_id": op.cycle_id,
        "created_by": op.created_by,
        "decided_by": op.decided_by,
        "created_at": op.created_at.isoformat(),
        "updated_at": op.updated_at.isoformat(),
        "candidates": dict(counts),
    }


def _candidate_dict(c: CurationCandidate, item: Item | None) -> dict[str, Any]:
    return {
        "id": c.id,
        "item_id": c.item_id,
        "object_id": c.object_id,
        "uri": item.uri if item is not None else None,
        "reason": c.reason,
        "score": c.score,
        "current_label": c.current_label,
        "suggested_label": c.suggested_label,
        "detail": c.detail,
        "decision": c.decision,
        "decided_by": c.decided_by,
        "written": c.written,
    }


def operations(
    project: Project, *, kind: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Every recorded operation, newest first, with its candidates counted by decision."""
    with project.db.read() as s:
        out = []
        for op in list_operations(s, kind=kind, status=status):
            counts = dict(
                s.execute(
                    select(CurationCandidate.decision, func.count())
                    .where(CurationCandidate.operation_id == op.id)
                    .group_by(CurationCandidate.decision)
                ).all()
            )
            out.append(_operation_dict(op, counts))
        return out


def operation(
    project: Project, operation_id: int, *, limit: int | None = None, offset: int = 0
) -> dict[str, Any]:
    """One operation with its candidates (``limit`` of them from ``offset``; None: all)."""
    with project.db.read() as s:
        op = get_operation(s, operation_id)
        cands = operation_candidates(s, operation_id)
        counts: dict[str, int] = {}
        for c in cands:
            counts[c.decision] = counts.get(c.decision, 0) + 1
        shown = cands[offset:] if limit is None else cands[offset : offset + limit]
        items = {
            i.id: i for i in s.scalars(select(Item).where(Item.id.in_([c.item_id for c in shown])))
        }
        out = _operation_dict(op, counts)
        out["items"] = [_candidate_dict(c, items.get(c.item_id)) for c in shown]
        return out


def decide_candidates(
    project: Project,
    operation_id: int,
    decisions: Mapping[int, str],
    *,
    reviewer: str,
    labels: Mapping[int, str] | None = None,
) -> int:
    """Record ``accepted``/``declined`` per candidate (and a chosen class where given)."""
    with project.db.session() as s:
        return decide(
            s, operation_id, decisions, reviewer=reviewer, labels=labels, classes=_valid(project)
        )


def _valid(project: Project) -> list[str]:
    """Classes a decision may name: the project's, and the new ones of proposed splits."""
    extra: list[str] = []
    with project.db.read() as s:
        for op in list_operations(s, kind="split", status=CurationStatus.PROPOSED):
            extra += list(op.params.get("into", []))
    return [*project.classes, *extra]


def _report(report: ApplyReport) -> dict[str, Any]:
    return {
        "operation_id": report.operation_id,
        "status": str(report.status),
        "written": report.written,
        "skipped": report.skipped,
    }


def apply(
    project: Project, operation_id: int, *, reviewer: str, accept_pending: bool = False
) -> dict[str, Any]:
    """Apply an operation's accepted candidates (all pending ones with ``accept_pending``)."""
    return _report(
        apply_curation(project, operation_id, reviewer=reviewer, accept_pending=accept_pending)
    )


def undo(project: Project, operation_id: int, *, reviewer: str) -> dict[str, Any]:
    """Undo an applied operation; the labels it replaced come back (history is kept)."""
    return _report(undo_curation(project, operation_id, reviewer=reviewer))


def dismiss(project: Project, operation_id: int, *, reviewer: str) -> None:
    """Close a proposed operation without changing any label."""
    with project.db.session() as s:
        dismiss_operation(s, operation_id, reviewer=reviewer)


def verification(
    project: Project,
    *,
    order: Literal["uncertain", "confident", "class"] = "uncertain",
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    label: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """The verification queue: open proposals, ordered and filtered, with their items."""
    with project.db.read() as s:
        views, total = verification_queue(
            s,
            order=order,
            min_confidence=min_confidence,
            max_confidence=max_confidence,
            label=label,
            limit=limit,
            offset=offset,
        )
        items = {
            i.id: i for i in s.scalars(select(Item).where(Item.id.in_([v.item_id for v in views])))
        }
    return {
        "total": total,
        "order": order,
        "items": [
            {
                "kind": v.kind,
                "id": v.id,
                "item_id": v.item_id,
                "uri": items[v.item_id].uri if v.item_id in items else None,
                "kind_of_item": items[v.item_id].kind if v.item_id in items else None,
                "text": items[v.item_id].text if v.item_id in items else None,
                "label": v.label,
                "confidence": v.confidence,
                "model_version": v.model_version,
                "box": list(v.box) if v.box is not None else None,
            }
            for v in views
        ],
    }


def verify(
    project: Project,
    kind: Kind,
    proposal_id: int,
    *,
    reviewer: str,
    label: str | None = None,
    box: Sequence[float] | None = None,
) -> int:
    """Accept a proposal (fixing its class or box if given); the row written."""
    with project.db.session() as s:
        return verify_proposal(
            s,
            kind,
            proposal_id,
            reviewer=reviewer,
            classes=project.classes,
            label=label,
            box=box,
            hard_negative_confidence=project.config.curation.hard_negative_confidence,
        )


def reject(project: Project, kind: Kind, proposal_id: int, *, reviewer: str) -> int:
    """Reject a proposal (a confident object proposal becomes a hard negative)."""
    with project.db.session() as s:
        return reject_proposal(
            s,
            kind,
            proposal_id,
            reviewer=reviewer,
            classes=project.classes,
            hard_negative_confidence=project.config.curation.hard_negative_confidence,
        )


def gallery(project: Project, label: str, *, limit: int = 200, offset: int = 0) -> dict[str, Any]:
    """A class's verified exemplars (object crops' boxes for detection), riskiest first.

    Risk is what a reviewer should look at first: for classification, one minus the newest
    model's probability of the given class; for objects, one minus the confidence of the
    proposal the object was verified from (0 for an object a person drew), raised to the
    score of an open label-error suspicion on it.
    """
    if label not in project.classes:
        raise CurationNotFound(
            f"unknown class {label!r}; the classes are {', '.join(project.classes)}"
        )
    suspects = _open_suspects(project)
    with project.db.read() as s:
        labels = current_labels(s, splits=(Split.POOL, Split.TRAIN))
        if project.config.project.objects:
            entries = _object_entries(project, s, labels, label, suspects)
        else:
            entries = _item_entries(project, labels, label, suspects)
        entries.sort(key=lambda e: (-e["risk"], e["item_id"], e.get("object_id") or 0))
        shown = entries[offset : offset + limit]
        items = {
            i.id: i
            for i in s.scalars(select(Item).where(Item.id.in_([e["item_id"] for e in shown])))
        }
    for e in shown:
        item = items.get(e["item_id"])
        e["uri"] = item.uri if item is not None else None
        e["text"] = item.text if item is not None else None
        e["width"], e["height"] = (item.width, item.height) if item is not None else (None, None)
    return {"label": label, "total": len(entries), "items": shown}


def _open_suspects(project: Project) -> dict[tuple[int, int | None], dict[str, Any]]:
    out: dict[tuple[int, int | None], dict[str, Any]] = {}
    with project.db.read() as s:
        for op in list_operations(s, status=CurationStatus.PROPOSED):
            for c in operation_candidates(s, op.id):
                out[(c.item_id, c.object_id)] = {
                    "operation_id": op.id,
                    "candidate_id": c.id,
                    "kind": op.kind,
                    "reason": c.reason,
                    "score": c.score,
                    "suggested_label": c.suggested_label,
                }
    return out


def _item_entries(
    project: Project,
    labels: Sequence[Any],
    label: str,
    suspects: Mapping[tuple[int, int | None], dict[str, Any]],
) -> list[dict[str, Any]]:
    view = newest_model(project)
    column = view.classes.index(label) if view is not None and label in view.classes else None
    entries = []
    for c in labels:
        if c.label != label:
            continue
        risk = 0.0
        if view is not None and column is not None and c.row < view.proba.shape[0]:
            risk = float(1.0 - view.proba[c.row, column])
        suspect = suspects.get((c.item_id, None))
        if suspect is not None and suspect["kind"] == "label_errors":
            risk = max(risk, float(suspect["score"] or 0.0))
        entries.append({"item_id": c.item_id, "object_id": None, "risk": risk, "suspect": suspect})
    return entries


def _object_entries(
    project: Project,
    s: Any,
    labels: Sequence[Any],
    label: str,
    suspects: Mapping[tuple[int, int | None], dict[str, Any]],
) -> list[dict[str, Any]]:
    images = [c.item_id for c in labels if c.label == OBJECTS_LABEL]
    found = [
        a
        for a in current_annotations(s, images, statuses=(AnnotationStatus.VERIFIED,))
        if a.label == label
    ]
    first = {  # each object's first row: the proposal it was verified from, if any
        object_id: confidence
        for part in id_chunks([a.object_id for a in found])
        for object_id, confidence in s.execute(
            select(Annotation.object_id, Annotation.confidence).where(Annotation.id.in_(part))
        )
    }
    entries = []
    for a in found:
        proposed = first.get(a.object_id)
        risk = 0.0 if proposed is None else float(1.0 - proposed)
        suspect = suspects.get((a.item_id, a.object_id))
        if suspect is not None and suspect["kind"] == "label_errors":
            risk = max(risk, float(suspect["score"] or 0.0))
        entries.append(
            {
                "item_id": a.item_id,
                "object_id": a.object_id,
                "risk": float(np.clip(risk, 0.0, 1.0)),
                "box": [a.x0, a.y0, a.x1, a.y1],
                "suspect": suspect,
            }
        )
    return entries
