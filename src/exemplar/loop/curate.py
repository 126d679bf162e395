"""Curation steps on a project (issue #12): propose, label errors, prune, split and merge.

Each step reads the project (labels, features, the selected model's stored scores), calls
the pure library in :mod:`exemplar.curation`, and records what it finds through
:mod:`exemplar.store.curation` in one transaction: proposals a reviewer verifies, or an
operation whose candidates a reviewer confirms before anything changes. The loop runs the
steps of ``[curation] auto`` in each cycle's recorded ``curate`` state
(:func:`curate_cycle`); the CLI, the API and the app call the same functions.

Class changes (split, merge) rewrite ``[project] classes`` in ``exemplar.toml`` around
the database transaction: first with the union of the old and new classes, then, once the
labels are committed, with the final list. A crash in between leaves a class list that
still names every class any label uses.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exemplar.curation import (
    choose_n_classes,
    find_label_errors,
    merge_mapping,
    out_of_fold_proba,
    propose_split,
    prune_plan,
    validate_plan,
)
from exemplar.loop.config import CONFIG_NAME, load_config, save_config
from exemplar.loop.context import LoopContext
from exemplar.loop.faults import crash_point
from exemplar.loop.lock import project_lock
from exemplar.loop.tasks import predict_proposals, write_proposals
from exemplar.models import ModelAdapter
from exemplar.store.annotations import OBJECTS_LABEL, current_annotations
from exemplar.store.consensus import REVIEW_STRATEGY
from exemplar.store.curation import (
    CURATION_TAG,
    ApplyReport,
    CandidateIn,
    CurationConflict,
    CurationError,
    apply_operation,
    expire_label_proposals,
    get_operation,
    list_operations,
    record_operation,
    undo_operation,
    write_label_proposals,
)
from exemplar.store.db import id_chunks
from exemplar.store.labels import current_labels
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
    Split,
)

__all__ = [
    "CurationFindings",
    "apply_curation",
    "curate_cycle",
    "finish_class_change",
    "label_error_operation",
    "merge_operation",
    "propose",
    "prune_operation",
    "split_operation",
    "undo_curation",
]

#: Side of the square an object crop is resized to, for its embedding (per channel).
CROP_SIDE = 12
#: Out-of-fold model for label errors and prune validation (fast, calibrated enough).
CURATION_RECIPE = "logreg"


@dataclass
class CurationFindings:
    """What one cycle's ``curate`` state recorded."""

    proposed: int = 0
    expired: int = 0
    operations: list[int] | None = None


@dataclass
class _Exemplars:
    """The verified units curation reasons about: items (classification) or objects."""

    item_ids: np.ndarray
    object_ids: np.ndarray | None  # None: item-level
    labels: np.ndarray
    X: np.ndarray


def _objects(ctx: LoopContext) -> bool:
    return ctx.config.project.task != "classification"


# -- propose -------------------------------------------------------------------------------


