"""Review: labels ordered by risk, and a reviewer's accept / correct / reject.

**Disputed** items come first: their overlap annotators disagree (``exemplar.store.consensus``),
so they have no current label until a reviewer decides; each row lists every annotator's
vote and has risk ``DISPUTED_RISK``. Then the risk of an item's current label (higher is
riskier) adds up three signals:

* **disagreement** (+2): at least two annotators' newest human labels of the item differ;
* **model conflict** (+confidence): the newest model's top class differs from the label,
  weighted by the model's probability of that top class;
* **low confidence** (+1 - p): the newest model's probability of the labeled class.

A review never rewrites history: it appends a label row (``source=human``,
``annotator=<reviewer>``, ``strategy=review``), so the old rows stay
(:func:`exemplar.store.consensus.review_item`).

In a detection or segmentation project a label is an image's set of objects, and the
risk of a labeled image compares its verified objects with the newest selected model's
objects on it (:func:`object_review_rows`): confident model boxes no verified object
covers (possibly missed objects), verified objects the model misses or doubts (possibly
wrong or extra), and verified objects whose best-matching model box names another class.

The server's review API and page and ``exemplar review`` call these functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from sqlalchemy import select

from exemplar.errors import ReviewError
from exemplar.objects import Objects, box_iou, rescale_objects
from exemplar.project.model_view import (
    DetectorView,
    ModelView,
    newest_detector,
    newest_model,
    predict_item_objects,
)
from exemplar.project.project import Project
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationStatus, current_annotations
from exemplar.store.consensus import (
    REVIEW_STRATEGY,
    disputed_votes,
    is_open_vote,
    review_item,
)
from exemplar.store.curation import CURATION_TAG
from exemplar.store.labels import current_labels
from exemplar.store.schema import Annotation, Item, Label, LabelSource, LabelStatus

__all__ = [
    "CONFIDENT_BOX",
    "DISPUTED_RISK",
    "LOW_CONFIDENCE",
    "MATCH_IOU",
    "MAX_FINDINGS",
    "REVIEW_STRATEGY",
    "object_review_rows",
    "review_label",
    "review_rows",
]

#: A labeled class with less model probability than this is flagged ``low-confidence``.
LOW_CONFIDENCE = 0.5
#: The risk of a disputed item: disagreement (2) plus no agreed label (as if the model
#: conflicted with certainty, 1, and gave the label no probability, 1). Disputed items
#: are also listed before every other row.
DISPUTED_RISK = 4.0
#: A model box scoring at least this is confident: unmatched, it may be a missed object;
#: the best match of a verified object scoring less doubts that object.
CONFIDENT_BOX = 0.5
#: A model box and a verified object match when their boxes overlap by this IoU or more.
MATCH_IOU = 0.5
#: Findings listed per image (the riskiest first); the counts cover them all.
MAX_FINDINGS = 20


def _disagreeing_items(rows: list[Label]) -> set[int]:
    """Items where ≥2 annotators' newest human labels name different classes."""
    newest: dict[tuple[int, str], Label] = {}
    for row in rows:  # ordered by id: later rows win
        decision = row.strategy == REVIEW_STRATEGY or (row.strategy or "").startswith(
            CURATION_TAG
        )  # a reviewer's decision, not an annotator's vote
        if row.annotator is not None and not decision:
            newest[(row.item_id, row.annotator)] = row
    classes: dict[int, set[str]] = defaultdict(set)
    for (item_id, _), row in newest.items():
        # An overlap vote is written ``proposed`` while the item's other slots are open.
        if row.status in (LabelStatus.VERIFIED, LabelStatus.PROPOSED) and row.label is not None:
            classes[item_id].add(row.label)
    return {item_id for item_id, names in classes.items() if len(names) >= 2}


