"""Tasks: what a cycle's train, compare and stop-check steps mean for each kind of labeling.

DESIGN.md §2: a task fixes the label schema, the prediction outputs it needs and how item
scores are aggregated. The loop engine runs the same recorded states for every task and asks
the project's task for the parts that differ:

* :class:`ClassificationTask`: one class per item; the Model Selector validates on class
  labels (accuracy, macro F1, log loss), and Compare checks the model on the new labels.
* :class:`ObjectTask` (detection and segmentation): an item's label is its set of objects
  (the verified annotations), the detector is validated by mAP on held-out labeled images,
  Compare measures mAP@0.5 and box F1 on the newly labeled batch, and the stop check reads
  each item's expected object count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sqlalchemy import select
from sqlalchemy.orm import Session

from exemplar.errors import ProjectError
from exemplar.loop.config import ModelSection
from exemplar.loop.context import LoopContext
from exemplar.loop.model_selector import (
    Candidate,
    CandidateResult,
    evaluate_candidates,
    evaluate_object_candidates,
)
from exemplar.metrics.detection import match_boxes, mean_average_precision
from exemplar.models import ModelAdapter, get_recipe
from exemplar.objects import Objects, outline_mask, rescale_objects
from exemplar.store.annotations import (
    OBJECTS_LABEL,
    TRACKER_VERSION_PREFIX,
    AnnotationIn,
    AnnotationStatus,
    add_annotations,
    current_annotations,
    revise,
)
from exemplar.store.db import id_chunks
from exemplar.store.labels import current_labels
from exemplar.store.schema import Annotation, Item, LabelSource, LabelStatus, Split

__all__ = [
    "ClassificationTask",
    "LabeledSet",
    "ObjectTask",
    "Task",
    "bind_files",
    "build_params",
    "make_task",
    "model_inputs",
    "predict_proposals",
    "reads_files",
    "to_objects",
    "write_proposals",
]


@dataclass
class LabeledSet:
    """The labeled items a cycle trains on.

    Attributes
    ----------
    item_ids, rows : ndarray of int64
        The items and their feature rows, by ascending row.
    y : ndarray of str
        Each item's class (classification) or the objects marker (object tasks).
    objects : list of Objects, optional
        Object tasks: each item's verified objects, in the model's pixel frame.
    negatives : list of Objects, optional
        Object tasks: each item's hard negatives (confident proposals a reviewer rejected).
    repeats : ndarray of int, optional
        Training only: how many times each item counts (curation's hard negatives and weak
        labels, ``[curation]``); None: once each.
    trusted : ndarray of bool, optional
        Training only: False for weak labels (unverified proposals), which are trained on
        but never validated against; None: all verified.
    """

    item_ids: np.ndarray
    rows: np.ndarray
    y: np.ndarray
    objects: list[Objects] | None = None
    negatives: list[Objects] | None = None
    repeats: np.ndarray | None = None
    trusted: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Labeled items."""
        return int(self.rows.size)

    @property
    def n_objects(self) -> int:
        """Labeled objects (0 for classification)."""
        return sum(len(o) for o in self.objects or [])


