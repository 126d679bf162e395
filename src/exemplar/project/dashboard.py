"""The dashboard service: class coverage, throughput, learning curves, cycle, model, stopping.

The server's ``GET /api/v1/dashboard`` returns :func:`dashboard`; ``exemplar curve`` prints
:func:`learning_curve_vs_random`. The learning curve of the active-learning picks against a
random control arm (queue entries or labels with strategy ``random-control``) is measured
on the gold set (items of split ``test``); without a gold set, checkpoints or a control
arm it says why in ``note`` instead of drawing anything. :func:`stopping_progress`
describes each stopping criterion in words, with how far the project is towards it.

Detection and segmentation projects (``[project] task``) count verified **objects** per
class, draw the validation curve by the Model Selector's criterion (mAP@0.5 or
mAP@[.5:.95]), count both images and objects per annotator, and measure the gold-set
curve by COCO mAP@0.5 (mask AP for segmentation) of each checkpoint's objects against the
gold images' verified objects, or their hidden ground truth when they are not labeled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlalchemy import select

from exemplar.errors import ExemplarError
from exemplar.loop.tasks import bind_files, build_params, model_inputs, reads_files, to_objects
from exemplar.metrics.detection import mean_average_precision
from exemplar.models import ModelAdapter, load_model, make_model
from exemplar.objects import Objects
from exemplar.project.model_view import load_detector, predict_item_objects
from exemplar.project.project import Project
from exemplar.stopping import make_criterion
from exemplar.store.annotations import (
    COUNTED_STATUSES,
    OBJECTS_LABEL,
    AnnotationStatus,
    current_annotations,
    objects_labeled,
)
from exemplar.store.labels import current_labels
from exemplar.store.schema import (
    Annotation,
    Cycle,
    Item,
    Label,
    LabelSource,
    LabelStatus,
    ModelVersion,
    QueueEntry,
    Split,
)

__all__ = [
    "CONTROL_STRATEGY",
    "RARE_ABSOLUTE",
    "RARE_RELATIVE",
    "dashboard",
    "learning_curve_vs_random",
    "rare_classes",
    "stopping_progress",
    "throughput",
]

log = logging.getLogger("exemplar.project")

#: The strategy name of the random control arm's picks.
CONTROL_STRATEGY = "random-control"
#: A class with fewer verified labels than this is rare ...
RARE_ABSOLUTE = 5
#: ... and so is one with fewer than this fraction of the mean count per class.
RARE_RELATIVE = 0.2


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def rare_classes(per_class: dict[str, int]) -> list[str]:
    """Classes with fewer than ``RARE_ABSOLUTE`` labels or ``RARE_RELATIVE`` of the mean."""
    if not per_class:
        return []
    mean = sum(per_class.values()) / len(per_class)
    return [name for name, n in per_class.items() if n < RARE_ABSOLUTE or n < RARE_RELATIVE * mean]


def throughput(project: Project, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Human labels per annotator: count and labels/hour over the last 24 h and overall.

    The overall rate divides by the hours between an annotator's first and last label, at
    least one hour (so a handful of quick labels does not read as thousands an hour).
    In a detection or segmentation project a label is one image, and each row also counts
    the annotator's **objects** (boxes or outlines confirmed or drawn: annotation rows of
    status verified or hard negative): ``objects``, ``objects_24h``,
    ``objects_per_hour_24h`` and ``objects_per_hour_overall``, over the same hours.
    """
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=24)
    objects = project.config.project.objects
    with project.db.read() as s:
        rows = s.execute(
            select(Label.annotator, Label.created_at).where(
                Label.source == LabelSource.HUMAN, Label.annotator.is_not(None)
            )
        ).all()
        boxes = (
            s.execute(
                select(Annotation.annotator, Annotation.created_at).where(
                    Annotation.source == LabelSource.HUMAN,
                    Annotation.annotator.is_not(None),
                    Annotation.status.in_(COUNTED_STATUSES),
                )
            ).all()
            if objects
            else []
        )
    times: dict[str, list[datetime]] = defaultdict(list)
    for annotator, created in rows:
        times[str(annotator)].append(_aware(created))
    object_times: dict[str, list[datetime]] = defaultdict(list)
    for annotator, created in boxes:
        object_times[str(annotator)].append(_aware(created))
    out = []
    for name in sorted(set(times) | set(object_times)):
        stamps = sorted(times[name])
        drawn = sorted(object_times[name])
        span = sorted(stamps + drawn)
        hours = max((span[-1] - span[0]).total_seconds() / 3600.0, 1.0)
        recent = sum(1 for t in stamps if t >= since)
        row: dict[str, Any] = {
            "annotator": name,
            "labels": len(stamps),
            "labels_24h": recent,
            "per_hour_24h": round(recent / 24.0, 3),
            "per_hour_overall": round(len(stamps) / hours, 3),
            "last_label_at": span[-1].isoformat(),
        }
        if objects:
            recent_objects = sum(1 for t in drawn if t >= since)
            row.update(
                objects=len(drawn),
                objects_24h=recent_objects,
                objects_per_hour_24h=round(recent_objects / 24.0, 3),
                objects_per_hour_overall=round(len(drawn) / hours, 3),
            )
        out.append(row)
    return out