def propose(
    ctx: LoopContext,
    model: ModelAdapter | None,
    version: str,
    recipe: str | None,
    *,
    cycle_id: int | None,
    proba: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    seed: int = 0,
    sample: int | None = None,
) -> int:
    """The model labels a sample of the free pool: proposals a reviewer verifies.

    Classification reads the stored pool probabilities ``proba`` (rows x ``classes``, by
    default the model's) when given, else predicts with ``model``; objects run the
    detector ``model`` (``recipe``) on the sample. Returns the proposals written (none
    twice for the same model).
    """
    cur = ctx.config.curation
    size = cur.propose_sample if sample is None else sample
    rows, ids = _free_pool(ctx)
    if rows.size == 0:
        return 0
    if size and rows.size > size:
        keep = np.sort(np.random.default_rng(seed % 2**32).choice(rows.size, size, replace=False))
        rows, ids = rows[keep], ids[keep]
    if _objects(ctx):
        if model is None or recipe is None:
            raise CurationError("proposing objects needs the detector and its recipe")
        found = predict_proposals(ctx, model, recipe, rows, ids)
        with ctx.db.session() as s:
            # An image with objects already (proposed or decided) is being reviewed: a newer
            # model's full set would duplicate the verified objects and bring back rejected
            # ones. Stale proposals expire instead (``unverified = "expire"``).
            under_review = (
                AnnotationStatus.PROPOSED,
                AnnotationStatus.VERIFIED,
                AnnotationStatus.REJECTED,
                AnnotationStatus.HARD_NEGATIVE,
            )  # ground truth (hidden, for simulation) does not count
            done = {
                a.item_id
                for a in current_annotations(s, [int(i) for i in ids], statuses=under_review)
            }
            fresh = {
                i: objs.above(cur.propose_min_confidence)
                for i, objs in found.items()
                if i not in done
            }
            return write_proposals(s, fresh, ctx, model_version=version, cycle_id=cycle_id)
    if proba is not None:
        P = np.asarray(proba[rows])
    elif model is not None:
        P = np.asarray(model.predict(np.asarray(ctx.features()[rows])).proba)
    else:
        raise CurationError("proposing classes needs the model or its stored probabilities")
    columns = np.asarray(classes if classes is not None else model.classes_)  # type: ignore[union-attr]
    best = P.argmax(axis=1)
    confidence = P[np.arange(len(rows)), best]
    wanted = confidence >= cur.propose_min_confidence
    proposals = [
        (int(i), str(columns[b]), float(c))
        for i, b, c, w in zip(ids, best, confidence, wanted, strict=True)
        if w and str(columns[b]) in ctx.classes
    ]
    with ctx.db.session() as s:
        return write_label_proposals(
            s, proposals, classes=ctx.classes, model_version=version, cycle_id=cycle_id
        )


def _free_pool(ctx: LoopContext) -> tuple[np.ndarray, np.ndarray]:
    from exemplar.store.pool import free_pool, pool_items

    with ctx.db.read() as s:
        rows, ids = pool_items(s)
        return free_pool(s, rows, ids, ctx.n_rows)


# -- the verified exemplars, as arrays ----------------------------------------------------


def _exemplars(ctx: LoopContext, label: str | None = None) -> _Exemplars:
    """Verified items (classification) or objects of labeled images, with a feature each."""
    with ctx.db.read() as s:
        labels = current_labels(s, splits=(Split.POOL, Split.TRAIN))
        if not _objects(ctx):
            kept = [c for c in labels if label is None or c.label == label]
            rows = np.asarray([c.row for c in kept], dtype=np.int64)
            X = np.asarray(ctx.features()[rows]) if rows.size else np.empty((0, 0))
            return _Exemplars(
                np.asarray([c.item_id for c in kept], dtype=np.int64),
                None,
                np.asarray([c.label for c in kept], dtype=object).astype(str),
                X,
            )
        images = {c.item_id: c.row for c in labels if c.label == OBJECTS_LABEL}
        found = current_annotations(s, list(images), statuses=(AnnotationStatus.VERIFIED,))
        found = [a for a in found if label is None or a.label == label]
        sizes = {
            i: (w, h)
            for part in id_chunks(list(images))
            for i, w, h in s.execute(
                select(Item.id, Item.width, Item.height).where(Item.id.in_(part))
            )
        }
    raw = _crops(ctx, found, images, sizes)
    X = _object_embedding(raw, raw)
    return _Exemplars(
        np.asarray([a.item_id for a in found], dtype=np.int64),
        np.asarray([a.object_id for a in found], dtype=np.int64),
        np.asarray([a.label for a in found], dtype=object).astype(str),
        X,
    )


def _other_objects(ctx: LoopContext, classes: Sequence[str]) -> list[Annotation]:
    """Hard negatives and open proposals of ``classes``: a split or merge renames them too,
    so no object is left with a class that no longer exists."""
    with ctx.db.read() as s:
        return [
            a
            for a in current_annotations(
                s, statuses=(AnnotationStatus.HARD_NEGATIVE, AnnotationStatus.PROPOSED)
            )
            if a.label in classes
        ]