def review_rows(
    project: Project, *, limit: int = 50, include_reviewed: bool = False
) -> list[dict[str, Any]]:
    """Disputed items, then current labels by risk (riskiest first), ``limit`` of them.

    Each row carries the item's ``kind`` and, for a text item, its ``text``, so that a
    reviewer sees what was labeled. Items whose overlap votes are still open are left
    out: they are not labeled yet. A detection or segmentation project ranks its labeled
    images instead (:func:`object_review_rows`).
    """
    if project.config.project.objects:
        return object_review_rows(project, limit=limit, include_reviewed=include_reviewed)
    model = newest_model(project)
    with project.db.read() as s:
        labels = current_labels(s, verified_only=False)
        current = [
            c
            for c in labels
            if c.label is not None
            and c.status not in (LabelStatus.REJECTED, LabelStatus.PRUNED)
            and c.source != LabelSource.MODEL  # a model's proposal is verified elsewhere
            and not is_open_vote(c.status, c.source)
        ]
        disputed = [c for c in labels if c.status == LabelStatus.DISPUTED]
        ids = [c.label_id for c in current + disputed]
        newest_rows = {row.id: row for row in s.scalars(select(Label).where(Label.id.in_(ids)))}
        votes = disputed_votes(s, [newest_rows[c.label_id] for c in disputed])
        human = list(
            s.scalars(select(Label).where(Label.source == LabelSource.HUMAN).order_by(Label.id))
        )
    disagree = _disagreeing_items(human)
    out: list[dict[str, Any]] = []
    for c in disputed:
        row = newest_rows[c.label_id]
        out.append(
            {
                "item_id": c.item_id,
                "label_id": c.label_id,
                "label": None,
                "status": c.status,
                "source": c.source,
                "annotator": None,
                "created_at": row.created_at.isoformat() if row.created_at else None,
                "proposal": _proposal(model, c.row),
                "risk": DISPUTED_RISK,
                "reasons": ["disagreement"],
                "votes": [
                    {"annotator": v.annotator, "label": v.label, "verdict": v.verdict}
                    for v in votes.get(c.item_id, [])
                ],
            }
        )
    for c in current:
        row = newest_rows[c.label_id]
        if row.strategy == REVIEW_STRATEGY and not include_reviewed:
            continue
        risk = 0.0
        reasons: list[str] = []
        if c.item_id in disagree:
            risk += 2.0
            reasons.append("disagreement")
        proposal = _proposal(model, c.row)
        if model is not None and proposal is not None:
            p = model.proba[c.row]
            p_label = float(p[model.classes.index(c.label)]) if c.label in model.classes else 0.0
            if proposal["label"] != c.label:
                risk += proposal["confidence"]
                reasons.append("model-conflict")
            risk += 1.0 - p_label
            if p_label < LOW_CONFIDENCE:
                reasons.append("low-confidence")
        out.append(
            {
                "item_id": c.item_id,
                "label_id": c.label_id,
                "label": c.label,
                "status": c.status,
                "source": c.source,
                "annotator": row.annotator,
                "created_at": row.created_at.isoformat() if row.created_at else None,
                "proposal": proposal,
                "risk": round(risk, 6),
                "reasons": reasons,
                "votes": [],
            }
        )
    out.sort(key=lambda r: (r["status"] != LabelStatus.DISPUTED, -r["risk"], -r["label_id"]))
    out = out[:limit]
    _add_items(project, out)
    return out