def _accuracy(model: ModelAdapter, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(model.predict_labels(X)).astype(str) == y))


def learning_curve_vs_random(project: Project) -> dict[str, Any]:
    """Accuracy on the gold set per cycle: the loop's checkpoints vs the random control arm.

    Returns ``{"gold_size", "active", "random", "note"}``; ``active`` and ``random`` are
    lists of ``{"cycle", "n_labels", "accuracy"}``. ``active`` evaluates each cycle's
    checkpoint that still exists on disk. ``random`` (only if a ``random-control`` arm
    exists) refits the cycle's model recipe on the labels the control arm had by then
    (its picks plus the shared random seed batch) and evaluates it on the same gold set.

    In a detection or segmentation project the points carry ``map50`` (COCO mAP@0.5, mask
    AP for segmentation) and ``map`` (mAP@[.5:.95]) instead of ``accuracy``, the result
    names its ``metric`` (``"map50"``) and ``gold_objects``, and ``n_labels`` counts images
    (``n_objects`` their objects); see :func:`_object_curve`.
    """
    if project.config.project.objects:
        return _object_curve(project)
    result: dict[str, Any] = {"gold_size": 0, "active": [], "random": [], "note": None}
    with project.db.read() as s:
        gold = list(s.scalars(select(Item).where(Item.split == Split.TEST).order_by(Item.row)))
        labels = current_labels(s, verified_only=True, splits=[Split.TEST])
        label_of = {c.item_id: c.label for c in labels}
        cycles = list(s.scalars(select(Cycle).order_by(Cycle.number)))
        versions = {v.id: v for v in s.scalars(select(ModelVersion))}
        has_control = (
            s.scalars(
                select(QueueEntry.id).where(QueueEntry.strategy == CONTROL_STRATEGY).limit(1)
            ).first()
            is not None
            or s.scalars(
                select(Label.id).where(Label.strategy == CONTROL_STRATEGY).limit(1)
            ).first()
            is not None
        )
        control_rows = [
            (lab.item_id, lab.label, lab.cycle_id)
            for lab in s.scalars(
                select(Label)
                .where(
                    Label.strategy.in_([CONTROL_STRATEGY, "random"]),
                    Label.status == LabelStatus.VERIFIED,
                    Label.label.is_not(None),
                )
                .order_by(Label.id)
            )
        ]
        row_of = dict(s.execute(select(Item.id, Item.row)).all())
    truth = [(g.row, label_of.get(g.id) or g.ground_truth) for g in gold]
    truth = [(r, t) for r, t in truth if t is not None]
    result["gold_size"] = len(truth)
    if not truth:
        result["note"] = "no gold set: label items of split 'test' to measure the curve"
        return result
    features = project.features()
    X_gold = np.asarray(features[[r for r, _ in truth]], dtype=np.float64)
    y_gold = np.asarray([str(t) for _, t in truth])
    notes = []
    number_of = {c.id: c.number for c in cycles}
    for cycle in cycles:
        version = versions.get(cycle.model_version_id) if cycle.model_version_id else None
        if version is None:
            continue
        path = project.root / version.path
        if not path.is_file():
            notes.append(f"checkpoint of cycle {cycle.number} was pruned")
            continue
        # Checkpoints are written by this project only (DESIGN.md §4), never untrusted input.
        try:
            model = load_model(version.recipe, path, device=project.config.model.device)
        except ExemplarError as exc:  # must not break the dashboard
            notes.append(f"checkpoint of cycle {cycle.number} cannot be read: {exc}")
            continue
        result["active"].append(
            {
                "cycle": cycle.number,
                "n_labels": version.n_labels,
                "accuracy": _accuracy(model, X_gold, y_gold),
            }
        )
        if not has_control:
            continue
        # Newest label per item among the control arm's rows up to this cycle.
        picked: dict[int, str] = {}
        for item_id, label, cycle_id in control_rows:
            if cycle_id is None or number_of.get(cycle_id, 0) <= cycle.number:
                picked[item_id] = str(label)
        if len(set(picked.values())) < 2:
            continue
        X = np.asarray(features[[row_of[i] for i in picked]], dtype=np.float64)
        y = np.asarray(list(picked.values()))
        try:
            control = make_model(
                version.recipe, cycle.seed, device=project.config.model.device, **version.params
            ).fit(X, y)
        except (ValueError, ExemplarError) as exc:  # must not break the dashboard
            log.warning("random-control fit for cycle %d failed: %s", cycle.number, exc)
            continue
        result["random"].append(
            {
                "cycle": cycle.number,
                "n_labels": len(picked),
                "accuracy": _accuracy(control, X_gold, y_gold),
            }
        )
    if not has_control:
        notes.append("no random-control arm in this project")
    if not result["active"] and not notes:
        notes.append("no model checkpoint yet")
    result["note"] = "; ".join(notes) or None
    return result


