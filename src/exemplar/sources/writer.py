"""The batch writer: stores the chunks of a source, one database transaction per chunk.

Each chunk is written in one transaction that takes the project's write lock (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE`` on the ``n_rows`` meta row),
skips uids already stored (content-hash dedupe), appends the feature rows to the array
file and fsyncs them, inserts the items (rows allocated after the committed ``n_rows``)
and their labels, and advances ``n_rows``. A crash loses at most the chunk in flight; the
feature rows it appended lie beyond the committed ``n_rows`` and are cut off by the next
append (:meth:`~exemplar.store.arrays.ArrayStore.append_features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from exemplar.errors import ProjectError, StoreError
from exemplar.sources.base import Chunk, Log, Problem, Record
from exemplar.store.annotations import (
    OBJECTS_LABEL,
    AnnotationIn,
    AnnotationStatus,
    add_annotations,
)
from exemplar.store.arrays import ArrayStore
from exemplar.store.db import Database
from exemplar.store.labels import UnknownClassError, add_labels, validate_class
from exemplar.store.media import ensure_media
from exemplar.store.schema import Item, LabelSource, LabelStatus, Meta, Split, utcnow

__all__ = ["BatchWriter", "LabelsAs", "Written", "check_dim"]

LabelsAs = Literal["labels", "ground_truth"]

#: Rows looked up per ``IN (...)`` query (well under every backend's parameter limit).
_LOOKUP_CHUNK = 500


@dataclass
class Written:
    """What one :meth:`BatchWriter.write` did (counted once its transaction committed)."""

    added: int = 0
    duplicates: int = 0
    labeled: int = 0
    objects: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def check_dim(stored: int | None, dim: int, what: str) -> None:
    """Raise :class:`ProjectError` when ``dim`` differs from the project's feature dimension."""
    if stored is not None and stored != dim:
        raise ProjectError(
            f"{what}: {dim} features per item, but the project's feature dimension is "
            f"{stored} (fixed by its first import); import data of the same shape, or start "
            "a new project for it"
        )


class BatchWriter:
    """Validates labels, removes duplicates and commits one chunk per transaction.

    Parameters
    ----------
    db, arrays
        The project's database and array store.
    classes : sequence of str
        The project's classes; a label naming another class skips its item.
    dim : int
        Features per item of this input.
    labels_as : {"labels", "ground_truth"}
        Labels become verified labels from source ``import``, or ``Item.ground_truth``.
    log : Log
        Receives the items skipped for an unknown class (and the source's problems).
    """

    def __init__(
        self,
        db: Database,
        arrays: ArrayStore,
        classes: Sequence[str],
        dim: int,
        labels_as: LabelsAs,
        log: Log,
    ):
        self.db = db
        self.arrays = arrays
        self.classes = list(classes)
        self.dim = dim
        self.labels_as = labels_as
        self.log = log

    def write(self, chunk: Chunk, pool: ThreadPoolExecutor) -> Written:
        """Store one chunk; return what was written."""
        records, X = chunk.records, chunk.X
        keep: list[int] = []
        seen: set[str] = set()
        duplicates = 0
        for i, rec in enumerate(records):
            if rec.label is not None and rec.objects is None:
                try:
                    validate_class(rec.label, self.classes)
                except UnknownClassError as exc:
                    origin = " (the name of its subfolder)" if rec.kind == "image" else ""
                    self.log.skip(Problem(rec.where, f"{exc}{origin}", "unknown class"))
                    continue
            if rec.uid in seen:
                duplicates += 1
                continue
            seen.add(rec.uid)
            keep.append(i)
        if X is None:  # features computed only for the uids not stored yet
            stored = self._stored_uids([records[i].uid for i in keep])
            duplicates += sum(records[i].uid in stored for i in keep)
            keep = [i for i in keep if records[i].uid not in stored]
            records = [records[i] for i in keep]
            if chunk.featurize is None:
                raise TypeError("a chunk without features must say how to compute them")
            done, X = chunk.featurize(records, pool)
            records = [records[i] for i in done]
        elif len(keep) < len(records):
            X = X[keep]
            records = [records[i] for i in keep]
        written = Written(duplicates=duplicates)
        if records:
            self._commit(records, X, written)
        return written

    def _stored_uids(self, uids: list[str]) -> set[str]:
        if not uids:
            return set()
        with self.db.read() as s:
            return _existing_uids(s, uids)

    def _commit(self, records: list[Record], X: np.ndarray, written: Written) -> None:
        dim = self.dim
        try:
            with self.db.session() as s:
                n_rows, stored_dim = _lock_meta(s)
                check_dim(stored_dim, dim, "this input")
                stored = _existing_uids(s, [r.uid for r in records])
                if stored:  # written by a concurrent import since our pre-check
                    keep = [i for i, r in enumerate(records) if r.uid not in stored]
                    records, X = [records[i] for i in keep], X[keep]
                new = len(records)
                labeled = objects = 0
                if new:
                    self.arrays.append_features(X, n_rows, dim)
                    labeled, objects = self._insert(s, records, n_rows)
                    _set_meta(s, "n_rows", n_rows + new)
                    if stored_dim is None:
                        _set_meta(s, "feature_dim", dim)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"the database refused the batch starting at {records[0].where}: {exc}"
            ) from exc
        written.duplicates += len(stored)
        written.added += new
        written.labeled += labeled
        written.objects += objects
        for rec in records:
            written.kinds[rec.kind] = written.kinds.get(rec.kind, 0) + 1

    def _insert(self, s: Session, records: list[Record], first_row: int) -> tuple[int, int]:
        """Insert the items at rows ``first_row, ...``, their labels and objects; return the
        labels set and the objects stored."""
        ground_truth = self.labels_as == "ground_truth"
        now = utcnow()
        media_ids: dict[str, int] = {}
        for r in records:
            if r.media is not None and r.media.uid not in media_ids:
                media_ids[r.media.uid] = ensure_media(s, r.media)
        s.execute(
            insert(Item),
            [
                {
                    "uid": r.uid,
                    "row": first_row + j,
                    "uri": r.uri,
                    "kind": r.kind,
                    "text": r.text,
                    "split": Split.POOL,
                    "ground_truth": r.label if ground_truth else None,
                    "created_at": now,
                    "file_id": r.file_id,
                    "width": r.width,
                    "height": r.height,
                    "media_id": None if r.media is None else media_ids[r.media.uid],
                    "origin_x": None if r.origin is None else int(r.origin[0]),
                    "origin_y": None if r.origin is None else int(r.origin[1]),
                    "scale": r.scale,
                    "frame": r.frame,
                }
                for j, r in enumerate(records)
            ],
        )
        labeled = [(j, r.label) for j, r in enumerate(records) if r.label is not None]
        with_objects = [j for j, r in enumerate(records) if r.objects is not None]
        if not labeled and not with_objects:
            return 0, 0
        last_row = first_row + len(records)
        rows = select(Item.row, Item.id).where(Item.row >= first_row, Item.row < last_row)
        ids = {row: item_id for row, item_id in s.execute(rows)}
        stored = sum(
            _store_objects(s, ids[first_row + j], records[j], self.classes, ground_truth)
            for j in with_objects
        )
        if ground_truth or not labeled:
            return len(labeled), stored
        objects = [(ids[first_row + j], lab) for j, lab in labeled if lab == OBJECTS_LABEL]
        classes = [(ids[first_row + j], lab) for j, lab in labeled if lab != OBJECTS_LABEL]
        n = 0
        if classes:
            n += add_labels(
                s,
                classes,
                classes=self.classes,
                source=LabelSource.IMPORT,
                status=LabelStatus.VERIFIED,
            )
        if objects:
            n += add_labels(
                s,
                objects,
                classes=[OBJECTS_LABEL],
                source=LabelSource.IMPORT,
                status=LabelStatus.VERIFIED,
            )
        return n, stored


