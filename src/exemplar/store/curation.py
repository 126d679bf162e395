"""Curation in the database: model proposals, their verification, and recorded operations.

Issue #12's workflow as rows, never overwrites (DESIGN.md §4):

* **Proposals.** A model's class for a pool item is a ``labels`` row with ``source`` model,
  ``status`` proposed, its ``model_version`` and ``confidence``
  (:func:`write_label_proposals`); objects' proposals are ``annotations`` rows
  (:mod:`exemplar.store.annotations`). A proposal is not a label: the item stays in the
  pool (:mod:`exemplar.store.pool`) and out of training unless ``[curation] unverified``
  keeps it as a weak label.
* **Verification.** :func:`verification_queue` lists open proposals (classes and objects)
  ordered for review and filtered by confidence; :func:`verify_proposal` and
  :func:`reject_proposal` are the one-key verdicts. Correcting a confident proposal's class
  is a hard negative (a confident error the model must learn); rejecting a confident object
  proposal keeps it as a hard negative region. Once an image has no open proposal left, it
  is labeled: every object the model saw has a verdict.
* **Operations.** A prune plan, label-error suspects, a class split or merge is a
  :class:`~exemplar.store.schema.CurationOperation` with its candidates
  (:func:`record_operation`). A reviewer decides candidates (:func:`decide`); applying the
  operation appends a label (or annotation) row per accepted candidate and records the row
  it replaced (:func:`apply_operation`); undoing appends the replaced rows again, skipping
  any item somebody changed since (:func:`undo_operation`).

Every function works in the caller's session; nothing commits on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from exemplar.errors import ExemplarError
from exemplar.store.annotations import OBJECTS_LABEL, revise
from exemplar.store.labels import add_label, validate_class
from exemplar.store.schema import (
    Annotation,
    AnnotationStatus,
    CandidateDecision,
    CurationCandidate,
    CurationOperation,
    CurationStatus,
    Cycle,
    Item,
    Label,
    LabelSource,
    LabelStatus,
)

__all__ = [
    "CURATION_TAG",
    "OPERATION_KINDS",
    "QUEUE_ORDERS",
    "ApplyReport",
    "CandidateIn",
    "CurationConflict",
    "CurationError",
    "CurationNotFound",
    "ProposalView",
    "apply_operation",
    "class_renames",
    "count_open_proposals",
    "decide",
    "dismiss_operation",
    "expire_label_proposals",
    "get_operation",
    "list_operations",
    "operation_candidates",
    "record_operation",
    "reject_proposal",
    "undo_operation",
    "verification_queue",
    "verify_proposal",
    "write_label_proposals",
]

#: What a curation operation may be.
OPERATION_KINDS = ("prune", "label_errors", "split", "merge")
#: The most rows :func:`verification_queue` reads from one table (an SQL ``LIMIT`` bound).
_MAX_ROWS = 2**62
#: How :func:`verification_queue` may order proposals.
QUEUE_ORDERS = ("uncertain", "confident", "class")
#: ``labels.strategy`` of rows curation writes (their provenance in the label history).
CURATION_TAG = "curation"
Order = Literal["uncertain", "confident", "class"]


class CurationError(ExemplarError, ValueError):
    """A curation request that cannot be carried out (unknown operation, wrong state...)."""


class CurationNotFound(CurationError, LookupError):
    """The operation, proposal or object a request names does not exist."""


class CurationConflict(CurationError):
    """The request does not fit the current state (already applied, decided meanwhile...)."""


@dataclass(frozen=True)
class CandidateIn:
    """One item (or object) a new operation concerns."""

    item_id: int
    reason: str
    score: float | None = None
    current_label: str | None = None
    suggested_label: str | None = None
    object_id: int | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProposalView:
    """One open proposal in the verification queue."""

    kind: Literal["label", "object"]
    id: int  # the label row id, or the object id
    item_id: int
    label: str
    confidence: float | None
    model_version: str | None
    box: tuple[float, float, float, float] | None = None


@dataclass
class ApplyReport:
    """What applying or undoing an operation did."""

    operation_id: int
    status: str
    written: int = 0
    skipped: list[str] = field(default_factory=list)


# -- proposals ---------------------------------------------------------------------------


def _conn(s: Session | Connection) -> Connection:
    return s.connection() if isinstance(s, Session) else s


def write_label_proposals(
    session: Session,
    proposals: Sequence[tuple[int, str, float]],
    *,
    classes: Sequence[str],
    model_version: str,
    cycle_id: int | None,
) -> int:
    """Store ``(item_id, class, confidence)`` as the model's proposals; return how many.

    Items a person (or import) labeled are skipped, and so are items whose newest row is
    already this model's proposal (a resumed step writes nothing twice).
    """
    if not proposals:
        return 0
    ids = [p[0] for p in proposals]
    newest = _newest_labels(session, ids)
    labeled = set(
        session.scalars(
            select(Label.item_id).where(
                Label.item_id.in_(ids), Label.source != LabelSource.MODEL.value
            )
        )
    )
    written = 0
    for item_id, label, confidence in proposals:
        old = newest.get(item_id)
        if item_id in labeled or (  # this model proposed it already (open or rejected)
            old is not None
            and old.source == LabelSource.MODEL
            and old.status in (LabelStatus.PROPOSED, LabelStatus.REJECTED)
            and old.model_version == model_version
        ):
            continue
        add_label(
            session,
            item_id,
            label,
            classes=classes,
            source=LabelSource.MODEL,
            status=LabelStatus.PROPOSED,
            cycle_id=cycle_id,
            strategy=f"{CURATION_TAG}:propose",
            model_version=model_version,
            confidence=float(confidence),
        )
        written += 1
    return written


def _newest_labels(session: Session, item_ids: Sequence[int]) -> dict[int, Label]:
    out: dict[int, Label] = {}
    for chunk in _chunks(list(item_ids)):
        newest = select(func.max(Label.id)).where(Label.item_id.in_(chunk)).group_by(Label.item_id)
        for row in session.scalars(select(Label).where(Label.id.in_(newest))):
            out[row.item_id] = row
    return out


def _chunks(values: list[int], size: int = 500) -> list[list[int]]:
    return [values[i : i + size] for i in range(0, len(values), size)] or [[]]


def _open_label_query(*columns: Any) -> Any:
    """``columns`` of model proposals that are still their item's newest label row."""
    newer = aliased(Label)
    return select(*columns).where(
        Label.source == LabelSource.MODEL.value,
        Label.status == LabelStatus.PROPOSED.value,
        ~exists().where(newer.item_id == Label.item_id, newer.id > Label.id),
    )