def _object_crops(ctx: LoopContext, annotations: Sequence[Annotation]) -> np.ndarray:
    """:func:`_crops` of any objects, reading their items' rows and sizes."""
    ids = sorted({a.item_id for a in annotations})
    with ctx.db.read() as s:
        found = [
            row
            for part in id_chunks(ids)
            for row in s.execute(
                select(Item.id, Item.row, Item.width, Item.height).where(Item.id.in_(part))
            )
        ]
    rows = {i: r for i, r, _, _ in found}
    sizes = {i: (w, h) for i, _, w, h in found}
    return _crops(ctx, annotations, rows, sizes)


def _annotations(ctx: LoopContext, object_ids: np.ndarray) -> list[Annotation]:
    """The current rows of ``object_ids``, in that order."""
    wanted = {int(i) for i in object_ids}
    with ctx.db.read() as s:
        found = {a.object_id: a for a in current_annotations(s) if a.object_id in wanted}
    return [found[int(i)] for i in object_ids]


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (how :func:`~exemplar.curation.propose_split` compares)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _crops(
    ctx: LoopContext,
    annotations: Sequence[Annotation],
    rows: dict[int, int],
    sizes: dict[int, tuple[int | None, int | None]],
) -> np.ndarray:
    """Each object's crop of its image (the model's frame), resized to CROP_SIDE², then
    the log of its width and height in that frame: the raw rows of
    :func:`_object_embedding`."""
    side, channels = ctx.config.data.image_side, ctx.config.data.channels
    out = np.zeros((len(annotations), channels * CROP_SIDE * CROP_SIDE + 2), np.float32)
    if not annotations:
        return out
    features = ctx.features()
    grid = (np.arange(CROP_SIDE) + 0.5) / CROP_SIDE
    for k, a in enumerate(annotations):
        width, height = sizes[a.item_id]
        scale = side / max(width or side, height or side)
        image = np.asarray(features[rows[a.item_id]], np.float32).reshape(channels, side, side)
        x0, y0, x1, y1 = (v * scale for v in (a.x0, a.y0, a.x1, a.y1))
        xs = np.clip((x0 + grid * max(x1 - x0, 1.0)).astype(int), 0, side - 1)
        ys = np.clip((y0 + grid * max(y1 - y0, 1.0)).astype(int), 0, side - 1)
        out[k, :-2] = image[:, ys][:, :, xs].ravel()
        out[k, -2:] = np.log(np.maximum([x1 - x0, y1 - y0], 0.5))
    return out