#: Predictions on the gold images, by the model that made them and the images asked:
#: the dashboard asks again on every refresh, and a checkpoint (or a control refit on the
#: same labels and seed) never changes, so its objects on the same images are kept.
_GOLD_PREDICTIONS: OrderedDict[tuple[Any, ...], list[Objects]] = OrderedDict()
#: Entries kept in ``_GOLD_PREDICTIONS``.
GOLD_CACHE_SIZE = 64


def _remember(key: tuple[Any, ...], predict: Any) -> list[Objects]:
    """``predict()``'s objects, from ``_GOLD_PREDICTIONS`` when they were made before."""
    if key in _GOLD_PREDICTIONS:
        _GOLD_PREDICTIONS.move_to_end(key)
        return _GOLD_PREDICTIONS[key]
    found = list(predict())
    _GOLD_PREDICTIONS[key] = found
    while len(_GOLD_PREDICTIONS) > GOLD_CACHE_SIZE:
        _GOLD_PREDICTIONS.popitem(last=False)
    return found


def _digest(objects: Sequence[Objects], ids: Sequence[int]) -> str:
    """A fingerprint of images ``ids`` and their objects (what a refit trains on)."""
    h = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes())
    for o in objects:
        h.update(o.boxes.tobytes())
        h.update(o.classes.tobytes())
        h.update(json.dumps(list(o.masks or []), sort_keys=True).encode())
    return h.hexdigest()


def _frame_objects(
    annotations: Sequence[Annotation],
    size: tuple[int, int],
    project: Project,
    segm: bool,
) -> Objects:
    """Stored annotations of one image in the model's frame (what the detector predicts)."""
    side = project.config.data.image_side
    return to_objects(annotations, project.classes, side / max(size), side if segm else None)


def _gold_ap(
    truth: Sequence[Objects], predicted: Sequence[Objects], project: Project, segm: bool
) -> dict[str, float]:
    ap = mean_average_precision(truth, predicted, project.classes, segm=segm)
    return {"map50": float(ap["map50"]), "map": float(ap["map"])}