def _open_object_query(*columns: Any) -> Any:
    """``columns`` of objects whose newest row is a proposal."""
    newer = aliased(Annotation)
    return select(*columns).where(
        Annotation.status == AnnotationStatus.PROPOSED.value,
        ~exists().where(newer.object_id == Annotation.object_id, newer.id > Annotation.id),
    )


def _open_label_proposals(session: Session) -> list[Label]:
    """Every item's newest row where it is a model's open proposal."""
    return list(session.scalars(_open_label_query(Label)))


def _open_object_proposals(session: Session) -> list[Annotation]:
    """Every object whose newest row is a proposal."""
    return list(session.scalars(_open_object_query(Annotation)))


def count_open_proposals(session: Session) -> int:
    """How many proposals (classes and objects) wait for a verdict."""
    labels = session.scalar(_open_label_query(func.count()))
    objects = session.scalar(_open_object_query(func.count()))
    return int(labels or 0) + int(objects or 0)


def verification_queue(
    session: Session,
    *,
    order: Order = "uncertain",
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    label: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ProposalView], int]:
    """Open proposals to verify, ordered for review, and how many match in all.

    ``uncertain`` puts the least confident first and interleaves classes (round-robin), so
    the first page covers every class: uncertain and diverse first. ``confident`` puts the
    most confident first (a quick run of one-key accepts); ``class`` groups by class, most
    confident first within each. ``min_confidence``/``max_confidence`` filter (inclusive)
    and ``label`` keeps one class. The filters run in SQL and only the page is read whole.
    """
    if order not in QUEUE_ORDERS:
        raise CurationError(f"unknown order {order!r}; expected one of {', '.join(QUEUE_ORDERS)}")
    rows: list[tuple[tuple[Any, ...], ProposalView]] = []
    total = 0
    for kind, table, row_id in (
        ("label", Label, Label.id),
        ("object", Annotation, Annotation.object_id),
    ):
        opened = _open_label_query if table is Label else _open_object_query
        confidence = func.coalesce(table.confidence, 0.0)
        where = []
        if label is not None:
            where.append(table.label == label)
        if min_confidence is not None:
            where.append(confidence >= min_confidence)
        if max_confidence is not None:
            where.append(confidence <= max_confidence)
        total += int(session.scalar(opened(func.count()).where(*where)) or 0)
        columns = [
            row_id.label("id"),
            table.item_id.label("item_id"),
            table.label.label("name"),
            confidence.label("conf"),
        ]
        if order == "uncertain":  # round-robin over classes: each item's depth in its class
            columns += [
                func.row_number()
                .over(partition_by=table.label, order_by=(confidence, row_id))
                .label("depth"),
                func.min(confidence).over(partition_by=table.label).label("class_min"),
            ]
        ranked = opened(*columns).where(*where).subquery()
        c = ranked.c  # the order, in SQL: only the first offset + limit rows are read
        keys: tuple[Any, ...]
        if order == "confident":
            keys = (c.conf.desc(), c.id)
        elif order == "class":
            keys = (c.name, c.conf.desc(), c.id)
        else:
            keys = (c.depth, c.class_min, c.name, c.id)
        # SQLite's integers are 64-bit: a huge offset (a client's typo) reads every row
        query = select(ranked).order_by(*keys).limit(min(offset + limit, _MAX_ROWS))
        for r in session.execute(query):
            view = ProposalView(kind, int(r.id), int(r.item_id), str(r.name or ""), r.conf, None)  # type: ignore[arg-type]
            rows.append((_sort_key(order, r, kind), view))
    rows.sort(key=lambda pair: pair[0])
    page = [view for _, view in rows[offset : offset + limit]]
    return _with_details(session, page), total