def _object_embedding(raw: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """An object's embedding: its crop scaled to unit length beside its log size,
    standardized on ``reference`` (the exemplars) and weighted like the crop.

    Size matters: on the real nuclei tiles, splitting the merged nucleus + micronucleus
    class by crops alone recovered it with an adjusted Rand index of 0.56, by crops and
    size 0.86 (3 seeds; ``bench/object_split_embedding.py``).
    """
    if raw.shape[0] == 0:
        return raw
    size = raw[:, -2:]
    mean, std = reference[:, -2:].mean(axis=0), reference[:, -2:].std(axis=0)
    scaled = (size - mean) / np.where(std > 0, std, 1.0) / np.sqrt(2.0)
    return np.hstack([_unit_rows(raw[:, :-2]), scaled]).astype(np.float32)


def _pending_items(s: Session, kind: str) -> set[tuple[int, int | None]]:
    """Items (and objects) already in an open operation of ``kind``: not proposed twice."""
    rows = s.execute(
        select(CurationCandidate.item_id, CurationCandidate.object_id)
        .join(CurationOperation, CurationOperation.id == CurationCandidate.operation_id)
        .where(
            CurationOperation.kind == kind,
            CurationOperation.status == CurationStatus.PROPOSED.value,
        )
    )
    return {(int(i), None if o is None else int(o)) for i, o in rows}


def _declined(s: Session, kind: str) -> set[tuple[int, int | None, str | None]]:
    """Candidates a reviewer declined before, with the label they had: not asked again."""
    rows = s.execute(
        select(
            CurationCandidate.item_id, CurationCandidate.object_id, CurationCandidate.current_label
        )
        .join(CurationOperation, CurationOperation.id == CurationCandidate.operation_id)
        .where(
            CurationOperation.kind == kind,
            CurationCandidate.decision == CandidateDecision.DECLINED.value,
        )
    )
    return {(int(i), None if o is None else int(o), lab) for i, o, lab in rows}


# -- label errors --------------------------------------------------------------------------


def label_error_operation(
    ctx: LoopContext,
    *,
    cycle_id: int | None = None,
    created_by: str | None = None,
    seed: int = 0,
) -> CurationOperation | None:
    """Record probable label errors for review: confident learning (Northcutt et al. 2021)
    on out-of-fold probabilities, and items whose annotators disagreed. None when nothing
    is found."""
    cur = ctx.config.curation
    ex = _exemplars(ctx)
    candidates: list[CandidateIn] = []
    keep = _cross_validatable(ex.labels)
    labels = ex.labels[keep]
    if labels.size >= 2 * cur.folds and np.unique(labels).size >= 2:
        proba, classes = out_of_fold_proba(
            ex.X[keep], labels, CURATION_RECIPE, folds=cur.folds, seed=seed
        )
        found = find_label_errors(proba, labels, classes)
        index = np.flatnonzero(keep)
        for rank, i in enumerate(index[found.indices[: cur.review_budget]]):
            candidates.append(
                CandidateIn(
                    item_id=int(ex.item_ids[i]),
                    object_id=None if ex.object_ids is None else int(ex.object_ids[i]),
                    reason="confident_learning",
                    score=float(1.0 - found.self_confidence[rank]),
                    current_label=str(ex.labels[i]),
                    suggested_label=str(found.suggested[rank]),
                    detail={"why": found.reasons[rank]},
                )
            )
    if not _objects(ctx):
        candidates += _disagreements(ctx)
    with ctx.db.session() as s:
        pending, declined = _pending_items(s, "label_errors"), _declined(s, "label_errors")
        fresh = _dedupe(
            [
                c
                for c in candidates
                if (c.item_id, c.object_id) not in pending
                and (c.item_id, c.object_id, c.current_label) not in declined
            ]
        )
        if not fresh:
            return None
        reasons = Counter(c.reason for c in fresh)
        return record_operation(
            s,
            "label_errors",
            fresh,
            summary=", ".join(f"{n} {r.replace('_', ' ')}" for r, n in reasons.items()),
            params={"recipe": CURATION_RECIPE, "folds": cur.folds},
            cycle_id=cycle_id,
            created_by=created_by,
        )


def _cross_validatable(labels: np.ndarray) -> np.ndarray:
    """Mask of the items whose class has at least two items (out-of-fold needs them)."""
    names, counts = np.unique(labels, return_counts=True)
    return np.isin(labels, names[counts >= 2])


def _dedupe(candidates: list[CandidateIn]) -> list[CandidateIn]:
    seen: set[tuple[int, int | None]] = set()
    out = []
    for c in candidates:
        if (c.item_id, c.object_id) not in seen:
            seen.add((c.item_id, c.object_id))
            out.append(c)
    return out


def _disagreements(ctx: LoopContext) -> list[CandidateIn]:
    """Labeled items whose annotators' newest votes name different classes, unless a
    reviewer decided the item after the last vote (a curation or review decision)."""
    with ctx.db.read() as s:
        current = {c.item_id: c for c in current_labels(s)}
        votes: dict[int, dict[str, str]] = defaultdict(dict)
        last_vote: dict[int, int] = {}
        decided: dict[int, int] = {}
        for row_id, item_id, annotator, label, strategy in s.execute(
            select(Label.id, Label.item_id, Label.annotator, Label.label, Label.strategy)
            .where(
                Label.annotator.is_not(None),
                Label.label.is_not(None),
                Label.source != LabelSource.MODEL.value,
                Label.status.in_([LabelStatus.VERIFIED.value, LabelStatus.PROPOSED.value]),
            )
            .order_by(Label.id)
        ):
            if strategy == REVIEW_STRATEGY or (strategy or "").startswith(CURATION_TAG):
                decided[item_id] = row_id
                continue
            votes[item_id][str(annotator)] = str(label)
            last_vote[item_id] = row_id
    votes = {i: by for i, by in votes.items() if decided.get(i, -1) < last_vote[i]}
    out = []
    for item_id, by in votes.items():
        if len(set(by.values())) < 2 or item_id not in current:
            continue
        given = current[item_id].label
        others = Counter(v for v in by.values() if v != given).most_common(1)
        out.append(
            CandidateIn(
                item_id=item_id,
                reason="annotator_disagreement",
                score=len(set(by.values())) / len(by),
                current_label=given,
                suggested_label=others[0][0] if others else None,
                detail={"votes": dict(sorted(by.items()))},
            )
        )
    return out


# -- prune ---------------------------------------------------------------------------------


def prune_operation(
    ctx: LoopContext,
    *,
    cycle_id: int | None = None,
    created_by: str | None = None,
    seed: int = 0,
) -> CurationOperation | None:
    """Record labeled items that add nothing (near duplicates, confidently known items),
    validated by retraining without them. None when nothing is found.

    Object projects prune whole images: near-duplicate tiles (by pixels); the margin rule
    needs one class per item, so it applies to classification only.
    """
    cur = ctx.config.curation
    with ctx.db.read() as s:
        labels = current_labels(s, splits=(Split.POOL, Split.TRAIN))
    if _objects(ctx):
        labels = [c for c in labels if c.label == OBJECTS_LABEL]
    if len(labels) < 4:
        return None
    rows = np.asarray([c.row for c in labels], dtype=np.int64)
    y = np.asarray([c.label for c in labels], dtype=object).astype(str)
    X = np.asarray(ctx.features()[rows], dtype=np.float32)
    proba = classes = None
    validatable = _cross_validatable(y).all() and np.unique(y).size >= 2
    if not _objects(ctx) and validatable and y.size >= 2 * cur.folds:
        proba, classes = out_of_fold_proba(X, y, CURATION_RECIPE, folds=cur.folds, seed=seed)
    plan = prune_plan(
        X,
        y,
        proba=proba,
        classes=classes,
        radius=cur.duplicate_radius,
        margin=cur.prune_margin,
        max_confident_share=cur.prune_confident_share if proba is not None else 0.0,
    )
    if not len(plan):
        return None
    params: dict[str, object] = {"share": plan.share}
    if proba is not None:
        check = validate_plan(X, y, plan, CURATION_RECIPE, seed)
        params |= {
            "accuracy_before": check.accuracy_before,
            "accuracy_after": check.accuracy_after,
            "validation_items": check.n_validation,
        }
    candidates = [
        CandidateIn(
            item_id=int(labels[r.index].item_id),
            reason=r.reason,
            score=float(len(plan) - k),
            current_label=str(y[r.index]),
            detail={"duplicate_of": int(labels[r.kept].item_id)} if r.kept >= 0 else None,
        )
        for k, r in enumerate(plan.removals)
    ]
    with ctx.db.session() as s:
        pending, declined = _pending_items(s, "prune"), _declined(s, "prune")
        # A suspected label error is reviewed first, never pruned: removing it would hide
        # the error, and a wrong label makes an item look redundant to its neighbours.
        suspects = {item for item, _ in _pending_items(s, "label_errors")}
        fresh = [
            c
            for c in candidates
            if (c.item_id, None) not in pending
            and c.item_id not in suspects
            and (c.item_id, None, c.current_label) not in declined
        ]
        if not fresh:
            return None
        counts = Counter(c.reason for c in fresh)
        summary = (
            f"remove {len(fresh)} of {len(labels)} labeled items ("
            + ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in counts.items())
            + ")"
        )
        if "accuracy_before" in params:
            summary += (
                f"; validation accuracy {params['accuracy_before']:.3f} -> "
                f"{params['accuracy_after']:.3f} without them"
            )
        return record_operation(
            s,
            "prune",
            fresh,
            summary=summary,
            params=params,
            cycle_id=cycle_id,
            created_by=created_by,
        )