def _object_curve(project: Project) -> dict[str, Any]:
    """:func:`learning_curve_vs_random` for a detection or segmentation project.

    Each gold image (split ``test``) is judged by its verified objects when it is labeled,
    else by its hidden ground-truth objects; a gold image with neither is left out.
    ``active`` predicts the gold images with each cycle's checkpoint (chunk by chunk,
    through its image files for an external trainer); ``random`` refits the cycle's recipe,
    with the project's build parameters and the cycle's seed, on the images the control arm
    had labeled by then (their verified objects and hard negatives). Both are scored by
    COCO mAP (:func:`exemplar.metrics.detection.mean_average_precision`, masks for
    segmentation) in the model's frame.
    """
    result: dict[str, Any] = {
        "metric": "map50",
        "gold_size": 0,
        "gold_objects": 0,
        "active": [],
        "random": [],
        "note": None,
    }
    segm = project.config.project.task == "segmentation"
    with project.db.read() as s:
        gold = list(s.scalars(select(Item).where(Item.split == Split.TEST).order_by(Item.row)))
        gold_ids = [g.id for g in gold]
        labeled = {
            c.item_id
            for c in current_labels(s, verified_only=True, splits=[Split.TEST])
            if c.label == OBJECTS_LABEL
        }
        found = current_annotations(
            s, gold_ids, statuses=(AnnotationStatus.VERIFIED, AnnotationStatus.GROUND_TRUTH)
        )
        cycles = list(s.scalars(select(Cycle).order_by(Cycle.number)))
        versions = {v.id: v for v in s.scalars(select(ModelVersion))}
        has_control = (
            s.scalars(
                select(QueueEntry.id).where(QueueEntry.strategy == CONTROL_STRATEGY).limit(1)
            ).first()
            is not None
            or s.scalars(
                select(Label.id).where(Label.strategy == CONTROL_STRATEGY).limit(1)
            ).first()
            is not None
        )
        control_rows = [
            (lab.item_id, lab.cycle_id)
            for lab in s.scalars(
                select(Label)
                .where(
                    Label.strategy.in_([CONTROL_STRATEGY, "random"]),
                    Label.status == LabelStatus.VERIFIED,
                    Label.label == OBJECTS_LABEL,
                )
                .order_by(Label.id)
            )
        ]
        control_ids = sorted({i for i, _ in control_rows})
        control_items = {i.id: i for i in s.scalars(select(Item).where(Item.id.in_(control_ids)))}
        control_found = current_annotations(
            s,
            control_ids,
            statuses=(AnnotationStatus.VERIFIED, AnnotationStatus.HARD_NEGATIVE),
        )
    verified: dict[int, list[Annotation]] = defaultdict(list)
    hidden: dict[int, list[Annotation]] = defaultdict(list)
    for ann in found:
        (verified if ann.status == AnnotationStatus.VERIFIED else hidden)[ann.item_id].append(ann)
    gold_rows: list[int] = []
    truth: list[Objects] = []
    for g in gold:
        if g.id in labeled:
            anns = verified[g.id]
        elif hidden[g.id]:
            anns = hidden[g.id]
        else:
            continue
        if not g.width or not g.height:
            continue
        gold_rows.append(g.row)
        truth.append(_frame_objects(anns, (g.width, g.height), project, segm))
    result["gold_size"] = len(truth)
    result["gold_objects"] = int(sum(len(t) for t in truth))
    if not truth:
        result["note"] = (
            "no gold set: label images of split 'test' (or import their ground truth) "
            "to measure the curve"
        )
        return result
    if not result["gold_objects"]:
        result["note"] = "the gold images hold no object: mAP is undefined"
        return result
    root = str(project.root)
    notes = []
    number_of = {c.id: c.number for c in cycles}
    for cycle in cycles:
        version = versions.get(cycle.model_version_id) if cycle.model_version_id else None
        if version is None:
            continue
        path = project.root / version.path
        if not path.is_file():
            notes.append(f"checkpoint of cycle {cycle.number} was pruned")
            continue
        try:
            predicted = _remember(
                ("active", root, version.path, path.stat().st_mtime_ns, tuple(gold_rows)),
                lambda v=version: predict_item_objects(
                    project, load_detector(project, v), gold_rows
                ),
            )
        except (ValueError, ExemplarError) as exc:  # must not break the dashboard
            notes.append(f"checkpoint of cycle {cycle.number} cannot be read: {exc}")
            continue
        result["active"].append(
            {
                "cycle": cycle.number,
                "n_labels": version.n_labels,
                "n_objects": (version.metrics or {}).get("n_objects"),
                **_gold_ap(truth, predicted, project, segm),
            }
        )
        if not has_control:
            continue
        picked = sorted(
            {
                item_id
                for item_id, cycle_id in control_rows
                if cycle_id is None or number_of.get(cycle_id, 0) <= cycle.number
            }
        )
        picked = [i for i in picked if control_items[i].width and control_items[i].height]
        positive: dict[int, list[Annotation]] = defaultdict(list)
        negative: dict[int, list[Annotation]] = defaultdict(list)
        for ann in control_found:
            target = negative if ann.status == AnnotationStatus.HARD_NEGATIVE else positive
            target[ann.item_id].append(ann)
        sizes = {
            i: (int(control_items[i].width or 1), int(control_items[i].height or 1)) for i in picked
        }
        train = [_frame_objects(positive[i], sizes[i], project, segm) for i in picked]
        negatives = [_frame_objects(negative[i], sizes[i], project, False) for i in picked]
        if not sum(len(o) for o in train):
            continue
        params = {**build_params(project, version.recipe), **(version.params or {})}
        key = (
            "random",
            root,
            version.recipe,
            json.dumps(params, sort_keys=True, default=str),
            int(cycle.seed),
            _digest(train + negatives, picked),
            tuple(gold_rows),
        )
        rows = [control_items[i].row for i in picked]
        try:
            predicted = _remember(
                key,
                lambda r=rows, t=train, n=negatives, v=version, c=cycle, p=params: _refit_predict(
                    project, v.recipe, int(c.seed), p, r, t, n, gold_rows
                ),
            )
        except (ValueError, ExemplarError) as exc:  # must not break the dashboard
            log.warning("random-control fit for cycle %d failed: %s", cycle.number, exc)
            continue
        result["random"].append(
            {
                "cycle": cycle.number,
                "n_labels": len(picked),
                "n_objects": int(sum(len(o) for o in train)),
                **_gold_ap(truth, predicted, project, segm),
            }
        )
    if not has_control:
        notes.append("no random-control arm in this project")
    if not result["active"] and not notes:
        notes.append("no model checkpoint yet")
    result["note"] = "; ".join(notes) or None
    return result