def _sort_key(order: Order, r: Any, kind: str) -> tuple[Any, ...]:
    """The SQL order of :func:`verification_queue`, to merge class and object proposals."""
    if order == "confident":
        return (-r.conf, kind, r.id)
    if order == "class":
        return (r.name, -r.conf, kind, r.id)
    return (r.depth, r.class_min, r.name, r.conf, kind, r.id)


def _with_details(session: Session, page: list[ProposalView]) -> list[ProposalView]:
    """The page's proposals with their model version (and box, for objects)."""
    label_ids = [v.id for v in page if v.kind == "label"]
    object_ids = [v.id for v in page if v.kind == "object"]
    versions = (
        dict(
            session.execute(
                select(Label.id, Label.model_version).where(Label.id.in_(label_ids))
            ).all()
        )
        if label_ids
        else {}
    )
    objects = (
        {
            a.object_id: a
            for a in session.scalars(
                _open_object_query(Annotation).where(Annotation.object_id.in_(object_ids))
            )
        }
        if object_ids
        else {}
    )
    out = []
    for v in page:
        if v.kind == "label":
            out.append(
                ProposalView("label", v.id, v.item_id, v.label, v.confidence, versions.get(v.id))
            )
            continue
        a = objects.get(v.id)
        out.append(
            ProposalView(
                "object",
                v.id,
                v.item_id,
                v.label,
                v.confidence,
                a.model_version if a is not None else None,
                (a.x0, a.y0, a.x1, a.y1) if a is not None else None,
            )
        )
    return out


def _proposal(session: Session, kind: str, proposal_id: int) -> Label | Annotation:
    if kind == "label":
        row = session.get(Label, proposal_id)
        if row is None or row.source != LabelSource.MODEL or row.status != LabelStatus.PROPOSED:
            raise CurationNotFound(f"label row {proposal_id} is not a model's proposal")
        newest = session.scalar(select(func.max(Label.id)).where(Label.item_id == row.item_id))
        if newest != row.id:
            raise CurationConflict(
                f"item {row.item_id} changed since proposal {proposal_id}; reload the queue"
            )
        return row
    if kind == "object":
        ann = session.scalar(
            select(Annotation)
            .where(Annotation.object_id == proposal_id)
            .order_by(Annotation.id.desc())
            .limit(1)
        )
        if ann is None:
            raise CurationNotFound(f"no object {proposal_id}")
        if ann.status != AnnotationStatus.PROPOSED:
            raise CurationConflict(f"object {proposal_id} is {ann.status}, not an open proposal")
        return ann
    raise CurationError(f"unknown proposal kind {kind!r}; expected label or object")