class Task(Protocol):
    """What differs between kinds of labeling inside one cycle."""

    def labeled(self, ctx: LoopContext, *, for_training: bool = False) -> LabeledSet:
        """The current training labels (pool and train splits); ``for_training`` asks for
        everything a fit reads (outlines as masks, for segmentation)."""
        ...

    def trainable(self, labeled: LabeledSet) -> bool:
        """Whether a model can be fitted yet (else the cycle picks a cold-start batch)."""
        ...

    def evaluate(
        self, ctx: LoopContext, labeled: LabeledSet, X: np.ndarray, seed: int
    ) -> list[CandidateResult]:
        """Fit and validate every candidate of ``[model]``."""
        ...

    def batch_metrics(
        self, ctx: LoopContext, model: ModelAdapter, item_ids: Sequence[int]
    ) -> dict[str, float]:
        """The model's quality on a newly labeled batch (the Compare step's KPI)."""
        ...

    def stop_predictions(self, predictions: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Per-item predictions the stabilizing criterion compares between cycles."""
        ...


class ClassificationTask:
    """One class per item (DESIGN.md §2)."""

    def labeled(self, ctx: LoopContext, *, for_training: bool = False) -> LabeledSet:
        """The verified labels; ``for_training`` adds what ``[curation]`` weighs in: hard
        negatives count ``hard_negative_weight`` times, and with ``unverified`` ``weak`` or
        ``expire``, confident open proposals join as weak labels."""
        with ctx.db.read() as s:
            if not for_training:
                rows = current_labels(s, splits=(Split.POOL, Split.TRAIN))
                return LabeledSet(
                    np.asarray([c.item_id for c in rows], dtype=np.int64),
                    np.asarray([c.row for c in rows], dtype=np.int64),
                    np.asarray([c.label for c in rows], dtype=object).astype(str),
                )
            everything = current_labels(s, verified_only=False, splits=(Split.POOL, Split.TRAIN))
        cur = ctx.config.curation
        weak_on = cur.unverified != "drop"
        verified_weight = round(1.0 / cur.weak_weight) if weak_on else 1
        kept, repeats, trusted = [], [], []
        for c in everything:
            if c.status == LabelStatus.VERIFIED:
                weight = verified_weight * (cur.hard_negative_weight if c.hard_negative else 1)
                kept.append(c)
                repeats.append(weight)
                trusted.append(True)
            elif (
                weak_on
                and c.source == LabelSource.MODEL
                and c.status == LabelStatus.PROPOSED
                and (c.confidence or 0.0) >= cur.weak_min_confidence
                and c.label in ctx.classes
            ):
                kept.append(c)
                repeats.append(1)
                trusted.append(False)
        plain = all(r == 1 for r in repeats) and all(trusted)
        return LabeledSet(
            np.asarray([c.item_id for c in kept], dtype=np.int64),
            np.asarray([c.row for c in kept], dtype=np.int64),
            np.asarray([c.label for c in kept], dtype=object).astype(str),
            repeats=None if plain else np.asarray(repeats, dtype=np.int64),
            trusted=None if plain else np.asarray(trusted, dtype=bool),
        )

    def trainable(self, labeled: LabeledSet) -> bool:
        return bool(np.unique(labeled.y).size >= 2)

    def evaluate(
        self, ctx: LoopContext, labeled: LabeledSet, X: np.ndarray, seed: int
    ) -> list[CandidateResult]:
        mcfg = ctx.config.model
        return evaluate_candidates(
            X,
            labeled.y,
            _candidates(mcfg),
            validation_fraction=mcfg.validation_fraction,
            min_validation_labels=mcfg.min_validation_labels,
            cv_folds=mcfg.cv_folds,
            seed=seed,
            device=mcfg.device,
            repeats=labeled.repeats,
            trusted=labeled.trusted,
        )

    def batch_metrics(
        self, ctx: LoopContext, model: ModelAdapter, item_ids: Sequence[int]
    ) -> dict[str, float]:
        wanted = set(item_ids)
        with ctx.db.read() as s:
            labels = {c.item_id: (c.row, c.label) for c in current_labels(s) if c.item_id in wanted}
        if not labels:
            return {}
        rows = np.asarray([r for r, _ in labels.values()], dtype=np.int64)
        truth = np.asarray([lab for _, lab in labels.values()])
        order = np.argsort(rows)
        pred = model.predict_labels(np.asarray(ctx.features()[rows[order]]))
        return {
            "accuracy": float(accuracy_score(truth[order], pred)),
            "macro_f1": float(f1_score(truth[order], pred, average="macro")),
            "n": int(rows.size),
        }

    def stop_predictions(self, predictions: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return classes[np.asarray(predictions).argmax(axis=1)]


class ObjectTask:
    """Detection and segmentation: an item's label is its set of objects.

    Annotations are stored in each image's own pixels; the model reads the image scaled by
    ``image_side / max(width, height)`` and padded (``[data] image_side``), so objects are
    scaled into that frame for training and back for proposals (:func:`to_objects`).
    """

    def __init__(self, segmentation: bool = False) -> None:
        self.segmentation = segmentation

    def labeled(
        self,
        ctx: LoopContext,
        *,
        for_training: bool = False,
        item_ids: Sequence[int] | None = None,
    ) -> LabeledSet:
        """The labeled images and their objects in the model's frame; outlines are
        rasterized only ``for_training`` a segmentation model; ``item_ids`` keeps only those
        images."""
        classes = ctx.classes
        side = ctx.config.data.image_side
        masks = side if self.segmentation and for_training else None
        cur = ctx.config.curation
        with ctx.db.read() as s:
            rows = current_labels(s, splits=(Split.POOL, Split.TRAIN))
            rows = [c for c in rows if c.label == OBJECTS_LABEL]
            if item_ids is not None:
                wanted = set(item_ids)
                rows = [c for c in rows if c.item_id in wanted]
            n_verified = len(rows)
            weak_on = for_training and item_ids is None and cur.unverified != "drop"
            weak = _weak_images(s, cur.weak_min_confidence, classes) if weak_on else {}
            ids = [c.item_id for c in rows] + list(weak)
            rows_of = [c.row for c in rows] + [row for row, _ in weak.values()]
            sizes = _item_sizes(s, ids)
            found = current_annotations(
                s, ids, statuses=(AnnotationStatus.VERIFIED, AnnotationStatus.HARD_NEGATIVE)
            )
        positive: dict[int, list[Annotation]] = defaultdict(list)
        negative: dict[int, list[Annotation]] = defaultdict(list)
        for ann in found:
            target = negative if ann.status == AnnotationStatus.HARD_NEGATIVE else positive
            target[ann.item_id].append(ann)
        for item_id, (_, proposals) in weak.items():
            positive[item_id].extend(proposals)  # beside any object verified on it already
        scales = [side / max(sizes[i]) for i in ids]
        repeats = trusted = None
        if weak:
            repeats = np.ones(len(ids), dtype=np.int64)
            repeats[:n_verified] = round(1.0 / cur.weak_weight)
            trusted = np.arange(len(ids)) < n_verified
        return LabeledSet(
            np.asarray(ids, dtype=np.int64),
            np.asarray(rows_of, dtype=np.int64),
            np.full(len(ids), OBJECTS_LABEL, dtype=object).astype(str),
            objects=[
                to_objects(positive[i], classes, scale, masks)
                for i, scale in zip(ids, scales, strict=True)
            ],
            negatives=[
                to_objects(negative[i], classes, scale, None)
                for i, scale in zip(ids, scales, strict=True)
            ],
            repeats=repeats,
            trusted=trusted,
        )

    def trainable(self, labeled: LabeledSet) -> bool:
        return labeled.n_objects > 0

    def evaluate(
        self, ctx: LoopContext, labeled: LabeledSet, X: np.ndarray, seed: int
    ) -> list[CandidateResult]:
        """Each candidate reads its own inputs (pixel rows, or the rows' image files);
        every candidate is validated on the same held-out images (drawn from ``seed``)."""
        mcfg = ctx.config.model
        assert labeled.objects is not None
        results = []
        for cand in _candidates(mcfg):
            results += evaluate_object_candidates(
                model_inputs(ctx, reads_files(cand.recipe), labeled.rows),
                labeled.objects,
                [cand],
                classes=ctx.classes,
                negatives=labeled.negatives,
                validation_fraction=mcfg.validation_fraction,
                seed=seed,
                device=mcfg.device,
                build=build_params(ctx, cand.recipe),
                segmentation=self.segmentation,
                prepare=lambda model: bind_files(ctx, model),
                repeats=labeled.repeats,
                trusted=labeled.trusted,
            )
        return results

    def batch_metrics(
        self, ctx: LoopContext, model: ModelAdapter, item_ids: Sequence[int]
    ) -> dict[str, float]:
        labeled = self.labeled(ctx, item_ids=item_ids)
        if not labeled.size:
            return {}
        assert labeled.objects is not None
        rows, truth = labeled.rows, labeled.objects
        predicted = model.predict_objects(  # type: ignore[attr-defined]
            model_inputs(ctx, hasattr(model, "bind_items"), rows)
        )
        ap = mean_average_precision(truth, predicted, ctx.classes)
        counts = match_boxes(truth, predicted, iou=0.5)
        return {
            "map50": float(ap["map50"]),
            "box_f1": float(counts["f1"]),
            "box_precision": float(counts["precision"]),
            "box_recall": float(counts["recall"]),
            "n": int(rows.size),
            "n_objects": int(sum(len(t) for t in truth)),
        }

    def stop_predictions(self, predictions: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Each item's expected object count, rounded: stable when the model stops changing
        how many objects it sees."""
        return np.rint(np.asarray(predictions, dtype=np.float64)).astype(np.int64)


def make_task(ctx: LoopContext) -> Task:
    """The task of a project (``[project] task``)."""
    task = ctx.config.project.task
    if task == "classification":
        return ClassificationTask()
    return ObjectTask(segmentation=task == "segmentation")


def to_objects(
    annotations: Sequence[Annotation],
    classes: Sequence[str],
    scale: float = 1.0,
    side: int | None = None,
) -> Objects:
    """Stored annotations as :class:`Objects`, boxes scaled by ``scale``.

    With ``side`` (segmentation), each object's outline becomes a mask of the model's
    ``side`` × ``side`` frame (COCO RLE).
    """
    if not annotations:
        return Objects.empty()
    index = {name: k for k, name in enumerate(classes)}
    unknown = sorted({a.label for a in annotations} - set(index))
    if unknown:
        raise ProjectError(
            f"item {annotations[0].item_id}: objects of class(es) {', '.join(unknown)}, which "
            f"[project] classes ({', '.join(classes)}) no longer lists; add the class back to "
            "exemplar.toml, or relabel them (`exemplar classes merge`), then run again"
        )
    boxes = np.asarray([[a.x0, a.y0, a.x1, a.y1] for a in annotations], np.float32) * scale
    labels = np.asarray([index[a.label] for a in annotations], np.int64)
    masks = None
    if side is not None:
        masks = [
            outline_mask(
                (a.shape or {}).get("polygons"),
                (a.shape or {}).get("rle"),
                (a.x0, a.y0, a.x1, a.y1),
                scale,
                (side, side),
            )
            for a in annotations
        ]
    return Objects(boxes, labels, masks=masks)


def predict_proposals(
    ctx: LoopContext,
    model: ModelAdapter,
    recipe: str,
    rows: Sequence[int] | np.ndarray,
    item_ids: Sequence[int] | np.ndarray,
) -> dict[int, Objects]:
    """The model's objects on the items at feature ``rows`` (``item_ids`` aligned), in the
    model's frame, by item id: what :func:`write_proposals` stores. Rows are read in
    ascending order (a memory map is read forward)."""
    if not len(rows):
        return {}
    order = np.argsort(np.asarray(rows))
    sorted_rows = np.asarray(rows, dtype=np.int64)[order]
    found = model.predict_objects(  # type: ignore[attr-defined]
        model_inputs(ctx, reads_files(recipe), sorted_rows)
    )
    return {int(item_ids[k]): objs for k, objs in zip(order, found, strict=True)}


def write_proposals(
    s: Session,
    proposals: dict[int, Objects],
    ctx: LoopContext,
    *,
    model_version: str | None,
    cycle_id: int | None,
) -> int:
    """Store a model's objects (in its frame) as proposals on their items (image pixels).

    Objects scoring below ``[model] proposal_threshold`` are left out. Proposals an older
    model left open on the same items (a stale queue entry dropped before anyone saw it)
    are withdrawn first (status ``deleted``), so an annotator sees one model's proposals;
    imported pre-annotations stay.
    Returns the proposals written.
    """
    min_score = ctx.config.model.proposal_threshold
    side = ctx.config.data.image_side
    classes = ctx.classes
    open_proposals = current_annotations(s, list(proposals), statuses=(AnnotationStatus.PROPOSED,))
    withdrawn = (
        p
        for p in open_proposals
        if p.source == LabelSource.MODEL
        # a tracker's boxes are a person's video work (exemplar.project.video): kept
        and not (p.model_version or "").startswith(TRACKER_VERSION_PREFIX)
    )
    for old in withdrawn:
        revise(
            s,
            old.object_id,
            annotator=None,
            status=AnnotationStatus.DELETED,
            source=LabelSource.MODEL,
            classes=classes,
        )
    sizes = _item_sizes(s, list(proposals))
    written = 0
    for item_id, found in proposals.items():
        width, height = sizes[item_id]
        scale = side / max(width, height)
        kept = rescale_objects(found.above(min_score), 1.0 / scale, (height, width))
        rows = [
            AnnotationIn(
                label=classes[int(c)],
                box=tuple(float(v) for v in box),
                geometry="box" if kept.masks is None else "mask",
                shape=None if kept.masks is None else {"rle": dict(kept.masks[k])},
                confidence=None if kept.scores is None else float(kept.scores[k]),
            )
            for k, (box, c) in enumerate(zip(kept.boxes, kept.classes, strict=True))
        ]
        if rows:
            add_annotations(
                s,
                item_id,
                rows,
                status=AnnotationStatus.PROPOSED,
                source=LabelSource.MODEL,
                model_version=model_version,
                cycle_id=cycle_id,
                classes=classes,
            )
            written += len(rows)
    return written


def _weak_images(
    s: Session, min_confidence: float, classes: Sequence[str]
) -> dict[int, tuple[int, list[Annotation]]]:
    """Unlabeled images whose every open proposal is a model's, at least ``min_confidence``
    sure: weak training images (``[curation] unverified``), by item id, with their row."""
    labeled = {
        c.item_id for c in current_labels(s, verified_only=False) if c.source != LabelSource.MODEL
    }
    by_item: dict[int, list[Annotation]] = defaultdict(list)
    for ann in current_annotations(s, statuses=(AnnotationStatus.PROPOSED,)):
        if ann.item_id not in labeled:
            by_item[ann.item_id].append(ann)
    confident = {
        i: anns
        for i, anns in by_item.items()
        if all(
            a.source == LabelSource.MODEL
            and (a.confidence or 0.0) >= min_confidence
            and a.label in classes
            for a in anns
        )
    }
    rows = {
        item_id: row
        for part in id_chunks(list(confident))
        for item_id, row in s.execute(
            select(Item.id, Item.row).where(
                Item.id.in_(part), Item.split.in_([Split.POOL, Split.TRAIN])
            )
        )
    }
    return {i: (rows[i], confident[i]) for i in sorted(rows)}


def _item_sizes(s: Session, item_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    sizes: dict[int, tuple[int, int]] = {}
    for start in range(0, len(item_ids), 500):
        part = list(item_ids[start : start + 500])
        for item_id, width, height in s.execute(
            select(Item.id, Item.width, Item.height).where(Item.id.in_(part))
        ):
            if not width or not height:
                raise ProjectError(
                    f"item {item_id} has no recorded image size, so its objects cannot be "
                    "placed in the detector's frame; it was imported into a classification "
                    "project or by an older version: import its images into a new detection "
                    "project"
                )
            sizes[item_id] = (int(width), int(height))
    return sizes


def _candidates(mcfg: ModelSection) -> list[Candidate]:
    return [Candidate(c.recipe, dict(c.params)) for c in mcfg.candidates]


def build_params(ctx: LoopContext, recipe: str) -> dict[str, Any]:
    """What every detector candidate of a project is built with: the image side and
    channels of the project's frame; an external trainer also gets a lasting work folder
    in the project (its checkpoints point into it)."""
    data = ctx.config.data
    params: dict[str, Any] = {"image_side": data.image_side, "channels": data.channels}
    if reads_files(recipe):
        params["workdir"] = str(ctx.root / "external")
    return params


def reads_files(recipe: str) -> bool:
    """Whether models of ``recipe`` read the items' image files (the external trainer)."""
    return get_recipe(recipe).reads_files


def model_inputs(ctx: LoopContext, files: bool, rows: np.ndarray | None = None) -> np.ndarray:
    """What a model reads for the items at feature ``rows`` (all when None).

    Pixel rows for the built-in detector (memory-mapped when all rows are asked for); with
    ``files`` (a model that reads the items' image files, the external trainer), the row
    numbers themselves, bound to those files by :func:`bind_files`.
    """
    if files:
        return np.arange(ctx.n_rows, dtype=np.int64) if rows is None else np.asarray(rows)
    features = ctx.features()
    return features if rows is None else np.asarray(features[np.asarray(rows)])


def bind_files(ctx: LoopContext, model: ModelAdapter) -> ModelAdapter:
    """Tell a model that reads image files (``bind_items``) the file and size of every
    row; other models are returned as they are."""
    bind = getattr(model, "bind_items", None)
    if bind is None:
        return model
    paths: list[str] = [""] * ctx.n_rows
    sizes: list[tuple[int, int] | None] = [None] * ctx.n_rows  # None: read from the file
    with ctx.db.read() as s:
        for row, uri, width, height in s.execute(
            select(Item.row, Item.uri, Item.width, Item.height).where(Item.row < ctx.n_rows)
        ):
            paths[row] = uri
            sizes[row] = (int(width), int(height)) if width and height else None
    bind(paths, sizes)
    return model
