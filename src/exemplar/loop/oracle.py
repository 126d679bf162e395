"""Oracles turn selected items into labels (DESIGN.md §2), behind one method.

A project's loop calls ``oracle.collect(cycle, entries)`` in its ``label`` state with the
cycle's open queue entries; the oracle labels what it can and returns None when the batch
is labeled, or a message saying what the loop waits for. :func:`make_oracle` picks the
oracle from ``[oracle] kind``:

* :class:`SimulatedOracle`: ground truth, optional noise and cost. The simulator uses the
  same class through :meth:`SimulatedOracle.query`, on an in-memory ground-truth array.
* :class:`FileOracle`: another tool's labels file, read each time the loop looks.
* :class:`HumanOracle`: people in the browser or the CLI; the loop waits for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exemplar.errors import ConfigError, InvalidIndicesError, ProjectError
from exemplar.loop.config import OracleSection
from exemplar.loop.context import LoopContext
from exemplar.loop.faults import crash_point
from exemplar.loop.labels_file import apply_labels_file
from exemplar.objects import box_iou, outline_mask
from exemplar.store.annotations import (
    OBJECTS_LABEL,
    AnnotationIn,
    AnnotationStatus,
    add_annotations,
    current_annotations,
    revise,
)
from exemplar.store.curation import class_renames
from exemplar.store.labels import add_label
from exemplar.store.schema import (
    OPEN_QUEUE_STATUSES,
    Annotation,
    Cycle,
    Item,
    LabelSource,
    QueueEntry,
    QueueStatus,
)

__all__ = [
    "ORACLE_ANNOTATOR",
    "FileOracle",
    "HumanOracle",
    "Oracle",
    "SimulatedOracle",
    "make_oracle",
    "noisy_label",
]

#: Annotator name of the labels the simulated oracle writes into a project.
ORACLE_ANNOTATOR = "simulated-oracle"
#: A proposal matches a true object (detection tasks) at this IoU or more.
MATCH_IOU = 0.5


class Oracle(Protocol):
    """Labels a cycle's open queue entries, or says what the loop must wait for."""

    def collect(self, cycle: Cycle, entries: Sequence[QueueEntry]) -> str | None:
        """Label what can be labeled now; None once ``entries`` are all labeled, else why not."""
        ...