def verify_proposal(
    session: Session,
    kind: Literal["label", "object"],
    proposal_id: int,
    *,
    reviewer: str,
    classes: Sequence[str],
    label: str | None = None,
    box: Sequence[float] | None = None,
    hard_negative_confidence: float = 0.5,
) -> int:
    """Accept a proposal, optionally fixing its class (or an object's box); return the row.

    A class that corrects a proposal at least ``hard_negative_confidence`` sure is stored
    as a hard negative (classification). A fixed box is recorded as a fix (a new row of
    the object's history, by the reviewer).
    """
    row = _proposal(session, kind, proposal_id)
    renamed = class_renames(session).get(row.label or "", row.label)  # a merged class
    if isinstance(row, Label):
        final = validate_class(label if label is not None else renamed or "", classes)
        corrected = final != renamed and (row.confidence or 0.0) >= hard_negative_confidence
        written = add_label(
            session,
            row.item_id,
            final,
            classes=classes,
            source=LabelSource.HUMAN,
            annotator=reviewer,
            cycle_id=row.cycle_id,
            strategy=f"{CURATION_TAG}:verify",
            model_version=row.model_version,
            confidence=row.confidence,
            hard_negative=True if corrected else None,
        )
        return written.id
    changes: dict[str, Any] = {"status": AnnotationStatus.VERIFIED}
    if label is not None or renamed != row.label:
        changes["label"] = label if label is not None else renamed
    if box is not None:
        changes["box"] = list(box)
    ann = revise(session, row.object_id, classes=classes, annotator=reviewer, **changes)
    _complete_image(session, row.item_id, reviewer, classes)
    return ann.id


def reject_proposal(
    session: Session,
    kind: Literal["label", "object"],
    proposal_id: int,
    *,
    reviewer: str,
    classes: Sequence[str],
    hard_negative_confidence: float = 0.5,
) -> int:
    """Reject a proposal; return the row written.

    A class proposal becomes a rejected model row naming the reviewer: the item stays in
    the pool for a person to label. An object proposal at least
    ``hard_negative_confidence`` sure is kept as a hard negative (the detector trains on
    it as background), a less confident one is rejected.
    """
    row = _proposal(session, kind, proposal_id)
    if isinstance(row, Label):
        written = add_label(
            session,
            row.item_id,
            row.label,
            classes=[*classes, row.label or ""],  # a class merged or split away since
            source=LabelSource.MODEL,
            status=LabelStatus.REJECTED,
            annotator=reviewer,
            cycle_id=row.cycle_id,
            strategy=f"{CURATION_TAG}:reject",
            model_version=row.model_version,
            confidence=row.confidence,
        )
        return written.id
    confident = (row.confidence or 0.0) >= hard_negative_confidence
    status = AnnotationStatus.HARD_NEGATIVE if confident else AnnotationStatus.REJECTED
    ann = revise(
        session, row.object_id, classes=[*classes, row.label], annotator=reviewer, status=status
    )
    _complete_image(session, row.item_id, reviewer, classes)
    return ann.id


def _complete_image(session: Session, item_id: int, reviewer: str, classes: Sequence[str]) -> None:
    """Label an image once every proposal on it has a verdict (its objects label row)."""
    newest = (
        select(func.max(Annotation.id))
        .where(Annotation.item_id == item_id)
        .group_by(Annotation.object_id)
    )
    open_left = session.scalar(
        select(func.count()).where(
            Annotation.id.in_(newest), Annotation.status == AnnotationStatus.PROPOSED.value
        )
    )
    if open_left:
        return
    current = session.scalar(
        select(Label).where(Label.item_id == item_id).order_by(Label.id.desc()).limit(1)
    )
    if current is not None and current.status == LabelStatus.VERIFIED:
        return
    add_label(
        session,
        item_id,
        OBJECTS_LABEL,
        classes=[*classes, OBJECTS_LABEL],
        source=LabelSource.HUMAN,
        annotator=reviewer,
        strategy=f"{CURATION_TAG}:verify",
    )


