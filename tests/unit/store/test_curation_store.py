"""Curation in the store: proposals, the verification queue, verdicts, recorded operations.

Every test runs on SQLite (a temporary file) and on PostgreSQL (a fresh database per test
on 127.0.0.1:5432; skipped when the server is unreachable, a failure under CI).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from exemplar.store.annotations import (
    OBJECTS_LABEL,
    AnnotationIn,
    add_annotations,
    current_annotations,
    object_history,
)
from exemplar.store.curation import (
    CandidateIn,
    CurationError,
    apply_operation,
    class_renames,
    curated_items,
    decide,
    dismiss_operation,
    expire_label_proposals,
    get_operation,
    list_operations,
    operation_candidates,
    record_operation,
    reject_proposal,
    undo_operation,
    verification_queue,
    verify_proposal,
    write_label_proposals,
)
from exemplar.store.db import Database, open_database, sqlite_url
from exemplar.store.labels import UnknownClassError, add_label, current_labels
from exemplar.store.pool import budget_spent, free_pool, pool_items
from exemplar.store.schema import (
    AnnotationStatus,
    CandidateDecision,
    CurationStatus,
    Cycle,
    Item,
    Label,
    LabelSource,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

CLASSES = ("cat", "dog", "bird")
OBJ_CLASSES = ("cell", "debris")


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


def _items(db: Database, n: int) -> list[int]:
    """``n`` pool image items (100 x 80 px), rows 0..n-1."""
    with db.session() as s:
        items = [
            Item(uid=f"u{i}", row=i, uri=f"/img/{i}.png", kind="image", width=100, height=80)
            for i in range(n)
        ]
        s.add_all(items)
        s.flush()
        return [it.id for it in items]


def _cycles(db: Database, numbers: list[int]) -> list[int]:
    with db.session() as s:
        rows = [Cycle(number=k, seed=k, strategy="entropy", batch_size=1) for k in numbers]
        s.add_all(rows)
        s.flush()
        return [c.id for c in rows]


def _propose(
    db: Database,
    proposals: list[tuple[int, str, float]],
    *,
    version: str = "m1",
    cycle_id: int | None = None,
) -> int:
    with db.session() as s:
        return write_label_proposals(
            s, proposals, classes=CLASSES, model_version=version, cycle_id=cycle_id
        )


def _label(db: Database, item_id: int, label: str, annotator: str = "ann") -> int:
    with db.session() as s:
        return add_label(
            s, item_id, label, classes=CLASSES, source=LabelSource.HUMAN, annotator=annotator
        ).id


def _history(db: Database, item_id: int) -> list[tuple[str | None, str, str]]:
    with db.read() as s:
        return [
            (r.label, r.status, r.source)
            for r in s.scalars(select(Label).where(Label.item_id == item_id).order_by(Label.id))
        ]


def _free(db: Database) -> set[int]:
    with db.read() as s:
        rows, ids = pool_items(s)
        _, free_ids = free_pool(s, rows, ids, 10**6)
    return {int(i) for i in free_ids}


def _current(db: Database) -> dict[int, tuple[str | None, bool]]:
    with db.read() as s:
        return {c.item_id: (c.label, c.hard_negative) for c in current_labels(s)}


def _open_ids(db: Database) -> list[int]:
    with db.read() as s:
        views, _ = verification_queue(s, limit=1000)
    return [v.item_id for v in views]


def _label_row_id(db: Database, item_id: int) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.max(Label.id)).where(Label.item_id == item_id)) or 0)


# -- proposals -------------------------------------------------------------------------------


def test_proposals_stay_in_the_pool_and_out_of_the_budget(db: Database) -> None:
    a, b, c, d = _items(db, 4)
    (cycle,) = _cycles(db, [1])
    assert _propose(db, [(a, "cat", 0.9), (b, "dog", 0.4)], cycle_id=cycle) == 2
    with db.read() as s:
        row = s.scalars(select(Label).where(Label.item_id == a)).one()
        assert (row.source, row.status, row.model_version, row.confidence, row.cycle_id) == (
            "model",
            "proposed",
            "m1",
            pytest.approx(0.9),
            cycle,
        )
        assert budget_spent(s) == 0
        assert current_labels(s) == []  # a proposal is not a label
    assert _free(db) == {a, b, c, d}
    _label(db, c, "bird")
    assert _free(db) == {a, b, d}
    with db.read() as s:
        assert budget_spent(s) == 1


def test_reproposal_by_the_same_model_writes_nothing(db: Database) -> None:
    a, b, c = _items(db, 3)
    _label(db, c, "bird")
    assert _propose(db, [(a, "cat", 0.9), (b, "dog", 0.4), (c, "cat", 0.99)]) == 2
    assert _propose(db, [(a, "cat", 0.9), (b, "dog", 0.4), (c, "cat", 0.99)]) == 0
    assert _history(db, c) == [("bird", "verified", "human")]  # a person's label is kept
    assert _propose(db, [(a, "dog", 0.6)], version="m2") == 1  # a new model proposes again
    assert _open_ids(db).count(a) == 1  # the newer proposal replaces the older in the queue
    with db.read() as s:
        views, total = verification_queue(s)
    assert total == 2
    assert {(v.item_id, v.label, v.model_version) for v in views} == {
        (a, "dog", "m2"),
        (b, "dog", "m1"),
    }


def test_queue_orders_and_filters(db: Database) -> None:
    ids = _items(db, 6)
    confidences = [("cat", 0.2), ("cat", 0.3), ("cat", 0.9), ("dog", 0.5), ("dog", 0.6)]
    _propose(db, [(i, lab, c) for i, (lab, c) in zip(ids, confidences, strict=False)])
    with db.session() as s:
        add_annotations(
            s,
            ids[5],
            [AnnotationIn("cell", (1, 2, 10, 20), confidence=0.7)],
            status="proposed",
            source="model",
            model_version="m1",
            classes=(*CLASSES, *OBJ_CLASSES),
        )

    def seen(**kw: object) -> list[tuple[str, float | None]]:
        with db.read() as s:
            views, _ = verification_queue(s, limit=100, **kw)
        return [(v.label, v.confidence) for v in views]

    # uncertain: least confident first, classes interleaved (round-robin), so the first
    # page covers every class
    assert seen(order="uncertain") == [
        ("cat", pytest.approx(0.2)),
        ("dog", pytest.approx(0.5)),
        ("cell", pytest.approx(0.7)),
        ("cat", pytest.approx(0.3)),
        ("dog", pytest.approx(0.6)),
        ("cat", pytest.approx(0.9)),
    ]
    assert [c for _, c in seen(order="confident")] == pytest.approx([0.9, 0.7, 0.6, 0.5, 0.3, 0.2])
    assert seen(order="class") == [
        ("cat", pytest.approx(0.9)),
        ("cat", pytest.approx(0.3)),
        ("cat", pytest.approx(0.2)),
        ("cell", pytest.approx(0.7)),
        ("dog", pytest.approx(0.6)),
        ("dog", pytest.approx(0.5)),
    ]
    # inclusive thresholds, a class filter, paging with the total of all matches
    assert [c for _, c in seen(order="confident", min_confidence=0.5)] == pytest.approx(
        [0.9, 0.7, 0.6, 0.5]
    )
    assert [c for _, c in seen(order="confident", max_confidence=0.5)] == pytest.approx(
        [0.5, 0.3, 0.2]
    )
    assert seen(order="confident", label="dog", min_confidence=0.55) == [
        ("dog", pytest.approx(0.6))
    ]
    with db.read() as s:
        page, total = verification_queue(s, order="confident", limit=2, offset=1)
        obj = [v for v in verification_queue(s, label="cell")[0]]
    assert total == 6 and [v.confidence for v in page] == pytest.approx([0.7, 0.6])
    assert obj[0].kind == "object" and obj[0].box == (1, 2, 10, 20)
    with db.read() as s, pytest.raises(CurationError, match="unknown order 'random'"):
        verification_queue(s, order="random")


# -- verdicts on class proposals ---------------------------------------------------------------


def _queue_row(db: Database, item_id: int) -> int:
    with db.read() as s:
        views, _ = verification_queue(s, limit=1000)
    (view,) = [v for v in views if v.item_id == item_id and v.kind == "label"]
    return view.id


def test_verify_with_a_fix_is_a_hard_negative_only_when_the_model_was_confident(
    db: Database,
) -> None:
    sure, unsure, right = _items(db, 3)
    _propose(db, [(sure, "cat", 0.95), (unsure, "cat", 0.3), (right, "dog", 0.8)])
    with db.session() as s:
        kw = {"reviewer": "rev", "classes": CLASSES, "hard_negative_confidence": 0.5}
        verify_proposal(s, "label", _queue_row(db, sure), label="dog", **kw)
        verify_proposal(s, "label", _queue_row(db, unsure), label="bird", **kw)
        verify_proposal(s, "label", _queue_row(db, right), **kw)
    assert _current(db) == {sure: ("dog", True), unsure: ("bird", False), right: ("dog", False)}
    with db.read() as s:
        newest = s.get_one(Label, _label_row_id(db, sure))
        assert (newest.source, newest.annotator, newest.model_version) == ("human", "rev", "m1")
        assert newest.strategy == "curation:verify"
        assert budget_spent(s) == 3  # verified proposals are labels now
    assert _free(db) == set()
    assert _open_ids(db) == []
    assert _history(db, sure) == [("cat", "proposed", "model"), ("dog", "verified", "human")]


def test_verdict_on_a_stale_or_foreign_row_is_refused(db: Database) -> None:
    a, b = _items(db, 2)
    _propose(db, [(a, "cat", 0.9)])
    row = _queue_row(db, a)
    _label(db, a, "dog")  # somebody labeled the item meanwhile
    with db.session() as s, pytest.raises(CurationError, match=f"item {a} changed since"):
        verify_proposal(s, "label", row, reviewer="rev", classes=CLASSES)
    human = _label(db, b, "cat")
    with db.session() as s, pytest.raises(CurationError, match="is not a model's proposal"):
        reject_proposal(s, "label", human, reviewer="rev", classes=CLASSES)
    with db.session() as s, pytest.raises(CurationError, match="unknown proposal kind"):
        verify_proposal(s, "box", row, reviewer="rev", classes=CLASSES)
    assert _history(db, a) == [("cat", "proposed", "model"), ("dog", "verified", "human")]


def test_rejecting_a_class_proposal_keeps_the_item_in_the_pool(db: Database) -> None:
    a, b = _items(db, 2)
    _propose(db, [(a, "cat", 0.99), (b, "dog", 0.6)])
    with db.session() as s:
        reject_proposal(s, "label", _queue_row(db, a), reviewer="rev", classes=CLASSES)
    assert _history(db, a) == [("cat", "proposed", "model"), ("cat", "rejected", "model")]
    assert _free(db) == {a, b}
    assert _current(db) == {}
    assert _open_ids(db) == [b]
    with db.read() as s:
        assert budget_spent(s) == 0
        row = s.get_one(Label, _label_row_id(db, a))
        assert (row.annotator, row.strategy) == ("rev", "curation:reject")
    # a later model may propose for it again
    assert _propose(db, [(a, "bird", 0.7)], version="m2") == 1


# -- verdicts on object proposals --------------------------------------------------------------


def _object_proposals(db: Database, item_id: int, confidences: list[float]) -> list[int]:
    with db.session() as s:
        rows = add_annotations(
            s,
            item_id,
            [
                AnnotationIn("cell", (10 + 20 * k, 10, 25 + 20 * k, 30), confidence=c)
                for k, c in enumerate(confidences)
            ],
            status="proposed",
            source="model",
            model_version="m1",
            classes=OBJ_CLASSES,
        )
    return [r.object_id for r in rows]


def _objects_label(db: Database, item_id: int) -> list[tuple[str | None, str, str]]:
    return [h for h in _history(db, item_id) if h[0] == OBJECTS_LABEL]


def test_object_verdicts_fix_boxes_keep_hard_negatives_and_complete_the_image(
    db: Database,
) -> None:
    img, other = _items(db, 2)
    fixed, weak = _object_proposals(db, img, [0.9, 0.2])
    (confident,) = _object_proposals(db, other, [0.8])
    kw = {"reviewer": "rev", "classes": OBJ_CLASSES, "hard_negative_confidence": 0.5}
    with db.session() as s:
        verify_proposal(s, "object", fixed, box=(12, 11, 30, 33), label="debris", **kw)
    with db.read() as s:
        history = object_history(s, fixed)
    assert [(h.status, h.label, h.annotator) for h in history] == [
        ("proposed", "cell", None),
        ("verified", "debris", "rev"),
    ]
    assert (history[0].x0, history[0].y1) == (10, 30)  # the model's box stays in history
    assert (history[1].x0, history[1].y0, history[1].x1, history[1].y1) == (12, 11, 30, 33)
    assert _objects_label(db, img) == []  # one proposal is still open on the image
    with db.session() as s:
        reject_proposal(s, "object", weak, **kw)
        reject_proposal(s, "object", confident, **kw)
    with db.read() as s:
        assert object_history(s, weak)[-1].status == AnnotationStatus.REJECTED
        assert object_history(s, confident)[-1].status == AnnotationStatus.HARD_NEGATIVE
        verified = current_annotations(s, [img], statuses=(AnnotationStatus.VERIFIED,))
    assert [a.object_id for a in verified] == [fixed]
    # every object the model saw has a verdict: both images are labeled
    assert _objects_label(db, img) == [(OBJECTS_LABEL, "verified", "human")]
    assert _objects_label(db, other) == [(OBJECTS_LABEL, "verified", "human")]
    assert _free(db) == set()
    with db.session() as s, pytest.raises(CurationError, match="not an open proposal"):
        verify_proposal(s, "object", fixed, **kw)
    with db.session() as s, pytest.raises(CurationError, match="no object 99999"):
        reject_proposal(s, "object", 99999, **kw)


# -- operations --------------------------------------------------------------------------------


def _labeled(db: Database, labels: list[str]) -> list[int]:
    ids = _items(db, len(labels))
    for i, lab in zip(ids, labels, strict=True):
        _label(db, i, lab)
    return ids


def _record(
    db: Database, kind: str, cands: list[CandidateIn], **params: object
) -> tuple[int, list[int]]:
    with db.session() as s:
        op = record_operation(s, kind, cands, summary=f"{kind} test", params=params, cycle_id=None)
        return op.id, [c.id for c in operation_candidates(s, op.id)]


def _status(db: Database, op_id: int) -> str:
    with db.read() as s:
        return get_operation(s, op_id).status


def test_prune_removes_from_training_keeps_history_and_undo_restores(db: Database) -> None:
    a, b, c = _labeled(db, ["cat", "dog", "cat"])
    op, (ca, cb) = _record(
        db,
        "prune",
        [
            CandidateIn(a, "near_duplicate", 2.0, current_label="cat"),
            CandidateIn(b, "confident", 1.0, current_label="dog"),
        ],
    )
    assert _current(db) == {a: ("cat", False), b: ("dog", False), c: ("cat", False)}
    with db.session() as s:
        assert decide(s, op, {ca: "accepted", cb: "declined"}, reviewer="rev") == 2
        report = apply_operation(s, op, reviewer="rev", classes=CLASSES)
    assert (report.written, report.skipped, report.status) == (1, [], "applied")
    assert _current(db) == {b: ("dog", False), c: ("cat", False)}
    assert _history(db, a) == [("cat", "verified", "human"), ("cat", "pruned", "human")]
    assert _free(db) == set()  # a pruned item is not relabeled from the pool
    with db.read() as s:
        assert curated_items(s) == {a: "cat"}
        cands = {x.id: x for x in operation_candidates(s, op)}
        assert cands[ca].decision == CandidateDecision.ACCEPTED and cands[ca].written
        assert cands[cb].decision == CandidateDecision.DECLINED and cands[cb].written is None
        assert get_operation(s, op).decided_by == "rev"
    with db.session() as s:
        undone = undo_operation(s, op, reviewer="rev", classes=CLASSES)
    assert (undone.written, undone.skipped, undone.status) == (1, [], "undone")
    assert _current(db) == {a: ("cat", False), b: ("dog", False), c: ("cat", False)}
    assert _history(db, a) == [
        ("cat", "verified", "human"),
        ("cat", "pruned", "human"),
        ("cat", "verified", "human"),
    ]
    with db.read() as s:
        assert curated_items(s) == {}
    assert _status(db, op) == CurationStatus.UNDONE


def test_label_errors_relabel_with_a_reviewer_choice_and_undo(db: Database) -> None:
    a, b = _labeled(db, ["cat", "cat"])
    op, (_, cb) = _record(
        db,
        "label_errors",
        [
            CandidateIn(a, "confident_learning", 0.9, current_label="cat", suggested_label="dog"),
            CandidateIn(b, "confident_learning", 0.8, current_label="cat", suggested_label="dog"),
        ],
    )
    with db.session() as s, pytest.raises(UnknownClassError, match="'fish'"):
        decide(s, op, {cb: "accepted"}, reviewer="rev", labels={cb: "fish"}, classes=CLASSES)
    with db.session() as s:
        decide(s, op, {cb: "accepted"}, reviewer="rev", labels={cb: "bird"}, classes=CLASSES)
        # ``accept_pending`` accepts the candidate nobody decided (a)
        report = apply_operation(s, op, reviewer="rev", classes=CLASSES, accept_pending=True)
    assert report.written == 2
    assert _current(db) == {a: ("dog", False), b: ("bird", False)}
    with db.read() as s:
        row = s.get_one(Label, _label_row_id(db, a))
        assert (row.source, row.annotator, row.strategy) == (
            "human",
            "rev",
            "curation:label_errors",
        )
    with db.session() as s:
        undo_operation(s, op, reviewer="rev", classes=CLASSES)
    assert _current(db) == {a: ("cat", False), b: ("cat", False)}
    assert [h[0] for h in _history(db, a)] == ["cat", "dog", "cat"]


def test_undo_leaves_items_changed_since_and_reports_them(db: Database) -> None:
    a, b = _labeled(db, ["cat", "cat"])
    op, _ = _record(
        db,
        "label_errors",
        [
            CandidateIn(a, "confident_learning", 0.9, current_label="cat", suggested_label="dog"),
            CandidateIn(b, "confident_learning", 0.8, current_label="cat", suggested_label="dog"),
        ],
    )
    with db.session() as s:
        apply_operation(s, op, reviewer="rev", classes=CLASSES, accept_pending=True)
    _label(db, b, "bird", annotator="later")  # a person relabeled b after the operation
    rows_b = len(_history(db, b))
    with db.session() as s:
        report = undo_operation(s, op, reviewer="rev", classes=CLASSES)
    assert report.written == 1
    assert len(report.skipped) == 1 and f"item {b}" in report.skipped[0]
    assert len(_history(db, b)) == rows_b  # nothing appended for b
    assert _current(db) == {a: ("cat", False), b: ("bird", False)}


def test_apply_skips_items_changed_since_the_proposal(db: Database) -> None:
    a, b = _labeled(db, ["cat", "cat"])
    op, (_, cb) = _record(
        db,
        "label_errors",
        [
            CandidateIn(a, "confident_learning", 0.9, current_label="cat", suggested_label="dog"),
            CandidateIn(b, "confident_learning", 0.8, current_label="cat", suggested_label="dog"),
        ],
    )
    _label(db, b, "bird", annotator="later")
    with db.session() as s:
        report = apply_operation(s, op, reviewer="rev", classes=CLASSES, accept_pending=True)
    assert report.written == 1 and len(report.skipped) == 1 and f"item {b}" in report.skipped[0]
    assert _current(db) == {a: ("dog", False), b: ("bird", False)}
    with db.read() as s:
        skipped = {c.id: c for c in operation_candidates(s, op)}[cb]
    # left undecided (not declined: no reviewer declined it), with why it was skipped
    assert skipped.decision == CandidateDecision.PENDING and "skipped" in (skipped.detail or {})


def test_dismiss_closes_without_writing(db: Database) -> None:
    (a,) = _labeled(db, ["cat"])
    op, (ca,) = _record(db, "prune", [CandidateIn(a, "confident", 1.0, current_label="cat")])
    before = _history(db, a)
    with db.session() as s:
        dismiss_operation(s, op, reviewer="rev")
    assert _status(db, op) == CurationStatus.DISMISSED
    assert _history(db, a) == before
    with db.read() as s:
        assert len(operation_candidates(s, op)) == 1  # the candidates stay recorded
        assert [o.id for o in list_operations(s, status="dismissed")] == [op]
    with db.session() as s, pytest.raises(CurationError, match="it is dismissed, not proposed"):
        apply_operation(s, op, reviewer="rev", classes=CLASSES)
    with db.session() as s, pytest.raises(CurationError, match="cannot dismiss"):
        dismiss_operation(s, op, reviewer="rev")
    with db.session() as s, pytest.raises(CurationError, match="cannot decide on"):
        decide(s, op, {ca: "accepted"}, reviewer="rev")


def test_wrong_state_and_bad_requests_are_clear_errors(db: Database) -> None:
    (a,) = _labeled(db, ["cat"])
    op, (ca,) = _record(db, "prune", [CandidateIn(a, "confident", 1.0, current_label="cat")])
    with (
        db.session() as s,
        pytest.raises(
            CurationError, match=f"cannot undo operation {op}: it is proposed, not applied"
        ),
    ):
        undo_operation(s, op, reviewer="rev", classes=CLASSES)
    with db.session() as s, pytest.raises(CurationError, match="has no candidate 4242"):
        decide(s, op, {4242: "accepted"}, reviewer="rev")
    with db.session() as s, pytest.raises(CurationError, match="accepted or declined"):
        decide(s, op, {ca: "maybe"}, reviewer="rev")
    with db.session() as s:
        apply_operation(s, op, reviewer="rev", classes=CLASSES, accept_pending=True)
    rows = len(_history(db, a))
    with (
        db.session() as s,
        pytest.raises(
            CurationError, match=f"cannot apply operation {op}: it is applied, not proposed"
        ),
    ):
        apply_operation(s, op, reviewer="rev", classes=CLASSES)
    assert len(_history(db, a)) == rows
    with db.session() as s:
        undo_operation(s, op, reviewer="rev", classes=CLASSES)
    with db.session() as s, pytest.raises(CurationError, match="it is undone, not applied"):
        undo_operation(s, op, reviewer="rev", classes=CLASSES)
    with db.session() as s, pytest.raises(CurationError, match="no curation operation 777"):
        apply_operation(s, 777, reviewer="rev", classes=CLASSES)
    with db.session() as s, pytest.raises(CurationError, match="unknown operation kind 'delete'"):
        record_operation(s, "delete", [], summary="")
    with db.read() as s:
        assert [o.kind for o in list_operations(s)] == ["prune"]


def test_object_operations_relabel_and_undo(db: Database) -> None:
    (img,) = _items(db, 1)
    obj, gone = _object_proposals(db, img, [0.9, 0.9])
    with db.session() as s:
        for o in (obj, gone):
            verify_proposal(s, "object", o, reviewer="rev", classes=OBJ_CLASSES)
    op, _ = _record(
        db,
        "label_errors",
        [CandidateIn(img, "confident_learning", 0.9, "cell", "debris", object_id=obj)],
    )
    prune, _ = _record(db, "prune", [CandidateIn(img, "near_duplicate", 1.0, object_id=gone)])
    with db.session() as s:
        apply_operation(s, op, reviewer="rev", classes=OBJ_CLASSES, accept_pending=True)
        apply_operation(s, prune, reviewer="rev", classes=OBJ_CLASSES, accept_pending=True)
    with db.read() as s:
        assert [(a.object_id, a.label) for a in current_annotations(s, [img])] == [(obj, "debris")]
    with db.session() as s:
        undo_operation(s, op, reviewer="rev", classes=OBJ_CLASSES)
        undo_operation(s, prune, reviewer="rev", classes=OBJ_CLASSES)
    with db.read() as s:
        now = sorted((a.object_id, a.label, a.status) for a in current_annotations(s, [img]))
        assert [h.label for h in object_history(s, obj)] == ["cell", "cell", "debris", "cell"]
    assert now == [(obj, "cell", "verified"), (gone, "cell", "verified")]


# -- expiry and merges -------------------------------------------------------------------------


def test_expire_withdraws_proposals_older_than_n_cycles(db: Database) -> None:
    a, b, c = _items(db, 3)
    c1, c2, c3 = _cycles(db, [1, 2, 3])
    _propose(db, [(a, "cat", 0.9)], cycle_id=c1)
    _propose(db, [(b, "dog", 0.9)], cycle_id=c2)
    _propose(db, [(c, "cat", 0.9)], cycle_id=c3)
    with db.session() as s:
        assert expire_label_proposals(s, cycle_number=3, expire_after=2) == 1
    with db.session() as s:
        assert expire_label_proposals(s, cycle_number=3, expire_after=2) == 0  # idempotent
    assert sorted(_open_ids(db)) == sorted([b, c])
    assert _history(db, a)[-1] == ("cat", "rejected", "model")
    assert _free(db) == {a, b, c}  # withdrawn, still unlabeled
    with db.session() as s:
        assert expire_label_proposals(s, cycle_number=4, expire_after=2) == 1
    assert _open_ids(db) == [c]


def _merge(db: Database, classes: list[str], into: str, item_id: int, label: str) -> int:
    op, _ = _record(
        db,
        "merge",
        [CandidateIn(item_id, "merge", current_label=label, suggested_label=into)],
        classes=classes,
        into=into,
    )
    return op


def test_class_renames_chain_merges_and_forget_undone_ones(db: Database) -> None:
    classes = ["a", "b", "c", "ab", "abc"]
    ids = _items(db, 3)
    with db.session() as s:
        for i, lab in zip(ids, ["a", "b", "c"], strict=True):
            add_label(s, i, lab, classes=classes, source=LabelSource.HUMAN)
    first = _merge(db, ["a", "b"], "ab", ids[0], "a")
    with db.read() as s:
        assert class_renames(s) == {}  # proposed, not applied
    with db.session() as s:
        apply_operation(s, first, reviewer="rev", classes=classes, accept_pending=True)
    with db.read() as s:
        assert class_renames(s) == {"a": "ab", "b": "ab"}
    second = _merge(db, ["ab", "c"], "abc", ids[2], "c")
    with db.session() as s:
        apply_operation(s, second, reviewer="rev", classes=classes, accept_pending=True)
    with db.read() as s:
        assert class_renames(s) == {"a": "abc", "b": "abc", "ab": "abc", "c": "abc"}
    with db.session() as s:
        undo_operation(s, second, reviewer="rev", classes=classes)
    with db.read() as s:
        assert class_renames(s) == {"a": "ab", "b": "ab"}


def test_verifying_a_proposal_of_a_merged_class_uses_the_new_name(db: Database) -> None:
    classes = ["a", "b", "ab"]
    x, y = _items(db, 2)
    with db.session() as s:
        add_label(s, x, "a", classes=classes, source=LabelSource.HUMAN)
        write_label_proposals(s, [(y, "b", 0.3)], classes=classes, model_version="m", cycle_id=None)
    op = _merge(db, ["a", "b"], "ab", x, "a")
    with db.session() as s:
        apply_operation(s, op, reviewer="rev", classes=["ab"], accept_pending=True)
        verify_proposal(s, "label", _queue_row(db, y), reviewer="rev", classes=["ab"])
    assert _current(db) == {x: ("ab", False), y: ("ab", False)}