# -- classes -------------------------------------------------------------------------------


def split_operation(
    ctx: LoopContext,
    label: str,
    *,
    names: Sequence[str] | None = None,
    n_classes: int | None = None,
    created_by: str | None = None,
    seed: int = 0,
) -> CurationOperation:
    """Propose splitting class ``label`` by clustering its verified exemplars' embeddings
    (:func:`~exemplar.curation.propose_split`); a reviewer confirms the assignment in bulk.

    ``names`` names the new classes (their count sets ``n_classes``); without either, the
    number is chosen by silhouette (:func:`~exemplar.curation.choose_n_classes`).
    """
    if label not in ctx.classes:
        raise CurationError(f"unknown class {label!r}; the classes are {', '.join(ctx.classes)}")
    ex = _exemplars(ctx, label)
    if ex.labels.size < 4:
        raise CurationError(
            f"class {label!r} has {ex.labels.size} verified exemplar(s); a split needs at least 4"
        )
    if names is not None:
        n_classes = len(names)
        clash = sorted(set(names) & (set(ctx.classes) - {label}))
        if clash or len(set(names)) != len(names):
            raise CurationError(
                f"new class names must be distinct and new: {', '.join(clash) or 'repeated'}"
            )
    if n_classes is None:
        n_classes = choose_n_classes(ex.X, seed=seed)
    names = list(names or [f"{label}_{k + 1}" for k in range(n_classes)])
    proposal = propose_split(ex.X, n_classes=n_classes, names=names, seed=seed)
    candidates = [
        CandidateIn(
            item_id=int(ex.item_ids[i]),
            object_id=None if ex.object_ids is None else int(ex.object_ids[i]),
            reason="split",
            score=float(proposal.margin[i]),
            current_label=label,
            suggested_label=proposal.assignment[i],
        )
        for i in range(ex.labels.size)
    ]
    if ex.object_ids is not None:  # hard negatives and open proposals follow their nearest class
        others = _other_objects(ctx, [label])
        if others:
            exemplars = _object_crops(ctx, _annotations(ctx, ex.object_ids))
            X = _unit_rows(_object_embedding(_object_crops(ctx, others), exemplars))
            nearest = (X @ proposal.centroids.T).argmax(axis=1)
            candidates += [
                CandidateIn(
                    item_id=a.item_id,
                    object_id=a.object_id,
                    reason=f"split_{a.status}",
                    current_label=label,
                    suggested_label=names[int(k)],
                )
                for a, k in zip(others, nearest, strict=True)
            ]
    at = ctx.classes.index(label)
    after = [*ctx.classes[:at], *names, *ctx.classes[at + 1 :]]
    with ctx.db.session() as s:
        return record_operation(
            s,
            "split",
            candidates,
            summary=f"split {label!r} into {', '.join(names)} ({ex.labels.size} exemplars)",
            params={
                "class": label,
                "into": names,
                "classes_before": list(ctx.classes),
                "classes_after": after,
                "silhouette": proposal.silhouette,
            },
            created_by=created_by,
        )