def expire_label_proposals(
    session: Session, *, cycle_number: int, expire_after: int, cycle_id: int | None = None
) -> int:
    """Withdraw model proposals (classes and objects) written ``expire_after`` or more
    cycles before ``cycle_number``; return how many. An expired class proposal becomes a
    rejected model row, an expired object proposal a deleted one (history kept), recorded
    with ``cycle_id``, the cycle that withdrew them (default: the proposal's own)."""
    numbers = dict(session.execute(select(Cycle.id, Cycle.number)).all())
    expired = 0
    for ann in _open_object_proposals(session):
        made = numbers.get(ann.cycle_id) if ann.cycle_id is not None else None
        if ann.source != LabelSource.MODEL or made is None or cycle_number - made < expire_after:
            continue
        revise(
            session,
            ann.object_id,
            annotator=None,
            status=AnnotationStatus.DELETED,
            source=LabelSource.MODEL,
            classes=[ann.label],
            cycle_id=cycle_id,
        )
        expired += 1
    for row in _open_label_proposals(session):
        made = numbers.get(row.cycle_id) if row.cycle_id is not None else None
        if made is None or cycle_number - made < expire_after:
            continue
        add_label(
            session,
            row.item_id,
            row.label,
            classes=[row.label or ""],
            source=LabelSource.MODEL,
            status=LabelStatus.REJECTED,
            cycle_id=row.cycle_id if cycle_id is None else cycle_id,
            strategy=f"{CURATION_TAG}:expired",
            model_version=row.model_version,
            confidence=row.confidence,
        )
        expired += 1
    return expired


# -- operations --------------------------------------------------------------------------


def record_operation(
    session: Session,
    kind: str,
    candidates: Sequence[CandidateIn],
    *,
    summary: str,
    params: Mapping[str, Any] | None = None,
    cycle_id: int | None = None,
    created_by: str | None = None,
) -> CurationOperation:
    """Record a proposed operation and its candidates (in the caller's transaction)."""
    if kind not in OPERATION_KINDS:
        raise CurationError(
            f"unknown operation kind {kind!r}; expected one of {', '.join(OPERATION_KINDS)}"
        )
    op = CurationOperation(
        kind=kind,
        status=CurationStatus.PROPOSED,
        cycle_id=cycle_id,
        summary=summary,
        params=dict(params or {}),
        created_by=created_by,
    )
    session.add(op)
    session.flush()
    session.add_all(
        CurationCandidate(
            operation_id=op.id,
            item_id=c.item_id,
            object_id=c.object_id,
            reason=c.reason,
            score=c.score,
            current_label=c.current_label,
            suggested_label=c.suggested_label,
            detail=c.detail,
            decision=CandidateDecision.PENDING,
        )
        for c in candidates
    )
    session.flush()
    return op


def get_operation(session: Session, operation_id: int) -> CurationOperation:
    """The operation ``operation_id``, or a :class:`CurationError` naming it."""
    op = session.get(CurationOperation, operation_id)
    if op is None:
        raise CurationNotFound(f"no curation operation {operation_id}")
    return op


def list_operations(
    session: Session, *, kind: str | None = None, status: str | None = None
) -> list[CurationOperation]:
    """Operations, newest first, optionally of one kind or status."""
    query = select(CurationOperation).order_by(CurationOperation.id.desc())
    if kind is not None:
        query = query.where(CurationOperation.kind == kind)
    if status is not None:
        query = query.where(CurationOperation.status == status)
    return list(session.scalars(query))


def operation_candidates(session: Session, operation_id: int) -> list[CurationCandidate]:
    """An operation's candidates, highest score first (then by id)."""
    return list(
        session.scalars(
            select(CurationCandidate)
            .where(CurationCandidate.operation_id == operation_id)
            .order_by(CurationCandidate.score.desc().nulls_last(), CurationCandidate.id)
        )
    )


def _require(op: CurationOperation, status: CurationStatus, action: str) -> None:
    if op.status != status:
        raise CurationConflict(
            f"cannot {action} operation {op.id}: it is {op.status}, not {status.value}"
        )


def decide(
    session: Session,
    operation_id: int,
    decisions: Mapping[int, str],
    *,
    reviewer: str,
    labels: Mapping[int, str] | None = None,
    classes: Sequence[str] | None = None,
) -> int:
    """Record a reviewer's ``accepted``/``declined`` per candidate id; return how many.

    ``labels`` overrides a candidate's suggested class (a reviewer who sees the right class
    is neither the given nor the suggested one).
    """
    op = get_operation(session, operation_id)
    _require(op, CurationStatus.PROPOSED, "decide on")
    known = {c.id: c for c in operation_candidates(session, operation_id)}
    for cid, decision in decisions.items():
        if cid not in known:
            raise CurationError(f"operation {operation_id} has no candidate {cid}")
        if decision not in (CandidateDecision.ACCEPTED, CandidateDecision.DECLINED):
            raise CurationError(f"decision must be accepted or declined, got {decision!r}")
    for cid, label in (labels or {}).items():
        if cid not in known:
            raise CurationError(f"operation {operation_id} has no candidate {cid}")
        if classes is not None:
            validate_class(label, classes)
    for cid, decision in decisions.items():
        cand = known[cid]
        cand.decision = decision
        cand.decided_by = reviewer
        if labels and cid in labels:
            cand.suggested_label = labels[cid]
    session.flush()
    return len(decisions)