def _refit_predict(
    project: Project,
    recipe: str,
    seed: int,
    params: dict[str, Any],
    rows: Sequence[int],
    objects: Sequence[Objects],
    negatives: Sequence[Objects],
    gold_rows: Sequence[int],
) -> list[Objects]:
    """Fit a fresh detector of ``recipe`` on the control arm's images and predict the gold
    images with it. An external trainer works in a throwaway folder (its run is not one of
    the project's checkpoints)."""
    with tempfile.TemporaryDirectory(prefix="exemplar-control-") as work:
        if reads_files(recipe):
            params = {**params, "workdir": work}
        model = make_model(
            recipe, seed, device=project.config.model.device, classes=project.classes, **params
        )
        model = bind_files(project, model)
        X = model_inputs(project, hasattr(model, "bind_items"), np.asarray(rows, np.int64))
        model.fit(X, list(objects), negatives=list(negatives))  # type: ignore[call-arg, arg-type]
        return predict_item_objects(project, model, gold_rows)


def dashboard(project: Project) -> dict[str, Any]:
    """Everything ``GET /api/v1/dashboard`` returns.

    A detection or segmentation project's ``labels_per_class`` counts verified objects
    (``per_class_counts`` is ``"objects"``, ``objects_total`` their sum), its
    ``learning_curve`` points carry the Model Selector's criterion (``metric``: ``map50`` or
    ``map``) instead of ``accuracy``, its throughput counts images and objects, and a label
    budget in objects reads its progress in objects.
    """
    status = project.status()
    per_class: dict[str, int] = status["labels"]["per_class"]
    history = status["history"]
    current = status["cycle"]
    objects = project.config.project.objects
    metric = project.config.model.criterion if objects else "accuracy"
    curve = [
        {
            "cycle": h["cycle"],
            "n_labels": h["n_labels"],
            "strategy": h["strategy"],
            metric: (h.get("validation") or {}).get(metric),
            "validation": h.get("validation") or {},
        }
        for h in history
        if h.get("model")
    ]
    in_objects = objects and project.config.stopping.budget_unit == "objects"
    with project.db.read() as s:
        cycle_row = s.scalars(select(Cycle).order_by(Cycle.number.desc()).limit(1)).first()
        stopping_state = dict(cycle_row.stopping_state) if cycle_row else {}
        newest_version = s.scalars(
            select(ModelVersion.version).order_by(ModelVersion.id.desc()).limit(1)
        ).first()
        if in_objects:
            n_train = objects_labeled(s, splits=list(TRAINING_SPLITS))
        else:
            n_train = len(current_labels(s, verified_only=True, splits=list(TRAINING_SPLITS)))
    out: dict[str, Any] = {
        "project": status["project"],
        "classes": project.classes,
        "labels_per_class": per_class,
        "labels_total": status["labels"]["verified"],
        "labels_disputed": status["labels"]["disputed"],
        "rare_classes": rare_classes(per_class),
        "rare_rule": {"fewer_than": RARE_ABSOLUTE, "or_fraction_of_mean": RARE_RELATIVE},
        "throughput": throughput(project),
        "learning_curve": curve,
        "learning_curve_vs_random": learning_curve_vs_random(project),
        "cycle": None if current is None else current["cycle"],
        "cycle_state": None if current is None else current["state"],
        "model_version": (current or {}).get("model") or newest_version,
        "queue": status["queue"],
        "stopping": {
            "stopped": status["stopped"],
            "stop_reason": status["stop_reason"],
            "criteria": project.config.stopping.criteria,
            "state": stopping_state,
            "progress": stopping_progress(
                project.config.stopping.criteria,
                stopping_state,
                n_labels=n_train,
                unit="objects" if in_objects else "labels",
            ),
        },
    }
    if objects:
        out.update(
            task=project.config.project.task,
            metric=metric,
            per_class_counts="objects",
            objects_total=int(sum(per_class.values())),
        )
    return out


