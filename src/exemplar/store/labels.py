"""Writing and reading the append-only label history (one home for every label write)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.orm import Session

from exemplar.errors import ExemplarError
from exemplar.store.db import bind_time, pyformat, read_time
from exemplar.store.schema import Item, Label, LabelSource, LabelStatus, utcnow

__all__ = [
    "CurrentLabel",
    "UnknownClassError",
    "add_label",
    "add_labels",
    "count_current_labels",
    "current_labels",
    "validate_class",
]


class UnknownClassError(ExemplarError, ValueError):
    """A label names a class the project does not have."""


@dataclass(frozen=True)
class CurrentLabel:
    """The newest label row of an item."""

    item_id: int
    row: int
    label: str | None
    status: str
    source: str
    label_id: int
    #: A verified label that corrects a confident proposal (trained with more weight).
    hard_negative: bool = False
    #: A model's proposal: its confidence and the cycle that wrote it.
    confidence: float | None = None
    cycle_id: int | None = None


def validate_class(label: str, classes: Sequence[str]) -> str:
    """Return ``label`` if it is one of ``classes``, else raise :class:`UnknownClassError`."""
    if label not in classes:
        raise UnknownClassError(
            f"unknown class {label!r}; the project's classes are: {', '.join(classes)}"
        )
    return label


def add_label(
    session: Session | Connection,
    item_id: int,
    label: str | None,
    *,
    classes: Sequence[str],
    source: LabelSource | str,
    status: LabelStatus | str = LabelStatus.VERIFIED,
    annotator: str | None = None,
    cycle_id: int | None = None,
    strategy: str | None = None,
    score: float | None = None,
    idempotency_key: str | None = None,
    model_version: str | None = None,
    confidence: float | None = None,
    hard_negative: bool | None = None,
    seconds: float | None = None,
) -> Label:
    """Append one label row in the caller's transaction (an ORM session or a Core connection).

    A repeated ``idempotency_key`` returns the row written the first time instead of a
    second one, so a client retrying after a dropped connection never double-labels.
    ``label`` may be None only for a rejected proposal (or an undo marker) and for the
    ``disputed`` marker of an item whose overlap annotators disagree. A model's proposal
    carries its ``model_version`` and ``confidence``; ``hard_negative`` marks a verified
    label that corrects a confident proposal. ``seconds`` is the time a person spent on the
    label (the labeling app's timer): what cost-aware selection learns from.
    """
    conn = session.connection() if isinstance(session, Session) else session
    dialect = conn.dialect
    insert_sql, find_sql = _LABEL_SQL[dialect.name]
    # Plain SQL on the driver's cursor, in the caller's transaction: submit() runs this
    # inside the writer turn, and SQLAlchemy's per-statement work cost more than the write.
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if label is None:
            if status not in (LabelStatus.REJECTED, LabelStatus.DISPUTED):
                raise UnknownClassError("only a rejected or disputed label may omit the class")
        else:
            validate_class(label, classes)
        created_at = utcnow()
        values: dict[str, Any] = {
            "item_id": item_id,
            "label": label,
            "status": str(status),
            "source": str(source),
            "annotator": annotator,
            "cycle_id": cycle_id,
            "strategy": strategy,
            "score": score,
            "idempotency_key": idempotency_key,
            "created_at": created_at,
            "model_version": model_version,
            "confidence": confidence,
            "hard_negative": hard_negative,
            "seconds": seconds,
        }
        cur.execute(insert_sql, {**values, "created_at": bind_time(dialect, created_at)})
        inserted = cur.fetchone()
        if inserted is None:  # the key was used before: a retry gets the first row back
            cur.execute(find_sql, {"idempotency_key": idempotency_key})
            row = dict(zip(("id", *_COLUMNS), cur.fetchone(), strict=True))  # type: ignore[arg-type]
            row["created_at"] = read_time(dialect, row["created_at"])
            return Label(**row)
    finally:
        cur.close()
    return Label(id=int(inserted[0]), **values)


_COLUMNS = (
    "item_id",
    "label",
    "status",
    "source",
    "annotator",
    "cycle_id",
    "strategy",
    "score",
    "idempotency_key",
    "created_at",
    "model_version",
    "confidence",
    "hard_negative",
    "seconds",
)
_INSERT_SQL = (
    f"INSERT INTO labels ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)
_FIND_SQL = f"SELECT id, {', '.join(_COLUMNS)} FROM labels WHERE idempotency_key = :idempotency_key"
#: By dialect: (insert, find by idempotency key).
_LABEL_SQL = {
    "sqlite": (_INSERT_SQL, _FIND_SQL),
    "postgresql": (pyformat(_INSERT_SQL), pyformat(_FIND_SQL)),
}


def add_labels(
    session: Session,
    entries: Sequence[tuple[int, str]],
    *,
    classes: Sequence[str],
    source: LabelSource | str,
    status: LabelStatus | str = LabelStatus.VERIFIED,
    annotator: str | None = None,
) -> int:
    """Append many ``(item_id, label)`` rows in one statement (bulk import).

    Every class is checked before anything is written, so one unknown class writes nothing.
    """
    for _, label in entries:
        validate_class(label, classes)
    now = utcnow()
    if entries:
        session.execute(
            insert(Label),
            [
                {
                    "item_id": item_id,
                    "label": label,
                    "status": str(status),
                    "source": str(source),
                    "annotator": annotator,
                    "created_at": now,
                }
                for item_id, label in entries
            ],
        )
    return len(entries)


def count_current_labels(session: Session, *, verified_only: bool = True) -> int:
    """How many items :func:`current_labels` would return, counted in the database (one
    scalar, not a row per labeled item: a stream checks it on every arrival)."""
    newest = (
        select(Label.item_id, func.max(Label.id).label("label_id"))
        .group_by(Label.item_id)
        .subquery()
    )
    query = select(func.count()).select_from(Label).join(newest, Label.id == newest.c.label_id)
    if verified_only:
        query = query.where(Label.status == LabelStatus.VERIFIED)
    return int(session.scalar(query) or 0)


def current_labels(
    session: Session, *, verified_only: bool = True, splits: Sequence[str] | None = None
) -> list[CurrentLabel]:
    """The newest label of every labeled item, ordered by item row.

    With ``verified_only`` (the training set), items whose newest label is proposed or
    rejected are left out; ``splits`` keeps only items of those splits.
    """
    newest = (
        select(Label.item_id, func.max(Label.id).label("label_id"))
        .group_by(Label.item_id)
        .subquery()
    )
    query = (
        select(Label, Item.row)
        .join(newest, Label.id == newest.c.label_id)
        .join(Item, Item.id == Label.item_id)
        .order_by(Item.row)
    )
    if verified_only:
        query = query.where(Label.status == LabelStatus.VERIFIED)
    if splits is not None:
        query = query.where(Item.split.in_([str(x) for x in splits]))
    return [
        CurrentLabel(
            lab.item_id,
            row,
            lab.label,
            lab.status,
            lab.source,
            lab.id,
            bool(lab.hard_negative),
            lab.confidence,
            lab.cycle_id,
        )
        for lab, row in session.execute(query)
    ]
