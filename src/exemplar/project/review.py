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

The server's review API and page and ``exemplar review`` call these functions.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from sqlalchemy import select

from exemplar.project.model_view import ModelView, newest_model
from exemplar.project.project import Project
from exemplar.store.consensus import (
    REVIEW_STRATEGY,
    disputed_votes,
    is_open_vote,
    review_item,
)
from exemplar.store.labels import current_labels
from exemplar.store.schema import Item, Label, LabelSource, LabelStatus

__all__ = [
    "DISPUTED_RISK",
    "LOW_CONFIDENCE",
    "REVIEW_STRATEGY",
    "review_label",
    "review_rows",
]

#: A labeled class with less model probability than this is flagged ``low-confidence``.
LOW_CONFIDENCE = 0.5
#: The risk of a disputed item: disagreement (2) plus no agreed label (as if the model
#: conflicted with certainty, 1, and gave the label no probability, 1). Disputed items
#: are also listed before every other row.
DISPUTED_RISK = 4.0


def _disagreeing_items(rows: list[Label]) -> set[int]:
    """Items where ≥2 annotators' newest human labels name different classes."""
    newest: dict[tuple[int, str], Label] = {}
    for row in rows:  # ordered by id: later rows win
        if row.annotator is not None and row.strategy != REVIEW_STRATEGY:
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
    out: they are not labeled yet.
    """
    model = newest_model(project)
    with project.db.read() as s:
        labels = current_labels(s, verified_only=False)
        current = [
            c
            for c in labels
            if c.label is not None
            and c.status != LabelStatus.REJECTED
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

    Raises
    ------
    NothingToReviewError
        If the item has no current label (or does not exist).
    ReviewError, UnknownClassError
        If the decision does not fit the item (``correct`` without a class, a class
        outside the project's, ...).
    """
    with project.db.session() as s:
        return review_item(s, item_id, reviewer, action, label, classes=project.classes)