def dismiss_operation(session: Session, operation_id: int, *, reviewer: str) -> None:
    """Close a proposed operation without applying anything (its candidates stay recorded)."""
    op = get_operation(session, operation_id)
    _require(op, CurationStatus.PROPOSED, "dismiss")
    op.status = CurationStatus.DISMISSED
    op.decided_by = reviewer
    session.flush()


def apply_operation(
    session: Session,
    operation_id: int,
    *,
    reviewer: str,
    classes: Sequence[str],
    accept_pending: bool = False,
) -> ApplyReport:
    """Apply the accepted candidates (all pending ones too with ``accept_pending``).

    * ``prune``: the item's label is appended again as ``pruned`` (out of training, history
      kept);
    * ``label_errors``, ``split``, ``merge``: the item (or object) gets the candidate's
      suggested class as a new verified row by the reviewer.

    A candidate whose item (or object) changed since the operation was proposed is skipped
    and reported, never overwritten. ``classes`` are the classes valid after the operation.
    """
    op = get_operation(session, operation_id)
    _require(op, CurationStatus.PROPOSED, "apply")
    report = ApplyReport(op.id, CurationStatus.APPLIED)
    candidates = operation_candidates(session, operation_id)
    newest = _newest_labels(session, [c.item_id for c in candidates if c.object_id is None])
    for cand in candidates:
        if cand.decision == CandidateDecision.PENDING and accept_pending:
            cand.decision = CandidateDecision.ACCEPTED
            cand.decided_by = reviewer
        if cand.decision != CandidateDecision.ACCEPTED:
            continue
        written = (
            _apply_object(session, op, cand, reviewer, classes)
            if cand.object_id is not None
            else _apply_item(session, op, cand, newest.get(cand.item_id), reviewer, classes)
        )
        if isinstance(written, str):  # changed meanwhile: left undecided, not declined
            report.skipped.append(written)
            cand.decision = CandidateDecision.PENDING
            cand.detail = {**(cand.detail or {}), "skipped": written}
            continue
        cand.written = written
        report.written += 1
    op.status = CurationStatus.APPLIED
    op.decided_by = reviewer
    session.flush()
    return report


def _apply_item(
    session: Session,
    op: CurationOperation,
    cand: CurationCandidate,
    current: Label | None,
    reviewer: str,
    classes: Sequence[str],
) -> dict[str, Any] | str:
    if current is None or current.status not in (LabelStatus.VERIFIED, LabelStatus.DISPUTED):
        return f"item {cand.item_id}: no verified label any more"
    if cand.current_label is not None and current.label != cand.current_label:
        return f"item {cand.item_id}: relabeled {current.label!r} since the operation proposed it"
    if op.kind == "prune":
        label, status = current.label, LabelStatus.PRUNED
        valid = [*classes, OBJECTS_LABEL, current.label or ""]
    else:
        label, status = cand.suggested_label, LabelStatus.VERIFIED
        if label is None:
            return f"item {cand.item_id}: no class chosen"
        valid = list(classes)
    row = add_label(
        session,
        cand.item_id,
        label,
        classes=valid,
        source=LabelSource.HUMAN,
        status=status,
        annotator=reviewer,
        strategy=f"{CURATION_TAG}:{op.kind}",
        hard_negative=current.hard_negative,
    )
    return {"before": current.id, "after": row.id}


def _apply_object(
    session: Session,
    op: CurationOperation,
    cand: CurationCandidate,
    reviewer: str,
    classes: Sequence[str],
) -> dict[str, Any] | str:
    assert cand.object_id is not None
    current = _newest_annotation(session, cand.object_id)
    if current is None or current.status not in (
        AnnotationStatus.VERIFIED,
        AnnotationStatus.PROPOSED,
        AnnotationStatus.HARD_NEGATIVE,
    ):
        return f"object {cand.object_id}: not a verified object any more"
    if cand.current_label is not None and current.label != cand.current_label:
        return f"object {cand.object_id}: relabeled {current.label!r} since the proposal"
    if op.kind == "prune":
        ann = revise(
            session,
            cand.object_id,
            classes=classes,
            annotator=reviewer,
            status=AnnotationStatus.DELETED,
        )
    else:
        if cand.suggested_label is None:
            return f"object {cand.object_id}: no class chosen"
        ann = revise(
            session,
            cand.object_id,
            classes=classes,
            annotator=reviewer,
            label=cand.suggested_label,
            source=current.source,  # a renamed proposal stays the model's, with its confidence
        )
    return {"before": current.id, "after": ann.id}


