"""Reading the recorded labeling times (``labels.seconds``): what a cost model learns from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from exemplar.store.schema import Item, Label

__all__ = ["TimedLabels", "timed_labels"]


@dataclass(frozen=True)
class TimedLabels:
    """Every label row with a recorded time, oldest first.

    Attributes
    ----------
    rows : ndarray of int64
        Feature row of each label's item.
    seconds : ndarray of float64
        Seconds the annotator spent.
    labels : ndarray of str
        The class given (``""`` for a rejection without a class).
    annotators : ndarray of str
        Who labeled (``""`` when unknown).
    """

    rows: np.ndarray
    seconds: np.ndarray
    labels: np.ndarray
    annotators: np.ndarray

    def __len__(self) -> int:
        return int(self.seconds.size)


def timed_labels(session: Session, *, through_label_id: int | None = None) -> TimedLabels:
    """The label rows that carry ``seconds``, with their items' feature rows.

    ``through_label_id`` keeps only rows up to that label id (a cycle that records the
    newest id it read can refit the same cost model when it is resumed).
    """
    query = (
        select(Item.row, Label.seconds, Label.label, Label.annotator)
        .join(Item, Item.id == Label.item_id)
        .where(Label.seconds.is_not(None))
        .order_by(Label.id)
    )
    if through_label_id is not None:
        query = query.where(Label.id <= through_label_id)
    rows = session.execute(query).all()
    return TimedLabels(
        rows=np.array([r[0] for r in rows], dtype=np.int64),
        seconds=np.array([r[1] for r in rows], dtype=np.float64),
        labels=np.array([r[2] or "" for r in rows], dtype=str),
        annotators=np.array([r[3] or "" for r in rows], dtype=str),
    )