def object_review_rows(
    project: Project, *, limit: int = 50, include_reviewed: bool = False
) -> list[dict[str, Any]]:
    """Labeled images of a detection or segmentation project, riskiest first.

    The newest selected model (its checkpoint, see
    :func:`~exemplar.project.model_view.newest_detector`) predicts every labeled image,
    chunk by chunk, and its objects are compared with the image's verified objects (in the
    image's pixels). An image's risk is the sum of

    * **possibly missed** objects: each model box scoring at least ``CONFIDENT_BOX`` that
      overlaps no verified object (nor hard negative) by ``MATCH_IOU`` adds its score;
    * **doubted** objects: each verified object whose best match (the highest-scoring model
      box overlapping it by ``MATCH_IOU``) scores under ``CONFIDENT_BOX`` adds one minus
      that score (one when the model has no box there): possibly wrong or extra;
    * **class disagreements**: each verified object whose confident best match names
      another class adds that box's score.

    This is the disagreement between a trained detector and the annotations that label
    review tools use to find annotation errors (as in confident learning, Northcutt et al.,
    JAIR 2021, with boxes matched by IoU). Without a model every risk is 0.

    Each row has the keys of :func:`review_rows` (``label`` is the objects marker,
    ``proposal`` names the model version and how many confident boxes it found, or is
    None) plus ``objects`` (counts: ``verified``, ``missed``, ``doubted``,
    ``class_conflicts``) and ``findings``: up to ``MAX_FINDINGS`` dicts with ``kind``
    (``missed``, ``doubted`` or ``class``), ``box`` (image pixels), ``label`` (the verified
    class), ``model_label``, ``score`` and ``object_id`` (the verified object, if any).
    """
    detector = newest_detector(project)
    with project.db.read() as s:
        labels = [
            c
            for c in current_labels(s, verified_only=False)
            if c.label == OBJECTS_LABEL
            and c.status == LabelStatus.VERIFIED
            and not is_open_vote(c.status, c.source)
        ]
        newest_rows = {
            row.id: row
            for row in s.scalars(select(Label).where(Label.id.in_([c.label_id for c in labels])))
        }
        if not include_reviewed:
            labels = [c for c in labels if newest_rows[c.label_id].strategy != REVIEW_STRATEGY]
        ids = [c.item_id for c in labels]
        sizes = {
            item_id: (int(width or 0), int(height or 0))
            for item_id, width, height in s.execute(
                select(Item.id, Item.width, Item.height).where(Item.id.in_(ids))
            )
        }
        found = current_annotations(
            s, ids, statuses=(AnnotationStatus.VERIFIED, AnnotationStatus.HARD_NEGATIVE)
        )
    verified: dict[int, list[Annotation]] = defaultdict(list)
    negatives: dict[int, list[Annotation]] = defaultdict(list)
    for ann in found:
        target = negatives if ann.status == AnnotationStatus.HARD_NEGATIVE else verified
        target[ann.item_id].append(ann)
    predicted = _image_objects(project, detector, labels, sizes)
    out: list[dict[str, Any]] = []
    for c in labels:
        row = newest_rows[c.label_id]
        model_objects = predicted.get(c.item_id)
        risk, counts, findings = _compare_objects(
            verified[c.item_id], negatives[c.item_id], model_objects, project.classes
        )
        reasons = []
        if counts["missed"]:
            reasons.append(f"{counts['missed']} possibly missed (confident model box, no object)")
        if counts["doubted"]:
            reasons.append(f"{counts['doubted']} doubted (the model misses or doubts it)")
        if counts["class_conflicts"]:
            reasons.append(f"{counts['class_conflicts']} class disagreement(s) with the model")
        confident = None if model_objects is None else len(model_objects.above(CONFIDENT_BOX))
        out.append(
            {
                "item_id": c.item_id,
                "label_id": c.label_id,
                "label": c.label,
                "status": c.status,
                "source": c.source,
                "annotator": row.annotator,
                "created_at": row.created_at.isoformat() if row.created_at else None,
                "proposal": None
                if detector is None or model_objects is None
                else {"model_version": detector.version, "boxes": confident},
                "risk": round(risk, 6),
                "reasons": reasons,
                "votes": [],
                "objects": {"verified": len(verified[c.item_id]), **counts},
                "findings": findings,
            }
        )
    out.sort(key=lambda r: (-r["risk"], -r["label_id"]))
    out = out[:limit]
    _add_items(project, out)
    return out


def _image_objects(
    project: Project,
    detector: DetectorView | None,
    labels: Sequence[Any],
    sizes: dict[int, tuple[int, int]],
) -> dict[int, Objects]:
    """The detector's objects on each labeled image, in the image's own pixels (no masks:
    the comparison is by box)."""
    if detector is None:
        return {}
    usable = sorted((c for c in labels if all(sizes.get(c.item_id, (0, 0)))), key=lambda c: c.row)
    found = predict_item_objects(project, detector.model, [c.row for c in usable])
    side = project.config.data.image_side
    out: dict[int, Objects] = {}
    for c, objs in zip(usable, found, strict=True):
        width, height = sizes[c.item_id]
        boxes_only = Objects(objs.boxes, objs.classes, objs.scores, objs.class_proba)
        out[c.item_id] = rescale_objects(boxes_only, max(width, height) / side, (height, width))
    return out