def _newest_annotation(session: Session, object_id: int) -> Annotation | None:
    return session.scalar(
        select(Annotation)
        .where(Annotation.object_id == object_id)
        .order_by(Annotation.id.desc())
        .limit(1)
    )


def undo_operation(
    session: Session, operation_id: int, *, reviewer: str, classes: Sequence[str]
) -> ApplyReport:
    """Undo an applied operation: append, for each row it wrote, the row that row replaced.

    An item (or object) somebody changed after the operation is left as it is and reported.
    ``classes`` are the classes valid after the undo.
    """
    op = get_operation(session, operation_id)
    _require(op, CurationStatus.APPLIED, "undo")
    report = ApplyReport(op.id, CurationStatus.UNDONE)
    for cand in operation_candidates(session, operation_id):
        if not cand.written:
            continue
        before, after = int(cand.written["before"]), int(cand.written["after"])
        message = (
            _undo_object(session, cand, before, after, reviewer, classes)
            if cand.object_id is not None
            else _undo_item(session, cand, before, after, reviewer, classes)
        )
        if message:
            report.skipped.append(message)
        else:
            report.written += 1
    op.status = CurationStatus.UNDONE
    op.decided_by = reviewer
    session.flush()
    return report


def _undo_item(
    session: Session,
    cand: CurationCandidate,
    before: int,
    after: int,
    reviewer: str,
    classes: Sequence[str],
) -> str | None:
    newest = session.scalar(select(func.max(Label.id)).where(Label.item_id == cand.item_id))
    if newest != after:
        return f"item {cand.item_id}: changed since the operation; left as it is"
    old = session.get(Label, before)
    assert old is not None
    add_label(
        session,
        cand.item_id,
        old.label,
        classes=[*classes, OBJECTS_LABEL, old.label or ""],
        source=old.source,
        status=old.status,
        annotator=reviewer,
        strategy=f"{CURATION_TAG}:undo",
        hard_negative=old.hard_negative,
        model_version=old.model_version,
        confidence=old.confidence,
    )
    return None


def _undo_object(
    session: Session,
    cand: CurationCandidate,
    before: int,
    after: int,
    reviewer: str,
    classes: Sequence[str],
) -> str | None:
    assert cand.object_id is not None
    current = _newest_annotation(session, cand.object_id)
    if current is None or current.id != after:
        return f"object {cand.object_id}: changed since the operation; left as it is"
    old = session.get(Annotation, before)
    assert old is not None
    revise(
        session,
        cand.object_id,
        classes=[*classes, old.label],
        annotator=reviewer,
        label=old.label,
        status=old.status,
        source=old.source,
    )
    return None


def labeled_items(session: Session, item_ids: Sequence[int]) -> dict[int, Item]:
    """Items by id (for views that show an operation's candidates)."""
    out: dict[int, Item] = {}
    for chunk in _chunks(list(item_ids)):
        out.update({i.id: i for i in session.scalars(select(Item).where(Item.id.in_(chunk)))})
    return out


def curated_items(session: Session) -> dict[int, str | None]:
    """Items whose newest label is ``pruned``, with their class (removed by curation)."""
    newest = select(func.max(Label.id)).group_by(Label.item_id)
    return dict(
        session.execute(
            select(Label.item_id, Label.label).where(
                and_(Label.id.in_(newest), Label.status == LabelStatus.PRUNED.value)
            )
        ).all()
    )


def class_renames(session: Session) -> dict[str, str]:
    """Old class -> current class, from every applied (not undone) merge, chained.

    The simulated oracle reads hidden ground truth through it, so a merged class keeps
    being answered with its new name.
    """
    renames: dict[str, str] = {}
    for op in reversed(list_operations(session, kind="merge", status=CurationStatus.APPLIED)):
        into = str(op.params["into"])
        for old in op.params["classes"]:
            if old != into:
                renames[str(old)] = into
        renames = {old: renames.get(new, new) for old, new in renames.items()}
    return renames