class SimulatedOracle:
    """Reveal ground-truth labels, one selected item at a time, with optional noise and cost.

    The oracle holds the ground truth; nothing else reads it, so a strategy sees a label
    only after selecting the item, exactly as with a human annotator. The noise of an
    item depends only on ``random_state`` and the item's key (its index in ``y_true``, or
    its item id in a project), so a resumed run, or another order of queries, reveals the
    same labels.

    Parameters
    ----------
    y_true : ndarray, optional
        Ground-truth label of every item, for :meth:`query` (the simulator). A project's
        oracle reads the ground truth of its items from the database instead.
    noise_rate : float, default=0
        Probability that a revealed label is replaced by a different class, uniformly.
    cost_per_label : float, default=0
        Added to :attr:`total_cost` for every label revealed (and to the cycle's
        ``oracle_cost`` metric in a project).
    random_state : int, optional
        Seed for the noise; None draws fresh entropy.
    classes : sequence, optional
        Classes a noisy label is drawn from (default: the distinct values of ``y_true``).
    context : LoopContext, optional
        The project whose queue :meth:`collect` labels.
    """

    def __init__(
        self,
        y_true: np.ndarray | None = None,
        noise_rate: float = 0.0,
        cost_per_label: float = 0.0,
        random_state: int | None = None,
        *,
        classes: Sequence[Any] | None = None,
        context: LoopContext | None = None,
    ) -> None:
        if not 0.0 <= noise_rate < 1.0:
            raise ConfigError(f"noise_rate must be in [0, 1), got {noise_rate}")
        if cost_per_label < 0:
            raise ConfigError(f"cost_per_label must be >= 0, got {cost_per_label}")
        self._y = None if y_true is None else np.asarray(y_true)
        if classes is not None:
            self._classes = list(classes)
        elif self._y is not None:
            self._classes = np.unique(self._y).tolist()
        elif context is not None:
            self._classes = list(context.classes)
        else:
            self._classes = []
        self.noise_rate = noise_rate
        self.cost_per_label = cost_per_label
        self.random_state = (
            int(np.random.SeedSequence().generate_state(1)[0])
            if random_state is None
            else random_state
        )
        self.context = context
        self.n_queries = 0

    @property
    def total_cost(self) -> float:
        """Cost of every label revealed so far."""
        return self.n_queries * self.cost_per_label

    def reveal(self, key: int, truth: Any) -> Any:
        """The label the oracle gives for the item ``key`` whose ground truth is ``truth``."""
        self.n_queries += 1
        if self.noise_rate <= 0:
            return truth
        rng = np.random.default_rng([self.random_state, int(key)])
        return noisy_label(truth, self._classes, self.noise_rate, rng)

    def query(self, indices: np.ndarray) -> np.ndarray:
        """Labels of ``indices`` of ``y_true``, possibly corrupted by noise."""
        if self._y is None:
            raise ProjectError("this oracle has no ground-truth array; it labels a project queue")
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self._y.size):
            raise InvalidIndicesError(f"oracle asked for an index outside 0..{self._y.size - 1}")
        labels = self._y[idx].copy()
        for pos in range(idx.size):
            labels[pos] = self.reveal(int(idx[pos]), labels[pos])
        return labels

    def collect(self, cycle: Cycle, entries: Sequence[QueueEntry]) -> str | None:
        """Label every entry from its item's ground truth, one transaction per label.

        Each label records the entry's provenance and adds ``cost_per_label`` to the
        cycle's ``oracle_cost``; crash point ``label:<cycle>:<k>`` follows the k-th commit.
        """
        context = self._context()
        if context.config.project.objects:
            self._collect_objects(context, cycle, entries)
            return None
        with context.db.read() as s:
            renames = class_renames(s)  # a merged class is answered by its new name
        for k, entry in enumerate(entries):
            with context.db.session() as s:
                item = s.get_one(Item, entry.item_id)
                if item.ground_truth is None:
                    raise ProjectError(
                        f"item {item.id} ({item.uri}) has no ground truth for the simulated "
                        "oracle; import with `--labels-as ground_truth`, or use oracle kind "
                        "'human'"
                    )
                label = self.reveal(item.id, item.ground_truth)
                label = renames.get(label, label)
                if label not in context.classes:
                    raise ProjectError(
                        f"item {item.id}: its ground truth {label!r} is no longer a class "
                        f"(the classes are {', '.join(context.classes)}); a split replaced "
                        "it, and the simulated oracle cannot tell which new class it "
                        "belongs to: label the rest with oracle kind 'human', or undo the "
                        "split (`exemplar curate undo`)"
                    )
                self._answer(s, cycle, entry, label, context.classes)
            crash_point(f"label:{cycle.number}:{k}")
        return None

    def _collect_objects(
        self, context: LoopContext, cycle: Cycle, entries: Sequence[QueueEntry]
    ) -> None:
        """Label each entry's image as an expert correcting the model's proposals would.

        A proposal that matches a ground-truth object (same class, IoU at least
        :data:`MATCH_IOU`, best confidence first) is verified, moved onto the true outline;
        the other proposals are rejected; true objects no proposal found are drawn. With
        ``noise_rate``, each true object is missed with that probability (seeded per item
        and object). One transaction per image, as for classification.
        """
        for k, entry in enumerate(entries):
            with context.db.session() as s:
                item = s.get_one(Item, entry.item_id)
                if item.ground_truth != OBJECTS_LABEL:
                    raise ProjectError(
                        f"item {item.id} ({item.uri}) has no ground-truth objects for the "
                        "simulated oracle; import annotations with `--labels-as ground_truth`, "
                        "or use oracle kind 'human'"
                    )
                truth = current_annotations(s, [item.id], statuses=(AnnotationStatus.GROUND_TRUTH,))
                if self.noise_rate > 0:
                    rng = np.random.default_rng([self.random_state, item.id])
                    truth = [t for t in truth if rng.random() >= self.noise_rate]
                proposals = current_annotations(s, [item.id], statuses=(AnnotationStatus.PROPOSED,))
                self._settle(s, context, cycle, item.id, truth, proposals)
                self.n_queries += 1
                self._answer(s, cycle, entry, OBJECTS_LABEL, [OBJECTS_LABEL])
            crash_point(f"label:{cycle.number}:{k}")

    def _answer(
        self,
        s: Session,
        cycle: Cycle,
        entry: QueueEntry,
        label: Any,
        classes: Sequence[str],
    ) -> None:
        """Write the item's label with the entry's provenance, close the entry and add the
        label's cost to the cycle, in the caller's transaction."""
        add_label(
            s,
            entry.item_id,
            label,
            classes=classes,
            source=LabelSource.SIMULATED,
            annotator=ORACLE_ANNOTATOR,
            cycle_id=cycle.id,
            strategy=entry.strategy,
            score=entry.score,
        )
        row = s.get_one(QueueEntry, entry.id)
        row.status = QueueStatus.DONE
        row.annotator = ORACLE_ANNOTATOR
        cyc = s.get_one(Cycle, cycle.id)
        cost = float(cyc.metrics.get("oracle_cost", 0.0)) + self.cost_per_label
        cyc.metrics = {**cyc.metrics, "oracle_cost": cost}

    @staticmethod
    def _settle(
        s: Session,
        context: LoopContext,
        cycle: Cycle,
        item_id: int,
        truth: Sequence[Annotation],
        proposals: Sequence[Annotation],
    ) -> None:
        """Verify matching proposals, reject the rest, draw what no proposal found."""
        classes = context.classes
        ranked = sorted(proposals, key=lambda p: -(p.confidence or 0.0))
        iou = box_iou(
            np.asarray([[p.x0, p.y0, p.x1, p.y1] for p in ranked], np.float32),
            np.asarray([[t.x0, t.y0, t.x1, t.y1] for t in truth], np.float32),
        )
        taken: set[int] = set()
        for i, proposal in enumerate(ranked):
            best, best_iou = None, MATCH_IOU
            for j, true in enumerate(truth):
                if j not in taken and true.label == proposal.label and iou[i, j] >= best_iou:
                    best, best_iou = j, float(iou[i, j])
            if best is None:
                revise(
                    s,
                    proposal.object_id,
                    annotator=ORACLE_ANNOTATOR,
                    status=AnnotationStatus.REJECTED,
                    source=LabelSource.SIMULATED,
                    classes=classes,
                )
                continue
            true = truth[best]
            shape = _outline_as(proposal.geometry, true, s)
            if shape is _NO_FIT:  # a proposal that cannot hold the true outline
                revise(
                    s,
                    proposal.object_id,
                    annotator=ORACLE_ANNOTATOR,
                    status=AnnotationStatus.REJECTED,
                    source=LabelSource.SIMULATED,
                    classes=classes,
                )
                continue
            taken.add(best)
            revise(
                s,
                proposal.object_id,
                annotator=ORACLE_ANNOTATOR,
                status=AnnotationStatus.VERIFIED,
                box=(true.x0, true.y0, true.x1, true.y1),
                shape=shape,
                source=LabelSource.SIMULATED,
                classes=classes,
            )
        drawn = [
            AnnotationIn(
                label=t.label,
                box=(t.x0, t.y0, t.x1, t.y1),
                geometry=t.geometry,
                shape=t.shape,
            )
            for j, t in enumerate(truth)
            if j not in taken
        ]
        if drawn:
            add_annotations(
                s,
                item_id,
                drawn,
                status=AnnotationStatus.VERIFIED,
                source=LabelSource.SIMULATED,
                annotator=ORACLE_ANNOTATOR,
                cycle_id=cycle.id,
                classes=classes,
            )

    def _context(self) -> LoopContext:
        if self.context is None:
            raise ProjectError("this oracle holds a ground-truth array; it has no project queue")
        return self.context


