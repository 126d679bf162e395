"""Which labeled items deserve another annotator's label? ActiveLab on a project's votes.

The service behind ``exemplar relabel``. It gathers every annotator's standing vote on
each item (:func:`exemplar.store.votes.item_votes`), reads the newest
model's scored probabilities, and runs :func:`exemplar.curation.relabel.activelab_scores`
(Goh & Mueller 2023): each annotator's estimated accuracy and weight, the weighted
consensus of every labeled item, and, for a batch of ``batch_size`` labels, which labeled
items to relabel first and how many labels to spend on new items. It writes nothing:
the plan is for the people who queue the work (docs/costs.md says what the loop does).

The model's probabilities of labeled items are the stored ones, from the model trained on
them, so the model's weight is an optimistic estimate here; the loop's select step
(``[oracle] relabel = "activelab"``) and the simulator (``exemplar simulate --scenario
annotators``) use cross-validated, out-of-sample ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from exemplar.curation.relabel import (
    NO_LABEL,
    activelab_scores,
    majority_vote,
    plan_batch,
    to_project_classes,
)
from exemplar.errors import ProjectError
from exemplar.loop.scoring import load_scored
from exemplar.models import checkpoint_classes
from exemplar.project.project import Project
from exemplar.store.accounts import list_users
from exemplar.store.schema import Item, ModelVersion, Split
from exemplar.store.votes import item_votes

__all__ = ["relabel_plan"]


def relabel_plan(project: Project, batch_size: int | None = None) -> dict[str, Any]:
    """ActiveLab's view of the project's human labels, and a plan for one batch.

    Keys: ``model_version``, ``annotators`` (name → labels, estimated accuracy, weight),
    ``model_weight``, ``n_labeled``, ``n_multi`` (items with several annotators),
    ``overruled`` (items whose weighted consensus differs from their majority vote), ``relabel``
    (the labeled items to relabel first: item id, votes, consensus, score), ``n_new``
    (labels the batch gives to new items), ``batch_size`` and ``dropped_classes`` (classes
    the model was trained on that the project no longer has: their probability columns
    are dropped, and items with a vote for one are left out).

    Raises
    ------
    ProjectError
        No human label yet, or no scored model to weigh the labels against.
    """
    size = project.config.selection.batch_size if batch_size is None else batch_size
    classes = list(project.classes)
    index = {c: i for i, c in enumerate(classes)}
    with project.db.read() as s:
        version = s.scalar(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(1))
        voted = [v for v in item_votes(s) if all(c in index for c in v.votes.values())]
        pool_rows = np.array(
            s.scalars(select(Item.row).where(Item.split == Split.POOL.value)).all(),
            dtype=np.int64,
        )
    if not voted:
        raise ProjectError("no human label yet: label some items first")
    if version is None:
        raise ProjectError("no model yet: run a cycle first (`exemplar run`)")
    proba = np.asarray(load_scored(project.arrays, version.version).predictions.require_proba())
    annotators = sorted({a for v in voted for a in v.votes})
    items = [v.item_id for v in voted]
    matrix = np.full((len(voted), len(annotators)), NO_LABEL, dtype=np.int64)
    for i, v in enumerate(voted):
        for a, c in v.votes.items():
            matrix[i, annotators.index(a)] = index[c]
    item_rows = np.array([v.row for v in voted], dtype=np.int64)
    # The model's probability columns are the classes it was trained on, in its order.
    model_classes = [
        str(c) for c in checkpoint_classes(project.root / version.path, version.recipe)
    ]
    if proba.shape[1] != len(model_classes) or item_rows.max() >= proba.shape[0]:
        raise ProjectError(
            f"model {version.version} was scored before these items or classes; run a cycle"
        )
    # Classes the model knows but the project no longer has: their columns are dropped.
    dropped = to_project_classes(proba[:0], model_classes, classes)[1]

    def full(rows: np.ndarray) -> np.ndarray:
        return to_project_classes(proba[rows], model_classes, classes)[0]

    labeled = set(item_rows.tolist())
    new_rows = np.array(
        [r for r in pool_rows.tolist() if r not in labeled and r < len(proba)], dtype=np.int64
    )
    proba_labeled = full(item_rows)
    scores = activelab_scores(matrix, proba_labeled, full(new_rows) if new_rows.size else None)
    # Another label needs someone who has not labeled the item: the project's people
    # (accounts of the labeling server, or the annotators seen when it has none).
    people = max(len(list_users(project.db)), len(annotators))
    eligible = np.array([v.slots > 0 and not v.open for v in voted], dtype=bool)
    plan = plan_batch(scores, matrix, size, max_labels=people, eligible=eligible)
    relabel = []
    for position in plan.relabel.tolist():
        item_id = items[position]
        given = {
            annotators[j]: classes[int(c)] for j, c in enumerate(matrix[position]) if c != NO_LABEL
        }
        relabel.append(
            {
                "item_id": item_id,
                "votes": given,
                "consensus": classes[int(scores.consensus[position])],
                "score": float(scores.labeled[position]),
            }
        )
    majority = majority_vote(matrix, len(classes), proba_labeled)
    return {
        "model_version": version.version,
        "annotators": {
            name: {
                "labels": int((matrix[:, j] != NO_LABEL).sum()),
                "accuracy": float(scores.annotator_accuracy[j]),
                "weight": float(scores.annotator_weight[j]),
            }
            for j, name in enumerate(annotators)
        },
        "model_weight": scores.model_weight,
        "n_labeled": len(items),
        "n_multi": int(((matrix != NO_LABEL).sum(axis=1) > 1).sum()),
        "overruled": int((scores.consensus != majority).sum()),
        "relabel": relabel,
        "n_new": int(plan.new.size),
        "batch_size": size,
        "dropped_classes": dropped,
    }
