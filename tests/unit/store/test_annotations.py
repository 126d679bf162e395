"""Object annotations: history, current view, checks, the annotator's submit, the budget.

Every test runs on SQLite (a temporary file) and on PostgreSQL (a fresh database per test
on 127.0.0.1:5432; skipped when the server is unreachable, a failure under CI).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from sqlalchemy import func, select

from exemplar.errors import LeaseLostError
from exemplar.store.annotations import (
    OBJECTS_LABEL,
    AnnotationError,
    AnnotationIn,
    SubmittedObject,
    add_annotations,
    current_annotations,
    object_history,
    objects_labeled,
    revise,
    submit_objects,
)
from exemplar.store.db import Database, open_database, sqlite_url
from exemplar.store.labels import UnknownClassError, current_labels
from exemplar.store.pool import budget_room, budget_spent
from exemplar.store.queue import enqueue, lease
from exemplar.store.schema import Annotation, Cycle, Item, Label, QueueEntry, Split, utcnow

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

CLASSES = ("cell", "debris")
T0 = utcnow()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "project.db")
        return
    yield from fresh_pg_database()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.dispose()


def _items(
    db: Database, n: int = 2, *, width: int | None = 100, height: int | None = 80
) -> list[int]:
    with db.session() as s:
        items = [
            Item(
                uid=f"u{i}",
                row=i,
                uri=f"/img/{i}.png",
                kind="image",
                width=width,
                height=height,
            )
            for i in range(n)
        ]
        s.add_all(items)
        s.flush()
        return [it.id for it in items]


def _queued(db: Database, n: int = 1) -> tuple[list[int], list[int]]:
    """``n`` image items queued in cycle 1; returns (item ids, entry ids by rank)."""
    ids = _items(db, n)
    with db.session() as s:
        cycle = Cycle(number=1, seed=0, strategy="box-entropy", batch_size=n)
        s.add(cycle)
        s.flush()
        enqueue(s, cycle.id, [(i, "box-entropy", 1.0) for i in ids])
    with db.read() as s:
        entries = list(s.scalars(select(QueueEntry.id).order_by(QueueEntry.rank, QueueEntry.id)))
    return ids, entries


def _count(db: Database, table: type) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def _proposals(db: Database, item_id: int, boxes: list[tuple[float, ...]]) -> list[int]:
    with db.session() as s:
        rows = add_annotations(
            s,
            item_id,
            [AnnotationIn("cell", b, confidence=0.4) for b in boxes],
            status="proposed",
            source="model",
            model_version="m1",
            classes=CLASSES,
        )
    return [r.object_id for r in rows]


# -- history and the current view --------------------------------------------------------------


def test_history_is_append_only_and_revise_keeps_the_object(db: Database) -> None:
    (item,) = _items(db, 1)
    a, b = _proposals(db, item, [(1, 2, 10, 20), (30, 30, 50, 60)])
    assert a != b
    with db.session() as s:
        moved = revise(
            s, a, annotator="ann", status="verified", box=(2, 3, 12, 22), classes=CLASSES
        )
        relabeled = revise(s, a, annotator="bob", label="debris", classes=CLASSES)
    assert moved.object_id == relabeled.object_id == a
    assert moved.id != a and relabeled.id > moved.id
    with db.read() as s:
        history = object_history(s, a)
        current = current_annotations(s)
    assert [(h.status, h.label, h.source, h.annotator) for h in history] == [
        ("proposed", "cell", "model", None),
        ("verified", "cell", "human", "ann"),
        ("verified", "debris", "human", "bob"),
    ]
    assert (history[0].x0, history[1].x0, history[2].x0) == (1.0, 2.0, 2.0)
    assert history[0].model_version == "m1" and history[0].confidence == pytest.approx(0.4)
    assert history[1].confidence is None  # a person's row carries no model score
    assert [(c.object_id, c.label, c.status) for c in current] == [
        (a, "debris", "verified"),
        (b, "cell", "proposed"),
    ]
    assert _count(db, Annotation) == 4  # 2 proposals + 2 revisions, nothing overwritten


def test_deleted_objects_are_hidden_unless_asked(db: Database) -> None:
    first, second = _items(db, 2)
    a, b = _proposals(db, first, [(1, 1, 5, 5), (2, 2, 6, 6)])
    (c,) = _proposals(db, second, [(3, 3, 7, 7)])
    with db.session() as s:
        revise(s, a, annotator="ann", status="deleted", classes=CLASSES)
    with db.read() as s:
        assert [x.object_id for x in current_annotations(s)] == [b, c]
        assert [x.object_id for x in current_annotations(s, [first])] == [b]
        assert [x.object_id for x in current_annotations(s, statuses=["deleted"])] == [a]
        assert [x.object_id for x in current_annotations(s, [second], statuses=["proposed"])] == [c]


def test_ground_truth_is_never_a_labeled_object(db: Database) -> None:
    (item,) = _items(db, 1)
    with db.session() as s:
        (truth,) = add_annotations(
            s,
            item,
            [AnnotationIn("cell", (1, 1, 9, 9))],
            status="ground_truth",
            source="import",
            classes=CLASSES,
        )
        (simulated,) = add_annotations(
            s,
            item,
            [AnnotationIn("cell", (1, 1, 9, 9))],
            status="ground_truth",
            source="simulated",
            classes=CLASSES,
        )
        assert objects_labeled(s) == 0
        with pytest.raises(AnnotationError, match="ground truth"):
            revise(s, truth.object_id, annotator="ann", status="verified", classes=CLASSES)
        (drawn,) = add_annotations(
            s,
            item,
            [AnnotationIn("cell", (2, 2, 8, 8))],
            status="verified",
            source="human",
            annotator="ann",
            classes=CLASSES,
        )
        with pytest.raises(AnnotationError, match="ground truth"):
            revise(s, drawn.object_id, annotator="ann", status="ground_truth", classes=CLASSES)
        assert objects_labeled(s) == 1
    assert simulated.status == "ground_truth"


def test_objects_labeled_counts_people_and_simulation_only(db: Database) -> None:
    (item,) = _items(db, 1)
    a, b, c, d = _proposals(db, item, [(1, 1, 5, 5)] * 4)
    with db.session() as s:
        assert objects_labeled(s) == 0  # model proposals
        revise(s, a, annotator="ann", status="verified", classes=CLASSES)
        revise(s, b, annotator="ann", status="hard_negative", classes=CLASSES)
        revise(s, c, annotator="sim", status="verified", source="simulated", classes=CLASSES)
        revise(s, d, annotator="ann", status="rejected", classes=CLASSES)
        add_annotations(
            s,
            item,
            [AnnotationIn("cell", (1, 1, 2, 2))],
            status="verified",
            source="import",
            classes=CLASSES,
        )
        assert objects_labeled(s) == 3
        revise(s, a, annotator="ann", status="deleted", classes=CLASSES)
        assert objects_labeled(s) == 2


# -- checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((10, 1, 5, 9), "x1 < x0"),
        ((1, 10, 5, 9), "y1 < y0"),
        ((1, 1, float("nan"), 9), "non-finite"),
        ((1, 1, float("inf"), 9), "non-finite"),
        ((1, 1, 102, 9), "outside the image's width 100"),
        ((-2, 1, 5, 9), "outside the image's width 100"),
        ((1, 1, 5, 81.5), "outside the image's height 80"),
        ((1, 2, 3), "four numbers"),
    ],
)
def test_bad_boxes_write_nothing_and_name_item_and_object(
    db: Database, box: tuple[float, ...], message: str
) -> None:
    (item,) = _items(db, 1)
    with pytest.raises(AnnotationError, match=message) as caught, db.session() as s:
        add_annotations(
            s,
            item,
            [AnnotationIn("cell", (0, 0, 5, 5)), AnnotationIn("debris", box)],
            status="verified",
            source="human",
            classes=CLASSES,
        )
    assert f"item {item} (/img/0.png): object 1 ('debris')" in str(caught.value)
    assert _count(db, Annotation) == 0


def test_boxes_within_one_pixel_of_the_edge_and_unknown_sizes_pass(db: Database) -> None:
    (sized,) = _items(db, 1)
    with db.session() as s:
        unsized = Item(uid="x", row=9, uri="/img/x.png", kind="image")
        s.add(unsized)
        s.flush()
        add_annotations(
            s,
            sized,
            [AnnotationIn("cell", (-1, -0.5, 101, 81))],
            status="verified",
            source="human",
            classes=CLASSES,
        )
        add_annotations(
            s,
            unsized.id,
            [AnnotationIn("cell", (0, 0, 5000, 5000))],
            status="verified",
            source="human",
            classes=CLASSES,
        )
    assert _count(db, Annotation) == 2


def test_unknown_class_writes_nothing(db: Database) -> None:
    (item,) = _items(db, 1)
    with pytest.raises(UnknownClassError, match="'dog'") as caught, db.session() as s:
        add_annotations(
            s,
            item,
            [AnnotationIn("cell", (0, 0, 5, 5)), AnnotationIn("dog", (0, 0, 5, 5))],
            status="verified",
            source="human",
            classes=CLASSES,
        )
    assert f"item {item}" in str(caught.value) and "object 1" in str(caught.value)
    assert _count(db, Annotation) == 0


def test_polygons_are_checked(db: Database) -> None:
    (item,) = _items(db, 1)
    good = {"polygons": [[1, 1, 10, 1, 10, 10], [20, 20, 30, 20, 30, 30, 20, 30]]}
    with db.session() as s:
        (row,) = add_annotations(
            s,
            item,
            [AnnotationIn("cell", (1, 1, 30, 30), "polygon", good)],
            status="verified",
            source="human",
            classes=CLASSES,
        )
        revised = revise(
            s,
            row.object_id,
            annotator="ann",
            shape={"polygons": [[5, 6, 40, 6, 40, 50]]},
            classes=CLASSES,
        )
    assert row.shape == {
        "polygons": [
            [1.0, 1.0, 10.0, 1.0, 10.0, 10.0],
            [20.0, 20.0, 30.0, 20.0, 30.0, 30.0, 20.0, 30.0],
        ]
    }
    assert (revised.x0, revised.y0, revised.x1, revised.y1) == (5, 6, 40, 50)  # its bounds
    bad = [
        (None, "needs a shape"),
        ({"polygons": []}, "polygon needs shape"),
        ({"polygons": [[1, 1, 5, 5]]}, "at least 3"),
        ({"polygons": [[1, 1, 5, 5, 9]]}, "at least 3"),
        ({"polygons": [[1, 1, 5, 5, 200, 9]]}, "outside the image's width"),
        ({"polygons": [[1, 1, 5, "x", 9, 9]]}, "not a list of numbers"),
    ]
    for shape, message in bad:
        with pytest.raises(AnnotationError, match=message), db.session() as s:
            add_annotations(
                s,
                item,
                [AnnotationIn("cell", (1, 1, 9, 9), "polygon", shape)],
                status="verified",
                source="human",
                classes=CLASSES,
            )
    with pytest.raises(AnnotationError, match="has no shape"), db.session() as s:
        add_annotations(
            s,
            item,
            [AnnotationIn("cell", (1, 1, 9, 9), "box", good)],
            status="verified",
            source="human",
            classes=CLASSES,
        )
    assert _count(db, Annotation) == 2


def test_masks_are_checked_by_decoding(db: Database) -> None:
    (item,) = _items(db, 1)  # 100 x 80 (w x h)
    pixels = np.zeros((80, 100), dtype=np.uint8, order="F")
    pixels[10:20, 30:50] = 1
    rle = mask_utils.encode(pixels)
    shape = {"rle": {"size": [80, 100], "counts": rle["counts"].decode()}}
    with db.session() as s:
        (row,) = add_annotations(
            s,
            item,
            [AnnotationIn("cell", (30, 10, 50, 20), "mask", shape)],
            status="verified",
            source="human",
            classes=CLASSES,
        )
    with db.read() as s:
        (stored,) = current_annotations(s)
    assert stored.shape == shape
    decoded = mask_utils.decode({"size": [80, 100], "counts": stored.shape["rle"]["counts"]})
    assert int(decoded.sum()) == 200
    bad = [
        ({"rle": {"size": [80, 100], "counts": "zzzz"}}, "cannot be decoded|do not describe"),
        ({"rle": {"size": [80, 100], "counts": ""}}, "non-empty"),
        ({"rle": {"size": [40, 100], "counts": rle["counts"].decode()}}, "the image is 80 x 100"),
        ({"rle": {"counts": "abc"}}, "needs shape"),
        ({"polygons": [[1, 1, 5, 5, 9, 9]]}, "needs shape"),
    ]
    for bad_shape, message in bad:
        with pytest.raises(AnnotationError, match=message), db.session() as s:
            add_annotations(
                s,
                item,
                [AnnotationIn("cell", (30, 10, 50, 20), "mask", bad_shape)],
                status="verified",
                source="human",
                classes=CLASSES,
            )
    assert _count(db, Annotation) == 1 and row.geometry == "mask"


# -- the annotator's submit --------------------------------------------------------------------


def test_submit_objects_writes_objects_label_and_done_entry(db: Database) -> None:
    (item,), (entry,) = _queued(db)
    kept, moved, ignored, negative = _proposals(
        db, item, [(1, 1, 9, 9), (10, 10, 20, 20), (30, 30, 40, 40), (50, 50, 60, 60)]
    )
    assert lease(db, "ann", lease_seconds=60) is not None
    result = submit_objects(
        db,
        entry,
        "ann",
        [
            SubmittedObject(kept, "cell", (1, 1, 9, 9)),
            SubmittedObject(moved, "debris", (11, 11, 21, 21)),
            SubmittedObject(negative, "cell", (50, 50, 60, 60), status="hard_negative"),
            SubmittedObject(None, "cell", (70, 60, 80, 70)),
            SubmittedObject(None, "debris", (0, 0, 3, 3), status="rejected"),
        ],
        classes=CLASSES,
        idempotency_key="k1",
    )
    assert (result.verified, result.drawn, result.rejected, result.hard_negative) == (2, 1, 2, 1)
    assert result.label.label == OBJECTS_LABEL and result.label.item_id == item
    with db.read() as s:
        current = {a.object_id: a for a in current_annotations(s)}
        entry_status = s.scalar(select(QueueEntry.status).where(QueueEntry.id == entry))
        labels = current_labels(s)
        assert objects_labeled(s) == 4  # kept, moved, negative, drawn
    assert entry_status == "done"
    assert [(x.item_id, x.label) for x in labels] == [(item, OBJECTS_LABEL)]
    assert current[kept].status == "verified" and current[kept].annotator == "ann"
    assert current[moved].label == "debris" and current[moved].x0 == 11
    assert current[ignored].status == "rejected" and current[ignored].source == "human"
    assert current[negative].status == "hard_negative"
    drawn = [a for a in current.values() if a.object_id not in (kept, moved, ignored, negative)]
    assert sorted((a.label, a.status) for a in drawn) == [
        ("cell", "verified"),
        ("debris", "rejected"),
    ]
    with db.read() as s:
        cycle_id = s.scalar(select(Cycle.id))
    assert {a.cycle_id for a in result.annotations} == {cycle_id}


def test_retry_with_the_same_key_writes_nothing_and_returns_the_first_result(db: Database) -> None:
    (item,), (entry,) = _queued(db)
    (proposal,) = _proposals(db, item, [(1, 1, 9, 9)])
    lease(db, "ann", lease_seconds=60)
    objects = [SubmittedObject(None, "cell", (5, 5, 15, 15))]
    key = "re_try%1"  # LIKE's wildcards in a key match only themselves
    first = submit_objects(db, entry, "ann", objects, classes=CLASSES, idempotency_key=key)
    rows, labels = _count(db, Annotation), _count(db, Label)
    again = submit_objects(db, entry, "ann", objects, classes=CLASSES, idempotency_key=key)
    assert (_count(db, Annotation), _count(db, Label)) == (rows, labels)
    assert again.label.id == first.label.id
    assert [a.id for a in again.annotations] == [a.id for a in first.annotations]
    assert (again.drawn, again.rejected, again.verified) == (first.drawn, first.rejected, 0)
    assert (first.drawn, first.rejected) == (1, 1)
    with db.read() as s:
        assert objects_labeled(s) == 1
        assert current_annotations(s, statuses=["rejected"])[0].object_id == proposal


def test_lost_lease_writes_nothing(db: Database) -> None:
    (item,), (entry,) = _queued(db)
    _proposals(db, item, [(1, 1, 9, 9)])
    lease(db, "ann", lease_seconds=1, now=T0)
    taken = lease(db, "bob", lease_seconds=60, now=T0 + timedelta(seconds=5))
    assert taken is not None and taken.entry_id == entry
    rows, labels = _count(db, Annotation), _count(db, Label)
    with pytest.raises(LeaseLostError):
        submit_objects(
            db,
            entry,
            "ann",
            [SubmittedObject(None, "cell", (1, 1, 2, 2))],
            classes=CLASSES,
            idempotency_key="late",
        )
    assert (_count(db, Annotation), _count(db, Label)) == (rows, labels)
    with db.read() as s:
        assert s.scalar(select(QueueEntry.status).where(QueueEntry.id == entry)) == "leased"


def test_unknown_class_or_bad_object_in_a_submit_writes_nothing(db: Database) -> None:
    (item,), (entry,) = _queued(db)
    (proposal,) = _proposals(db, item, [(1, 1, 9, 9)])
    lease(db, "ann", lease_seconds=60)
    rows, labels = _count(db, Annotation), _count(db, Label)
    with pytest.raises(UnknownClassError, match="'dog'"):
        submit_objects(
            db,
            entry,
            "ann",
            [
                SubmittedObject(proposal, "cell", (1, 1, 9, 9)),
                SubmittedObject(None, "dog", (1, 1, 2, 2)),
            ],
            classes=CLASSES,
        )
    # Checked against the item's size inside the transaction: the label is rolled back too.
    with pytest.raises(AnnotationError, match=f"item {item} .*outside the image's width"):
        submit_objects(
            db,
            entry,
            "ann",
            [
                SubmittedObject(proposal, "cell", (1, 1, 9, 9)),
                SubmittedObject(None, "cell", (1, 1, 500, 2)),
            ],
            classes=CLASSES,
        )
    with pytest.raises(AnnotationError, match="not an object of this item"):
        submit_objects(
            db,
            entry,
            "ann",
            [SubmittedObject(proposal + 999, "cell", (1, 1, 2, 2))],
            classes=CLASSES,
        )
    assert (_count(db, Annotation), _count(db, Label)) == (rows, labels)
    with db.read() as s:
        assert s.scalar(select(QueueEntry.status).where(QueueEntry.id == entry)) == "leased"
    # The entry is still the annotator's: a correct submit then goes through.
    done = submit_objects(
        db, entry, "ann", [SubmittedObject(proposal, "cell", (1, 1, 9, 9))], classes=CLASSES
    )
    assert (done.verified, done.drawn, done.rejected) == (1, 0, 0)


def test_object_of_another_item_is_refused(db: Database) -> None:
    (item, other_item), _ = _queued(db, 2)
    (foreign,) = _proposals(db, other_item, [(1, 1, 9, 9)])
    leased = lease(db, "ann", lease_seconds=60)
    assert leased is not None and leased.item_id == item
    with pytest.raises(AnnotationError, match="not an object of this item"):
        submit_objects(
            db,
            leased.entry_id,
            "ann",
            [SubmittedObject(foreign, "cell", (1, 1, 9, 9))],
            classes=CLASSES,
        )


# -- the budget in objects ---------------------------------------------------------------------


def test_budget_in_objects(db: Database) -> None:
    (first, _second), _ = _queued(db, 2)
    with db.session() as s:
        s.add(Item(uid="t", row=7, uri="/img/t.png", kind="image", split=Split.TEST))
        s.flush()
        test_item = s.scalar(select(Item.id).where(Item.uid == "t"))
    for _ in range(2):
        got = lease(db, "ann", lease_seconds=60)
        assert got is not None
        boxes = (
            [(1, 1, 5, 5), (6, 6, 9, 9), (10, 10, 20, 20)]
            if got.item_id == first
            else [(1, 1, 2, 2)]
        )
        submit_objects(
            db,
            got.entry_id,
            "ann",
            [SubmittedObject(None, "cell", b) for b in boxes],
            classes=CLASSES,
        )
    with db.session() as s:
        assert test_item is not None
        add_annotations(  # a test-split item's objects are not spent from the budget
            s,
            test_item,
            [AnnotationIn("cell", (1, 1, 2, 2))],
            status="verified",
            source="human",
            classes=CLASSES,
        )
        assert budget_spent(s, unit="objects") == 4
        assert budget_room(s, 10, unit="objects") == 6
        assert budget_room(s, 3, unit="objects") == 0
        # The items unit is unchanged: two labeled items.
        assert budget_spent(s) == budget_spent(s, unit="items") == 2
        assert budget_room(s, 10) == 8
        assert objects_labeled(s) == 5


def test_submitted_polygon_without_shape_keeps_its_shape(db: Database) -> None:
    (item,), (entry,) = _queued(db)
    polygon = {"polygons": [[1.0, 1.0, 10.0, 1.0, 10.0, 10.0]]}
    with db.session() as s:
        (row,) = add_annotations(
            s,
            item,
            [AnnotationIn("cell", (1, 1, 10, 10), "polygon", polygon)],
            status="proposed",
            source="model",
            classes=CLASSES,
        )
    lease(db, "ann", lease_seconds=60)
    result = submit_objects(
        db,
        entry,
        "ann",
        [SubmittedObject(row.object_id, "debris", (1, 1, 10, 10), geometry="polygon")],
        classes=CLASSES,
    )
    (written,) = result.annotations
    assert (written.object_id, written.label, written.status) == (
        row.object_id,
        "debris",
        "verified",
    )
    assert written.shape == polygon and written.geometry == "polygon"
    assert (result.verified, result.drawn) == (1, 0)


def test_overlap_items_take_one_objects_submit_per_annotator(db: Database) -> None:
    (item,) = _items(db, 1)
    with db.session() as s:
        cycle = Cycle(number=1, seed=0, strategy="box-entropy", batch_size=1)
        s.add(cycle)
        s.flush()
        assert enqueue(s, cycle.id, [(item, "box-entropy", 1.0)], overlap=2) == 2
    (proposal,) = _proposals(db, item, [(1, 1, 9, 9)])
    for who, box in (("ann", (1, 1, 9, 9)), ("bob", (2, 2, 9, 9))):
        got = lease(db, who, lease_seconds=60)
        assert got is not None and got.item_id == item
        submit_objects(
            db, got.entry_id, who, [SubmittedObject(proposal, "cell", box)], classes=CLASSES
        )
    with db.read() as s:
        labels = current_labels(s)
        history = object_history(s, proposal)
        statuses = list(s.scalars(select(QueueEntry.status)))
    assert statuses == ["done", "done"]
    # Both votes say "<objects>": the item is agreed, and each annotator's box is kept.
    assert [(x.item_id, x.label, x.status) for x in labels] == [(item, OBJECTS_LABEL, "verified")]
    assert [(h.annotator, h.x0) for h in history] == [(None, 1.0), ("ann", 1.0), ("bob", 2.0)]
