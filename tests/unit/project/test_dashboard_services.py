"""The dashboard and review services of the project layer (no web server involved)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.project.dashboard import dashboard, stopping_progress
from exemplar.project.review import review_rows
from exemplar.stopping import AnyOf, LabelBudget, Observation, StabilizingPredictions
from exemplar.store.labels import add_label
from exemplar.store.schema import Item, LabelSource
from loop_helpers import CLASSES, make_project


def _state_after(criteria: AnyOf, rounds: list[tuple[int, list[int]]]) -> dict[str, object]:
    for r, (n_labeled, preds) in enumerate(rounds):
        criteria.update(Observation(r, n_labeled, stop_set_predictions=np.array(preds)))
    return criteria.state_dict()


def test_budget_and_stabilizing_in_words() -> None:
    config = [
        {"name": "label_budget", "budget": 200},
        {"name": "stabilizing_predictions", "threshold": 0.99, "window": 3},
    ]
    # three models: two comparisons, kappa 1.0 then a disagreement on one of 4 items
    state = _state_after(
        AnyOf([LabelBudget(200), StabilizingPredictions(0.99, 3)]),
        [(40, [0, 1, 2, 3]), (80, [0, 1, 2, 3]), (120, [0, 1, 2, 2])],
    )
    lines = stopping_progress(config, state, n_labels=120)
    assert [line["text"] for line in lines] == [
        "label budget: 120 of 200 labels",
        "stabilizing predictions: agreement 0.83 ≥ 0.99 needed, 2 of 3 rounds",
    ]
    assert [line["met"] for line in lines] == [False, False]
    assert lines[1]["params"] == {"threshold": 0.99, "window": 3}
    assert lines[1]["title"] == "stabilizing predictions"


def test_before_any_model_and_when_met() -> None:
    config = [{"name": "stabilizing_predictions"}, {"name": "label_budget", "budget": 50}]
    fresh = stopping_progress(config, {}, n_labels=0)
    assert fresh[0]["text"].startswith("stabilizing predictions: agreement (mean Cohen's kappa)")
    assert "no two models compared yet" in fresh[0]["text"]
    assert fresh[1]["text"] == "label budget: 0 of 50 labels" and not fresh[1]["met"]
    done = stopping_progress(config, {}, n_labels=50)
    assert done[1]["text"] == "label budget: 50 of 50 labels (met)" and done[1]["met"]


def test_nested_and_metric_criteria() -> None:
    config = [
        {
            "name": "all_of",
            "criteria": [
                {"name": "kpi_reached", "target": 0.9},
                {"name": "validation_plateau", "patience": 2},
            ],
        },
        {"name": "uncertainty_threshold", "threshold": 0.1},
    ]
    state = {
        "criterion": "any_of",
        "children": [
            {
                "criterion": "all_of",
                "last_decision": {"stop": False, "reason": "...", "fired": []},
                "children": [
                    {
                        "criterion": "kpi_reached",
                        "last_decision": {
                            "stop": True,
                            "reason": "accuracy 0.93 >= target 0.9",
                            "fired": ["kpi_reached"],
                        },
                    },
                    {"criterion": "validation_plateau", "best": 0.93, "best_round": 4, "wait": 1},
                ],
            },
            {},
        ],
    }
    lines = stopping_progress(config, state, n_labels=10)
    assert [(line["depth"], line["name"]) for line in lines] == [
        (0, "all_of"),
        (1, "kpi_reached"),
        (1, "validation_plateau"),
        (0, "uncertainty_threshold"),
    ]
    assert lines[0]["text"] == "all of: every one of the 2 below"
    assert lines[1]["text"] == (
        "KPI target: accuracy ≥ 0.9 needed (newest cycle: accuracy 0.93 >= target 0.9) (met)"
    )
    assert lines[1]["met"] and not lines[0]["met"]
    assert lines[2]["text"].endswith("; best 0.93 in cycle 4, 1 of 2 rounds without improvement")
    assert lines[3]["text"] == ("pool uncertainty: mean normalized entropy over the pool below 0.1")


def test_dashboard_progress_counts_training_labels(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", n=200, budget=30) as project:
        project.run()
        data = dashboard(project)
    stopping = data["stopping"]
    assert stopping["stopped"] and stopping["stop_reason"]
    (line,) = stopping["progress"]
    assert line["text"] == f"label budget: {data['labels_total']} of 30 labels (met)"
    assert data["labels_total"] >= 30


def test_review_rows_carry_the_text(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", oracle="human", n=60) as project:
        with project.db.session() as s:
            item = s.scalars(select(Item).order_by(Item.row).limit(1)).one()
            item.kind, item.text = "text", "<b>a long</b> review text " * 20
            add_label(s, item.id, "3", classes=CLASSES, source=LabelSource.HUMAN, annotator="ann")
        (row,) = review_rows(project)
    assert row["item_id"] == item.id and row["kind"] == "text"
    assert row["text"] == "<b>a long</b> review text " * 20