def merge_operation(
    ctx: LoopContext,
    sources: Sequence[str],
    into: str,
    *,
    created_by: str | None = None,
) -> CurationOperation:
    """Propose merging ``sources`` into class ``into``: every verified label (or object) of
    them is relabeled when applied; the old labels stay in history."""
    mapping = merge_mapping(ctx.classes, {into: list(sources)})
    after = list(dict.fromkeys(mapping[c] for c in ctx.classes))
    ex = _exemplars(ctx)
    candidates = [
        CandidateIn(
            item_id=int(ex.item_ids[i]),
            object_id=None if ex.object_ids is None else int(ex.object_ids[i]),
            reason="merge",
            current_label=str(ex.labels[i]),
            suggested_label=into,
        )
        for i in range(ex.labels.size)
        if ex.labels[i] in sources and ex.labels[i] != into
    ]
    if ex.object_ids is not None:  # hard negatives and open proposals are renamed too
        candidates += [
            CandidateIn(
                item_id=a.item_id,
                object_id=a.object_id,
                reason=f"merge_{a.status}",
                current_label=a.label,
                suggested_label=into,
            )
            for a in _other_objects(ctx, [c for c in sources if c != into])
        ]
    with ctx.db.session() as s:
        return record_operation(
            s,
            "merge",
            candidates,
            summary=f"merge {', '.join(sources)} into {into!r} ({len(candidates)} labels)",
            params={
                "classes": list(sources),
                "into": into,
                "classes_before": list(ctx.classes),
                "classes_after": after,
            },
            created_by=created_by,
        )