def _store_objects(
    s: Session, item_id: int, record: Record, classes: Sequence[str], ground_truth: bool
) -> int:
    """Store an imported image's objects: with their own status and provenance, or all as
    hidden ground truth (only verified objects are truth then: a model's proposal, a
    rejected object or a hard negative is no object of the image)."""
    groups: dict[tuple[str, str, str | None, str | None], list[AnnotationIn]] = {}
    stored = 0
    for obj in record.objects or []:
        if ground_truth and obj.status != AnnotationStatus.VERIFIED:
            continue
        status = AnnotationStatus.GROUND_TRUTH.value if ground_truth else obj.status
        key = (status, obj.source, obj.annotator, obj.model_version)
        shape: dict[str, object] | None = None
        geometry = "box"
        if obj.polygons:
            geometry, shape = "polygon", {"polygons": obj.polygons}
        elif obj.rle is not None:
            geometry, shape = "mask", {"rle": obj.rle}
        groups.setdefault(key, []).append(
            AnnotationIn(obj.label, obj.box, geometry, shape, confidence=obj.score)
        )
    for (status, source, annotator, model_version), objs in groups.items():
        stored += len(objs)
        add_annotations(
            s,
            item_id,
            objs,
            status=status,
            source=source,
            annotator=annotator,
            model_version=model_version,
            classes=classes,
        )
    return stored


def _lock_meta(s: Session) -> tuple[int, int | None]:
    """Take the project's write lock; return the committed rows and the feature dimension.

    SQLite already holds the database write lock (``BEGIN IMMEDIATE``). PostgreSQL locks
    the ``n_rows`` row, creating it first if missing, so concurrent importers serialize.
    """
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        s.execute(postgresql.insert(Meta).values(key="n_rows", value="0").on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects import sqlite

        s.execute(sqlite.insert(Meta).values(key="n_rows", value="0").on_conflict_do_nothing())
    n_rows = s.scalar(select(Meta.value).where(Meta.key == "n_rows").with_for_update())
    dim = s.scalar(select(Meta.value).where(Meta.key == "feature_dim"))
    return int(n_rows or 0), None if dim is None else int(dim)


def _set_meta(s: Session, key: str, value: int) -> None:
    done = s.execute(update(Meta).where(Meta.key == key).values(value=str(value)))
    if not getattr(done, "rowcount", 0):
        s.add(Meta(key=key, value=str(value)))
        s.flush()


def _existing_uids(s: Session, uids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(uids), _LOOKUP_CHUNK):
        part = uids[start : start + _LOOKUP_CHUNK]
        found.update(s.scalars(select(Item.uid).where(Item.uid.in_(part))))
    return found