class FileOracle:
    """Labels from another tool's labels file (CSV or JSON), applied to queued items only.

    Parameters
    ----------
    context : LoopContext
        The project.
    path : Path
        The labels file; a relative path is read from the project folder.
    """

    def __init__(self, context: LoopContext, path: Path) -> None:
        self.context = context
        self.shown = path
        self.path = path if path.is_absolute() else context.root / path

    def collect(self, cycle: Cycle, entries: Sequence[QueueEntry]) -> str | None:
        """Apply the file if it exists; None when no entry is left open."""
        if self.path.exists():
            apply_labels_file(self.context, self.path, only_queued=True)
        left = _still_open(self.context, entries)
        if left == 0:
            return None
        return _waiting(cycle, left, f"add them to {self.shown}")


class HumanOracle:
    """People label through the web queue, ``exemplar label`` or ``exemplar import-labels``."""

    def __init__(self, context: LoopContext) -> None:
        self.context = context

    def collect(self, cycle: Cycle, entries: Sequence[QueueEntry]) -> str | None:
        """Nothing to do here but wait: the message says how to label the batch."""
        how = "label them with `exemplar label` or `exemplar import-labels FILE`"
        return _waiting(cycle, len(entries), how)


#: :func:`_outline_as` when a proposal's geometry cannot hold the true outline.
_NO_FIT: Any = object()