#: Splits whose labels the loop trains on (and counts against a label budget).
TRAINING_SPLITS = (Split.POOL, Split.TRAIN)

#: Each stopping criterion's name in words.
CRITERION_TITLES = {
    "label_budget": "label budget",
    "stabilizing_predictions": "stabilizing predictions",
    "uncertainty_threshold": "pool uncertainty",
    "validation_plateau": "validation plateau",
    "kpi_reached": "KPI target",
    "any_of": "any of",
    "all_of": "all of",
}


def _spec(criterion: Any) -> dict[str, Any]:
    """A configured criterion as a mapping (a ``[stopping]`` table or its pydantic model)."""
    if isinstance(criterion, BaseModel):
        return criterion.model_dump()
    return dict(criterion)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def stopping_progress(
    criteria: Sequence[Any], state: Mapping[str, Any], *, n_labels: int, unit: str = "labels"
) -> list[dict[str, Any]]:
    """Each configured stopping criterion in words, with the project's progress towards it.

    Parameters
    ----------
    criteria
        The ``[stopping]`` criteria (tables or their config models); together they stop the
        loop when any one does.
    state
        The newest cycle's recorded stopping state (``AnyOf.state_dict()``; ``{}`` before
        the first model).
    n_labels
        Labels the loop trains on now (counted against a label budget).
    unit
        What ``n_labels`` counts, as the label budget's line says it: ``"labels"``, or
        ``"objects"`` for a detection project whose budget is in objects.

    Returns
    -------
    list of dict
        One entry per criterion, depth first (a combinator's children follow it, one level
        deeper): ``name``, ``title`` (the name in words), ``params``, ``text`` (one readable
        line such as ``"label budget: 120 of 200 labels"``), ``met`` (whether it decided to
        stop in the newest cycle), ``last`` (its newest reason, or None) and ``depth``.
    """
    children = state.get("children") if isinstance(state, Mapping) else None
    out: list[dict[str, Any]] = []
    for i, criterion in enumerate(criteria):
        child = children[i] if isinstance(children, list) and i < len(children) else {}
        _describe(make_criterion(_spec(criterion)), child, n_labels, 0, out, unit)
    return out


