"""The dashboard service: class coverage, throughput, learning curves, cycle, model, stopping.

The server's ``GET /api/v1/dashboard`` returns :func:`dashboard`; ``exemplar curve`` prints
:func:`learning_curve_vs_random`. The learning curve of the active-learning picks against a
random control arm (queue entries or labels with strategy ``random-control``) is measured
on the gold set (items of split ``test``); without a gold set, checkpoints or a control
arm it says why in ``note`` instead of drawing anything. :func:`stopping_progress`
describes each stopping criterion in words, with how far the project is towards it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlalchemy import select

from exemplar.errors import ExemplarError
from exemplar.models import ModelAdapter, load_model, make_model
from exemplar.project.project import Project
from exemplar.stopping import make_criterion
from exemplar.store.labels import current_labels
from exemplar.store.schema import (
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
    """
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=24)
    with project.db.read() as s:
        rows = s.execute(
            select(Label.annotator, Label.created_at).where(
                Label.source == LabelSource.HUMAN, Label.annotator.is_not(None)
            )
        ).all()
    times: dict[str, list[datetime]] = defaultdict(list)
    for annotator, created in rows:
        times[str(annotator)].append(_aware(created))
    out = []
    for name in sorted(times):
        stamps = sorted(times[name])
        hours = max((stamps[-1] - stamps[0]).total_seconds() / 3600.0, 1.0)
        recent = sum(1 for t in stamps if t >= since)
        out.append(
            {
                "annotator": name,
                "labels": len(stamps),
                "labels_24h": recent,
                "per_hour_24h": round(recent / 24.0, 3),
                "per_hour_overall": round(len(stamps) / hours, 3),
                "last_label_at": stamps[-1].isoformat(),
            }
        )
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
    """
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


def dashboard(project: Project) -> dict[str, Any]:
    """Everything ``GET /api/v1/dashboard`` returns."""
    status = project.status()
    per_class: dict[str, int] = status["labels"]["per_class"]
    history = status["history"]
    current = status["cycle"]
    curve = [
        {
            "cycle": h["cycle"],
            "n_labels": h["n_labels"],
            "strategy": h["strategy"],
            "accuracy": (h.get("validation") or {}).get("accuracy"),
            "validation": h.get("validation") or {},
        }
        for h in history
        if h.get("model")
    ]
    with project.db.read() as s:
        cycle_row = s.scalars(select(Cycle).order_by(Cycle.number.desc()).limit(1)).first()
        stopping_state = dict(cycle_row.stopping_state) if cycle_row else {}
        newest_version = s.scalars(
            select(ModelVersion.version).order_by(ModelVersion.id.desc()).limit(1)
        ).first()
        n_train = len(current_labels(s, verified_only=True, splits=list(TRAINING_SPLITS)))
    return {
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
                project.config.stopping.criteria, stopping_state, n_labels=n_train
            ),
        },
    }


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
    criteria: Sequence[Any], state: Mapping[str, Any], *, n_labels: int
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
        _describe(make_criterion(_spec(criterion)), child, n_labels, 0, out)
    return out


def _describe(
    criterion: Any, state: Any, n_labels: int, depth: int, out: list[dict[str, Any]]
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
        progress = f"{n_labels} of {budget} labels"
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
            _describe(child, child_state, n_labels, depth + 1, out)