def _compare_objects(
    verified: Sequence[Annotation],
    negatives: Sequence[Annotation],
    model: Objects | None,
    classes: Sequence[str],
) -> tuple[float, dict[str, int], list[dict[str, Any]]]:
    """One image's risk, counts and findings (see :func:`object_review_rows`)."""
    counts = {"missed": 0, "doubted": 0, "class_conflicts": 0}
    if model is None:
        return 0.0, counts, []
    boxes = np.asarray([[a.x0, a.y0, a.x1, a.y1] for a in verified], np.float32).reshape(-1, 4)
    scores = (np.ones(len(model), np.float32) if model.scores is None else model.scores).astype(
        np.float64
    )
    iou = box_iou(boxes, model.boxes)  # (verified, model)
    findings: list[tuple[float, dict[str, Any]]] = []
    for j, ann in enumerate(verified):
        matches = np.flatnonzero(iou[j] >= MATCH_IOU)
        if matches.size:
            best = int(matches[np.argmax(scores[matches])])
            score, model_label = float(scores[best]), classes[int(model.classes[best])]
        else:
            score, model_label = 0.0, None
        if score < CONFIDENT_BOX:
            counts["doubted"] += 1
            kind, weight = "doubted", 1.0 - score
        elif model_label != ann.label:
            counts["class_conflicts"] += 1
            kind, weight = "class", score
        else:
            continue
        findings.append(
            (
                weight,
                {
                    "kind": kind,
                    "box": [float(ann.x0), float(ann.y0), float(ann.x1), float(ann.y1)],
                    "label": ann.label,
                    "model_label": model_label,
                    "score": round(score, 6) if matches.size else None,
                    "object_id": ann.object_id,
                },
            )
        )
    covered = np.asarray(
        [[a.x0, a.y0, a.x1, a.y1] for a in [*verified, *negatives]], np.float32
    ).reshape(-1, 4)
    overlap = box_iou(model.boxes, covered)  # (model, verified + hard negatives)
    for k in np.flatnonzero(scores >= CONFIDENT_BOX):
        if overlap.shape[1] and overlap[k].max() >= MATCH_IOU:
            continue
        counts["missed"] += 1
        findings.append(
            (
                float(scores[k]),
                {
                    "kind": "missed",
                    "box": [float(v) for v in model.boxes[k]],
                    "label": None,
                    "model_label": classes[int(model.classes[k])],
                    "score": round(float(scores[k]), 6),
                    "object_id": None,
                },
            )
        )
    risk = float(sum(w for w, _ in findings))
    findings.sort(key=lambda f: -f[0])
    return risk, counts, [f for _, f in findings[:MAX_FINDINGS]]


def _add_items(project: Project, rows: list[dict[str, Any]]) -> None:
    """Give each row its item's ``kind`` and ``text`` (None except for text items)."""
    if not rows:
        return
    with project.db.read() as s:
        items = {
            item_id: (kind, text)
            for item_id, kind, text in s.execute(
                select(Item.id, Item.kind, Item.text).where(
                    Item.id.in_([r["item_id"] for r in rows])
                )
            )
        }
    for row in rows:
        kind, text = items.get(row["item_id"], (None, None))
        row["kind"] = kind
        row["text"] = (text or "") if kind == "text" else None


def _proposal(model: ModelView | None, row: int) -> dict[str, Any] | None:
    """The newest model's top class for an item row, if it scored that row."""
    if model is None or row >= model.proba.shape[0]:
        return None
    p = model.proba[row]
    best = int(p.argmax())
    return {
        "label": model.classes[best],
        "confidence": float(p[best]),
        "model_version": model.version,
    }


def review_label(
    project: Project,
    item_id: int,
    reviewer: str,
    action: Literal["accept", "correct", "reject"],
    label: str | None = None,
) -> Label:
    """Append a reviewer's decision to the item's label history; the row written.

    In a detection or segmentation project ``accept`` confirms a labeled image's objects as
    they are and ``reject`` drops the image from training; its objects are corrected one
    by one through the Objects API, so ``correct`` is refused.

    Raises
    ------
    NothingToReviewError
        If the item has no current label (or does not exist).
    ReviewError, UnknownClassError
        If the decision does not fit the item (``correct`` without a class, a class
        outside the project's, ``correct`` on an image of objects, ...).
    """
    classes = list(project.classes)
    if project.config.project.objects:
        if action == "correct":
            raise ReviewError(
                f"item {item_id} is an image of objects: correct its objects one by one "
                f"(/api/v1/items/{item_id}/objects), or accept or reject the image"
            )
        classes.append(OBJECTS_LABEL)
    with project.db.session() as s:
        return review_item(s, item_id, reviewer, action, label, classes=classes)
