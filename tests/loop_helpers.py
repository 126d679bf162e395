"""Helpers shared by the loop and crash tests: a small simulated project and its snapshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sqlalchemy import select

from exemplar.project import Project
from exemplar.store.schema import Cycle, Item, Label, ModelVersion, QueueEntry

CLASSES = [str(i) for i in range(10)]


def digits_npz(path: Path, n: int = 600) -> Path:
    """The first ``n`` digits as an .npz with string labels."""
    X, y = load_digits(return_X_y=True)
    np.savez(path, X=X[:n], y=y[:n].astype(str))
    return path


def make_project(
    root: Path,
    *,
    database_url: str = "",
    oracle: str = "simulated",
    budget: int = 50,
    n: int = 600,
    **sections: Any,
) -> Project:
    """A digits project with ground truth for the simulated oracle (one model candidate)."""
    project = Project.init(
        root,
        CLASSES,
        database_url=database_url,
        oracle={"kind": oracle, **sections.pop("oracle_extra", {})},
        model=sections.pop("model", {"candidates": [{"recipe": "logreg", "params": {"C": 1.0}}]}),
        selection=sections.pop("selection", {"batch_size": 10, "initial_size": 20}),
        stopping={"criteria": [{"name": "label_budget", "budget": budget}]},
        **sections,
    )
    data = digits_npz(root.parent / f"{root.name}-digits.npz", n)
    project.import_(data, labels_as="ground_truth")
    return project


def snapshot(project: Project) -> dict[str, Any]:
    """Everything a resumed run must reproduce: labels, cycles, selections, model versions."""
    with project.db.read() as s:
        uid = dict(s.execute(select(Item.id, Item.uid)).all())
        cycles = list(s.scalars(select(Cycle).order_by(Cycle.number)))
        number = {c.id: c.number for c in cycles}
        versions = {v.id: v for v in s.scalars(select(ModelVersion))}
        labels = [
            (
                uid[lab.item_id],
                lab.label,
                lab.status,
                lab.source,
                number.get(lab.cycle_id),
                lab.strategy,
                None if lab.score is None else round(lab.score, 6),
            )
            for lab in s.scalars(select(Label))
        ]
        queue = [
            (
                number.get(e.cycle_id),
                uid[e.item_id],
                e.strategy,
                None if e.score is None else round(e.score, 6),
                e.rank,
                e.status,
            )
            for e in s.scalars(select(QueueEntry))
        ]
    return {
        "labels": sorted(labels, key=repr),
        "queue": sorted(queue, key=repr),
        "cycles": [
            {
                "number": c.number,
                "state": c.state,
                "seed": c.seed,
                "strategy": c.strategy,
                "model": versions[c.model_version_id].version if c.model_version_id else None,
                "decision": c.decision,
                "stop_reason": c.stop_reason,
                "metrics": json.loads(json.dumps(c.metrics, sort_keys=True)),
                "stopping_state": c.stopping_state,
            }
            for c in cycles
        ],
        "models": sorted(
            (
                v.version,
                v.recipe,
                json.dumps(v.params, sort_keys=True),
                v.n_labels,
                v.selected,
                json.dumps(v.metrics, sort_keys=True),
            )
            for v in versions.values()
        ),
    }