def apply_curation(
    ctx: LoopContext, operation_id: int, *, reviewer: str, accept_pending: bool = False
) -> ApplyReport:
    """Apply an operation (its accepted candidates; all pending ones with
    ``accept_pending``), changing the class list for a split or merge."""
    finish_class_change(ctx)
    with ctx.db.read() as s:
        op = get_operation(s, operation_id)
        kind, params, status = op.kind, dict(op.params), op.status
    if status != CurationStatus.PROPOSED:
        raise CurationConflict(
            f"cannot apply operation {operation_id}: it is {status}, not proposed"
        )
    if kind in ("split", "merge"):
        # The loop (and a server's learner) must not train while the class list changes.
        with project_lock(ctx.root):
            before, after = list(params["classes_before"]), list(params["classes_after"])
            _check_classes(ctx, before, operation_id)
            after += [c for c in ctx.classes if c not in before + after]  # added since
            _write_classes(ctx, list(dict.fromkeys(before + after)))
            crash_point(f"curate:apply:{operation_id}:classes")
            with ctx.db.session() as s:
                report = apply_operation(
                    s, operation_id, reviewer=reviewer, classes=after, accept_pending=accept_pending
                )
            crash_point(f"curate:apply:{operation_id}:committed")
            _write_classes(ctx, after)
            return report
    with ctx.db.session() as s:
        return apply_operation(
            s, operation_id, reviewer=reviewer, classes=ctx.classes, accept_pending=accept_pending
        )


def undo_curation(ctx: LoopContext, operation_id: int, *, reviewer: str) -> ApplyReport:
    """Undo an applied operation: the labels it replaced are appended again (and, for a
    split or merge, the class list is restored)."""
    finish_class_change(ctx)
    with ctx.db.read() as s:
        op = get_operation(s, operation_id)
        kind, params = op.kind, dict(op.params)
    if kind in ("split", "merge"):
        with project_lock(ctx.root):
            before, after = list(params["classes_before"]), list(params["classes_after"])
            kept = [c for c in ctx.classes if c not in before + after]  # added since
            _write_classes(ctx, list(dict.fromkeys(before + after + kept)))
            crash_point(f"curate:undo:{operation_id}:classes")
            with ctx.db.session() as s:
                report = undo_operation(s, operation_id, reviewer=reviewer, classes=before + kept)
            crash_point(f"curate:undo:{operation_id}:committed")
            _write_classes(ctx, before + kept)
            return report
    with ctx.db.session() as s:
        return undo_operation(s, operation_id, reviewer=reviewer, classes=ctx.classes)


def finish_class_change(ctx: LoopContext) -> bool:
    """Finish a split or merge a crash interrupted around its database transaction: when
    ``[project] classes`` is exactly the interim list (old and new classes together) of
    the newest class operation, write the list its recorded state stands for (the new
    classes once applied; the old ones while proposed, dismissed or undone). Return
    whether the file was rewritten."""
    with ctx.db.read() as s:
        ops = [o for o in list_operations(s) if o.kind in ("split", "merge")]
    if not ops:
        return False
    newest = max(ops, key=lambda o: (o.updated_at, o.id))
    before, after = list(newest.params["classes_before"]), list(newest.params["classes_after"])
    interim = list(dict.fromkeys(before + after))
    final = after if newest.status == CurationStatus.APPLIED else before
    if list(ctx.classes) != interim or final == interim:
        return False
    _write_classes(ctx, final)
    return True


