"""Read a labels file written by a person or another tool (``key → class``) and apply it.

The file oracle (:class:`~exemplar.loop.oracle.FileOracle`) and ``Project.import_labels``
both call :func:`apply_labels_file`.

CSV (header row) or JSON (a list of objects). The key column is ``uid`` (content hash),
``item_id``/``id`` or ``uri``; the class column is ``label`` (or ``class``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from exemplar.errors import DatasetError, UsageError
from exemplar.loop.context import LoopContext
from exemplar.store.labels import add_label, current_labels
from exemplar.store.schema import OPEN_QUEUE_STATUSES, Item, LabelSource, QueueEntry, QueueStatus

__all__ = ["LabelImport", "apply_labels_file", "read_labels_file"]

KEY_COLUMNS = ("uid", "item_id", "id", "uri")
LABEL_COLUMNS = ("label", "class")


def read_labels_file(path: Path) -> dict[str, str]:
    """Map each key found in ``path`` to its label (keys of every kind share one map)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read labels file: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DatasetError(f"{path}: expected a JSON list of objects")
        return _collect(path, [{str(k): v for k, v in r.items()} for r in rows], "item")
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None:
        raise DatasetError(f"{path}: empty labels file")
    return _collect(path, list(reader), "line")


def _collect(path: Path, rows: list[dict[str, object]], unit: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, row in enumerate(rows, start=2 if unit == "line" else 1):
        lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
        label_col = next((c for c in LABEL_COLUMNS if c in lowered), None)
        keys = [c for c in KEY_COLUMNS if lowered.get(c) not in (None, "")]
        if label_col is None or not keys:
            raise DatasetError(
                f"{path} {unit} {n}: needs a label column ({' or '.join(LABEL_COLUMNS)}) and "
                f"a key column ({', '.join(KEY_COLUMNS)})"
            )
        label = str(lowered[label_col]).strip()
        if not label:
            continue
        for key in keys:
            out[str(lowered[key]).strip()] = label
    return out


@dataclass
class LabelImport:
    """What applying a labels file did."""

    labeled: int = 0
    unchanged: int = 0
    unknown_keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def apply_labels_file(
    context: LoopContext, path: Path, *, annotator: str | None = None, only_queued: bool = False
) -> LabelImport:
    """Write the labels of ``path`` into the project's history, one transaction per 1,000.

    Items are matched by uid, id or uri. An item queued for labeling gets its queue
    entry's provenance (cycle, strategy, score) and its open entries are marked done (with
    overlap, an imported label is final: it closes every open slot of the item). An item
    whose current label already equals the file's is left alone. Unknown keys and
    unknown classes are reported, never guessed.
    """
    if context.config.project.objects:
        raise UsageError(
            f"a labels file holds one class per item; this project labels objects "
            f"({context.config.project.task}): import annotations with `exemplar import FILE` "
            "(COCO, YOLO, VOC, Label Studio) or label through the Objects API"
        )
    found = read_labels_file(path)
    who = annotator or f"file:{path.name}"
    report = LabelImport()
    with context.db.read() as s:
        items = s.execute(select(Item.id, Item.uid, Item.uri)).all()
        current = {  # a model's proposal is not a label: the file's class is written
            c.item_id: c.label
            for c in current_labels(s, verified_only=False)
            if c.source != LabelSource.MODEL
        }
        open_slots: dict[int, list[QueueEntry]] = {}
        for e in s.scalars(
            select(QueueEntry)
            .where(QueueEntry.status.in_(OPEN_QUEUE_STATUSES))
            .order_by(QueueEntry.id)
        ):
            open_slots.setdefault(e.item_id, []).append(e)
        open_entries = {item_id: slots[0] for item_id, slots in open_slots.items()}
    by_key: dict[str, int] = {}
    for known_id, uid, uri in items:
        by_key[uid] = by_key[str(known_id)] = by_key[uri] = known_id
    todo: list[tuple[int, str]] = []
    seen: set[int] = set()
    for key, label in found.items():
        item_id = by_key.get(key)
        if item_id is None:
            report.unknown_keys.append(key)
            continue
        if item_id in seen or (only_queued and item_id not in open_entries):
            continue
        seen.add(item_id)
        if label not in context.classes:
            report.problems.append(
                f"{key}: unknown class {label!r}; the project's classes are: "
                f"{', '.join(context.classes)}"
            )
            continue
        if current.get(item_id) == label and item_id not in open_entries:
            report.unchanged += 1
            continue
        todo.append((item_id, label))
    for start in range(0, len(todo), 1000):
        with context.db.session() as s:
            for item_id, label in todo[start : start + 1000]:
                entry = open_entries.get(item_id)
                add_label(
                    s,
                    item_id,
                    label,
                    classes=context.classes,
                    source=LabelSource.IMPORT if only_queued else LabelSource.HUMAN,
                    annotator=who,
                    cycle_id=entry.cycle_id if entry else None,
                    strategy=entry.strategy if entry else None,
                    score=entry.score if entry else None,
                )
                for slot in open_slots.get(item_id, []):
                    row = s.get_one(QueueEntry, slot.id)
                    row.status = QueueStatus.DONE
                    row.annotator = who
                report.labeled += 1
    return report