def _describe(
    criterion: Any,
    state: Any,
    n_labels: int,
    depth: int,
    out: list[dict[str, Any]],
    unit: str = "labels",
) -> None:
    state = state if isinstance(state, Mapping) else {}
    name = str(criterion.name)
    title = CRITERION_TITLES.get(name, name.replace("_", " "))
    params = {k: v for k, v in criterion.get_params().items() if k != "criteria"}
    decision = (
        state.get("last_decision") if isinstance(state.get("last_decision"), Mapping) else None
    )
    met = bool(decision and decision.get("stop"))
    last = str(decision["reason"]) if decision and decision.get("reason") else None
    if name == "label_budget":
        budget = int(params["budget"])
        met = met or n_labels >= budget
        progress = f"{n_labels} of {budget} {unit}"
    elif name == "stabilizing_predictions":
        kappas = [float(k) for k in state.get("kappas") or []]
        window, threshold = int(params["window"]), params["threshold"]
        if kappas:
            recent = kappas[-window:]
            mean = sum(recent) / len(recent)
            progress = (
                f"agreement {mean:.2f} ≥ {_fmt(threshold)} needed, {len(recent)} of {window} rounds"
            )
        else:
            progress = (
                f"agreement (mean Cohen's kappa) ≥ {_fmt(threshold)} needed over {window} "
                "rounds; no two models compared yet"
            )
    elif name == "uncertainty_threshold":
        what = f"{params['aggregate']} {'normalized ' if params['normalize'] else ''}"
        progress = f"{what}{params['measure']} over the pool below {_fmt(params['threshold'])}"
    elif name == "validation_plateau":
        patience, best = int(params["patience"]), state.get("best")
        progress = (
            f"{params['metric']} must stop improving (by more than "
            f"{_fmt(params['min_delta'])}) for {patience} rounds"
        )
        if best is not None:
            progress += (
                f"; best {float(best):.4g} in cycle {state.get('best_round')}, "
                f"{int(state.get('wait') or 0)} of {patience} rounds without improvement"
            )
    elif name == "kpi_reached":
        op = "≥" if params.get("mode", "max") == "max" else "≤"
        progress = f"{params['metric']} {op} {_fmt(params['target'])} needed"
    elif name in ("any_of", "all_of"):
        n = len(criterion.criteria)
        progress = f"{'any one' if name == 'any_of' else 'every one'} of the {n} below"
    else:
        progress = ", ".join(f"{k} {_fmt(v)}" for k, v in params.items())
    text = f"{title}: {progress}"
    if last and name not in ("label_budget", "stabilizing_predictions", "any_of", "all_of"):
        text += f" (newest cycle: {last})"
    if met:
        text += " (met)"
    out.append(
        {
            "name": name,
            "title": title,
            "params": params,
            "text": text,
            "met": met,
            "last": last,
            "depth": depth,
        }
    )
    if name in ("any_of", "all_of"):
        states = state.get("children")
        for i, child in enumerate(criterion.criteria):
            child_state = states[i] if isinstance(states, list) and i < len(states) else {}
            _describe(child, child_state, n_labels, depth + 1, out, unit)