def _outline_as(geometry: str, true: Annotation, s: Session) -> dict[str, Any] | None | Any:
    """The true object's outline in a proposal's geometry: none for a box, a mask of the
    image for a mask (from the truth's polygons, mask or box), its polygons for a polygon;
    :data:`_NO_FIT` when the truth has no polygons to give a polygon proposal."""
    if geometry == "box":
        return None
    shape = true.shape or {}
    if geometry == "polygon":
        return {"polygons": shape["polygons"]} if shape.get("polygons") else _NO_FIT
    item = s.get_one(Item, true.item_id)
    if item.width is None or item.height is None:
        return _NO_FIT
    box = (true.x0, true.y0, true.x1, true.y1)
    rle = outline_mask(
        shape.get("polygons"), shape.get("rle"), box, 1.0, (int(item.height), int(item.width))
    )
    return {"rle": rle}


def make_oracle(context: LoopContext, config: OracleSection) -> Oracle:
    """The oracle that ``[oracle] kind`` names, for ``context``'s queue."""
    if config.kind == "simulated":
        return SimulatedOracle(
            noise_rate=config.noise_rate,
            cost_per_label=config.cost_per_label,
            random_state=context.config.project.seed,
            classes=context.classes,
            context=context,
        )
    if config.kind == "file":
        return FileOracle(context, Path(config.path))
    return HumanOracle(context)


def noisy_label(
    truth: Any, classes: Sequence[Any], noise_rate: float, rng: np.random.Generator
) -> Any:
    """``truth``, or with probability ``noise_rate`` a different class chosen uniformly."""
    if noise_rate <= 0 or rng.random() >= noise_rate:
        return truth
    others = [c for c in classes if c != truth]
    return others[int(rng.integers(len(others)))] if others else truth


def _still_open(context: LoopContext, entries: Sequence[QueueEntry]) -> int:
    if not entries:
        return 0
    with context.db.read() as s:
        n = s.scalar(
            select(func.count())
            .select_from(QueueEntry)
            .where(
                QueueEntry.id.in_([e.id for e in entries]),
                QueueEntry.status.in_(OPEN_QUEUE_STATUSES),
            )
        )
    return int(n or 0)


def _waiting(cycle: Cycle, n: int, how: str) -> str:
    return f"cycle {cycle.number} waits for {n} label(s): {how}, then run `exemplar run` again"
