"""Helpers shared by the loop and crash tests: small simulated projects and their snapshots."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sqlalchemy import select

from exemplar.project import Project
from exemplar.store.schema import Annotation, Cycle, Item, Label, ModelVersion, QueueEntry

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


CELL_CLASSES = ["nucleus", "micronucleus"]


def cells_coco(folder: Path, n: int, *, size: int = 64, seed: int = 0) -> Path:
    """A COCO folder of ``n`` SYNTHETIC cell images (PNG files plus annotations.json)."""
    from PIL import Image

    from exemplar.data.cells import synthetic_cells
    from exemplar.formats import AnnotatedImage, ObjectRecord, write_annotations

    data = synthetic_cells(n, size=size, seed=seed, objects_per_image=(2, 6))
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for k, (pixels, objs) in enumerate(zip(data.images, data.objects, strict=True)):
        path = folder / f"cell{k:03d}.png"
        Image.fromarray(pixels).save(path)
        records = [
            ObjectRecord(data.classes[int(c)], tuple(float(v) for v in box))  # type: ignore[arg-type]
            for box, c in zip(objs.boxes, objs.classes, strict=True)
        ]
        images.append(AnnotatedImage(path, size, size, records))
    return write_annotations(images, data.classes, folder, "coco")


def make_cells_project(
    root: Path,
    *,
    database_url: str = "",
    n: int = 20,
    budget: int = 12,
    model_params: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
) -> Project:
    """A detection project of synthetic cells (64 px) with ground-truth objects for the
    simulated oracle, one CenterNet candidate, and every proposal kept (threshold 0)."""
    project = Project.init(
        root,
        CELL_CLASSES,
        task="detection",
        database_url=database_url,
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={
            "candidates": [{"recipe": "centernet", "params": model_params or {"epochs": 2}}],
            "proposal_threshold": 0.0,
        },
        selection=selection or {"batch_size": 3, "initial_size": 6},
        stopping={"criteria": [{"name": "label_budget", "budget": budget}]},
    )
    project.import_(cells_coco(root.parent / f"{root.name}-cells", n), labels_as="ground_truth")
    return project


def object_snapshot(project: Project) -> dict[str, Any]:
    """:func:`snapshot` plus every object's whole history, free of database ids.

    Each object is the tuple of its rows, oldest first: item uid, class, status, source,
    annotator, model version, confidence, cycle number and box (rounded), so a resumed run
    compares equal to an uninterrupted one on SQLite or PostgreSQL (whose ids differ after
    rolled-back transactions).
    """
    out = snapshot(project)
    with project.db.read() as s:
        uid = dict(s.execute(select(Item.id, Item.uid)).all())
        number = dict(s.execute(select(Cycle.id, Cycle.number)).all())
        history: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for a in s.scalars(select(Annotation).order_by(Annotation.id)):
            history[a.object_id].append(
                (
                    uid[a.item_id],
                    a.label,
                    a.status,
                    a.source,
                    a.annotator,
                    a.model_version,
                    None if a.confidence is None else round(a.confidence, 5),
                    number.get(a.cycle_id),
                    tuple(round(v, 3) for v in (a.x0, a.y0, a.x1, a.y1)),
                )
            )
    out["objects"] = sorted((tuple(rows) for rows in history.values()), key=repr)
    return out