def _check_classes(ctx: LoopContext, before: list[str], operation_id: int) -> None:
    missing = [c for c in before if c not in ctx.classes]
    if missing:
        raise CurationConflict(
            f"operation {operation_id} was proposed for classes {', '.join(before)}, but "
            f"{', '.join(missing)} no longer exist; propose it again"
        )


def _write_classes(ctx: LoopContext, classes: list[str]) -> None:
    """Rewrite ``[project] classes`` (atomically) in the file as it reads now (other edits
    made since this process loaded it are kept), and in the loaded config."""
    path = ctx.root / CONFIG_NAME
    on_disk = load_config(path)
    ctx.config.project.classes = list(classes)
    if list(on_disk.project.classes) == classes:
        return
    on_disk.project.classes = list(classes)
    save_config(on_disk, path)


# -- the loop's curate state ---------------------------------------------------------------


def curate_cycle(
    ctx: LoopContext,
    cycle: Cycle,
    *,
    model: ModelAdapter | None,
    version: str | None,
    recipe: str | None,
    proba: Callable[[], np.ndarray | None],
) -> CurationFindings:
    """Run the steps of ``[curation] auto`` for ``cycle``, each once (a resumed cycle skips
    steps it recorded before a crash)."""
    cur = ctx.config.curation
    with ctx.db.session() as s:
        if cur.unverified == "expire":
            expire_label_proposals(
                s, cycle_number=cycle.number, expire_after=cur.expire_after, cycle_id=cycle.id
            )
        done = {o.kind for o in list_operations(s) if o.cycle_id == cycle.id}
        proposed_before = _proposed_in(s, cycle.id)
    if "propose" in cur.auto and model is not None and version and recipe and not proposed_before:
        propose(
            ctx,
            model,
            version,
            recipe,
            cycle_id=cycle.id,
            proba=None if _objects(ctx) else proba(),
            seed=cycle.seed,
        )
    steps: list[tuple[str, Callable[..., CurationOperation | None]]] = [
        ("label_errors", label_error_operation),
        ("prune", prune_operation),
    ]
    for kind, step in steps:
        if kind in cur.auto and kind not in done:
            step(ctx, cycle_id=cycle.id, seed=cycle.seed)
    return _findings(ctx, cycle.id)


def _findings(ctx: LoopContext, cycle_id: int) -> CurationFindings:
    """What the cycle's curate state recorded, read back from the rows (the same after a
    crash and resume as in one uninterrupted pass)."""
    with ctx.db.read() as s:
        labels = dict(
            s.execute(
                select(Label.strategy, func.count())
                .where(Label.cycle_id == cycle_id, Label.source == LabelSource.MODEL.value)
                .group_by(Label.strategy)
            ).all()
        )
        first = Annotation.id == Annotation.object_id
        model_rows = (Annotation.cycle_id == cycle_id) & (
            Annotation.source == LabelSource.MODEL.value
        )
        proposed = s.scalar(select(func.count()).where(model_rows & first)) or 0
        expired = (
            s.scalar(
                select(func.count()).where(
                    model_rows & ~first & (Annotation.status == AnnotationStatus.DELETED.value)
                )
            )
            or 0
        )
        operations = [o.id for o in reversed(list_operations(s)) if o.cycle_id == cycle_id]
    return CurationFindings(
        proposed=int(labels.get(f"{CURATION_TAG}:propose", 0)) + int(proposed),
        expired=int(labels.get(f"{CURATION_TAG}:expired", 0)) + int(expired),
        operations=operations,
    )


def _proposed_in(s: Session, cycle_id: int) -> bool:
    labels = s.scalar(
        select(Label.id)
        .where(
            Label.cycle_id == cycle_id,
            Label.source == LabelSource.MODEL.value,
            Label.strategy == f"{CURATION_TAG}:propose",
        )
        .limit(1)
    )
    objects = s.scalar(
        select(Annotation.id)
        .where(
            Annotation.cycle_id == cycle_id,
            Annotation.source == LabelSource.MODEL.value,
            Annotation.id == Annotation.object_id,
        )
        .limit(1)
    )
    return labels is not None or objects is not None
