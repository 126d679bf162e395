"""The dashboard, the gold-set learning curve and the review ranking of a detection project
(issue #11): objects per class, mAP instead of accuracy, boxes compared with the newest
model. Built on SYNTHETIC cell images (exemplar.data.cells)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from exemplar.errors import ReviewError
from exemplar.objects import Objects, box_iou
from exemplar.project import Project
from exemplar.project import dashboard as dashboard_module
from exemplar.project.dashboard import dashboard, learning_curve_vs_random, throughput
from exemplar.project.review import (
    CONFIDENT_BOX,
    _compare_objects,
    review_label,
    review_rows,
)
from exemplar.server import create_app
from exemplar.store.accounts import add_user
from exemplar.store.annotations import (
    OBJECTS_LABEL,
    AnnotationIn,
    AnnotationStatus,
    add_annotations,
    current_annotations,
)
from exemplar.store.labels import add_label, current_labels
from exemplar.store.schema import Annotation, Item, LabelSource, Split

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import PASSWORD, Served
from test_detection_project import CLASSES, write_cells

GOLD_FROM = 24  # rows 24.. (6 images) are the gold set


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detection project that ran to its budget, with a gold set and a random control arm."""
    tmp = tmp_path_factory.mktemp("objects")
    coco = write_cells(tmp / "cells", 30, seed=11)
    root = tmp / "proj"
    with Project.init(
        root,
        CLASSES,
        task="detection",
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={
            "candidates": [{"recipe": "centernet", "params": {"epochs": 8, "batch_size": 4}}],
            "proposal_threshold": 0.0,
        },
        selection={"batch_size": 4, "initial_size": 6, "control_fraction": 0.3},
        stopping={"criteria": [{"name": "label_budget", "budget": 14}]},
    ) as project:
        project.import_(coco, labels_as="ground_truth")
        with project.db.session() as s:
            s.execute(update(Item).where(Item.row >= GOLD_FROM).values(split=Split.TEST))
        assert project.run().status == "stopped"
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Iterator[Project]:
    """A private copy of the built project (tests may change it)."""
    root = tmp_path / "copy"
    shutil.copytree(built, root)
    with Project.open(root) as opened:
        yield opened


def test_dashboard_counts_objects_and_draws_map(project: Project) -> None:
    data = dashboard(project)
    with project.db.read() as s:
        labeled = [c.item_id for c in current_labels(s) if c.label == OBJECTS_LABEL]
        verified = current_annotations(s, labeled, statuses=(AnnotationStatus.VERIFIED,))
    assert data["per_class_counts"] == "objects" and data["metric"] == "map50"
    want = {name: sum(a.label == name for a in verified) for name in CLASSES}
    assert data["labels_per_class"] == want
    assert data["objects_total"] == len(verified) > data["labels_total"] == len(labeled)
    assert data["learning_curve"], "every cycle with a model is a point"
    for point in data["learning_curve"]:
        assert "accuracy" not in point
        assert point["map50"] == point["validation"]["map50"]
        assert 0.0 <= point["map50"] <= 1.0
    vs = data["learning_curve_vs_random"]
    assert vs["metric"] == "map50" and vs["gold_size"] == 30 - GOLD_FROM
    assert data["stopping"]["progress"][0]["text"].startswith("label budget: 14 of 14 labels")


def test_throughput_counts_images_and_objects(project: Project) -> None:
    with project.db.read() as s:
        item = s.scalars(select(Item).where(Item.split == Split.POOL).order_by(Item.row)).first()
        assert item is not None
        item_id = item.id
    with project.db.session() as s:
        add_annotations(
            s,
            item_id,
            [
                AnnotationIn("nucleus", (1.0, 1.0, 9.0, 9.0)),
                AnnotationIn("micronucleus", (20.0, 20.0, 24.0, 24.0)),
            ],
            status=AnnotationStatus.VERIFIED,
            source=LabelSource.HUMAN,
            annotator="ann",
            classes=CLASSES,
        )
        add_label(
            s,
            item_id,
            OBJECTS_LABEL,
            classes=[*CLASSES, OBJECTS_LABEL],
            source=LabelSource.HUMAN,
            annotator="ann",
        )
    (row,) = throughput(project)
    assert row["annotator"] == "ann"
    assert (row["labels"], row["objects"]) == (1, 2)
    assert (row["labels_24h"], row["objects_24h"]) == (1, 2)
    assert row["objects_per_hour_overall"] == 2.0 and row["per_hour_overall"] == 1.0


def test_learning_curve_scores_checkpoints_by_map_on_gold(project: Project) -> None:
    dashboard_module._GOLD_PREDICTIONS.clear()
    first = learning_curve_vs_random(project)
    with project.db.read() as s:
        gold = [i.id for i in s.scalars(select(Item).where(Item.split == Split.TEST))]
        hidden = current_annotations(s, gold, statuses=(AnnotationStatus.GROUND_TRUTH,))
    assert first["metric"] == "map50"
    assert first["gold_size"] == len(gold) and first["gold_objects"] == len(hidden)
    assert first["active"] and first["random"], first["note"]
    assert [p["cycle"] for p in first["random"]] == [p["cycle"] for p in first["active"]]
    for point in first["active"] + first["random"]:
        assert "accuracy" not in point
        assert 0.0 <= point["map50"] <= 1.0 and 0.0 <= point["map"] <= point["map50"]
        assert point["n_objects"] > 0
    # the control arm grows by its random picks only
    sizes = [p["n_labels"] for p in first["random"]]
    assert sizes == sorted(sizes)
    # deterministic: the same checkpoints and the same refits (seeded) give the same curve
    dashboard_module._GOLD_PREDICTIONS.clear()
    assert learning_curve_vs_random(project) == first
    # a labeled gold image is judged by its verified objects, not its hidden truth
    with project.db.session() as s:
        add_annotations(
            s,
            gold[0],
            [AnnotationIn("nucleus", (2.0, 2.0, 12.0, 12.0))],
            status=AnnotationStatus.VERIFIED,
            source=LabelSource.HUMAN,
            annotator="ann",
            classes=CLASSES,
        )
        add_label(s, gold[0], OBJECTS_LABEL, classes=[*CLASSES, OBJECTS_LABEL], source="human")
    n_hidden = sum(a.item_id == gold[0] for a in hidden)
    assert learning_curve_vs_random(project)["gold_objects"] == len(hidden) - n_hidden + 1


def test_no_gold_set_says_so(project: Project) -> None:
    with project.db.session() as s:
        s.execute(update(Item).values(split=Split.POOL))
    curve = learning_curve_vs_random(project)
    assert curve["gold_size"] == 0 and curve["active"] == []
    assert "no gold set" in curve["note"]


def _free_boxes(
    taken: np.ndarray, n: int, side: int = 64, size: int = 4
) -> list[tuple[float, ...]]:
    """``n`` small boxes that overlap no box of ``taken`` nor one another."""
    out: list[tuple[float, ...]] = []
    for y in range(0, side - size, size):
        for x in range(0, side - size, size):
            box = np.asarray([[x, y, x + size, y + size]], np.float32)
            others = np.concatenate(
                [taken.reshape(-1, 4), np.asarray(out, np.float32).reshape(-1, 4)]
            )
            if not others.size or box_iou(box, others).max() == 0:
                out.append(tuple(float(v) for v in box[0]))
            if len(out) == n:
                return out
    raise AssertionError("no room for the boxes")


def test_review_ranks_an_image_with_wrong_boxes_first(project: Project) -> None:
    before = {r["item_id"]: r for r in review_rows(project, limit=1000)}
    assert before and all(r["proposal"] is not None for r in before.values())
    assert all(r["objects"]["verified"] > 0 for r in before.values())
    # wrong boxes: verified objects where the image shows no cell
    target = min(before)  # any labeled image
    with project.db.read() as s:
        mine = current_annotations(s, [target], statuses=(AnnotationStatus.VERIFIED,))
    taken = np.asarray([[a.x0, a.y0, a.x1, a.y1] for a in mine], np.float32)
    wrong = _free_boxes(taken, 8)
    with project.db.session() as s:
        added = add_annotations(
            s,
            target,
            [AnnotationIn("nucleus", box) for box in wrong],  # type: ignore[arg-type]
            status=AnnotationStatus.VERIFIED,
            source=LabelSource.HUMAN,
            annotator="sloppy",
            classes=CLASSES,
        )
    rows = review_rows(project, limit=1000)
    top = rows[0]
    assert top["item_id"] == target
    assert top["risk"] >= before[target]["risk"] + 8 * (1 - CONFIDENT_BOX)
    assert top["objects"]["doubted"] >= before[target]["objects"]["doubted"] + 8
    assert any(f"{top['objects']['doubted']} doubted" in reason for reason in top["reasons"])
    flagged = {f["object_id"] for f in top["findings"] if f["kind"] == "doubted"}
    assert {a.object_id for a in added} <= flagged
    # every other image keeps its risk: the ranking is per image
    assert all(r["risk"] == before[r["item_id"]]["risk"] for r in rows[1:])
    # accepting the image takes it off the list; correcting it is done object by object
    with pytest.raises(ReviewError, match="object"):
        review_label(project, target, "rev", "correct", "nucleus")
    assert review_label(project, target, "rev", "accept").label == OBJECTS_LABEL
    assert target not in {r["item_id"] for r in review_rows(project, limit=1000)}
    assert target in {r["item_id"] for r in review_rows(project, limit=1000, include_reviewed=True)}


def test_comparison_counts_missed_doubted_and_class() -> None:
    """The three signals on hand-made objects: a confident box on nothing (missed), an
    object the model scores low (doubted) and one it calls another class (class)."""

    def ann(object_id: int, label: str, box: tuple[float, float, float, float]) -> Annotation:
        x0, y0, x1, y1 = box
        return Annotation(object_id=object_id, label=label, x0=x0, y0=y0, x1=x1, y1=y1)

    verified = [
        ann(1, "nucleus", (0, 0, 10, 10)),  # model agrees
        ann(2, "nucleus", (20, 0, 30, 10)),  # model scores it low
        ann(3, "nucleus", (40, 0, 50, 10)),  # model says micronucleus
        ann(4, "micronucleus", (0, 40, 6, 46)),  # model has nothing there
    ]
    negative = [ann(5, "nucleus", (40, 40, 50, 50))]
    model = Objects(
        np.asarray(
            [[0, 0, 10, 10], [20, 0, 30, 10], [41, 0, 50, 10], [20, 20, 30, 30], [40, 40, 50, 50]],
            np.float32,
        ),
        np.asarray([0, 0, 1, 0, 0]),
        np.asarray([0.9, 0.2, 0.8, 0.7, 0.95], np.float32),
    )
    risk, counts, findings = _compare_objects(verified, negative, model, CLASSES)
    assert counts == {"missed": 1, "doubted": 2, "class_conflicts": 1}
    assert risk == pytest.approx((1 - 0.2) + 1.0 + 0.8 + 0.7)
    kinds = {(f["kind"], f["object_id"]) for f in findings}
    assert kinds == {("doubted", 2), ("doubted", 4), ("class", 3), ("missed", None)}
    assert findings[0]["object_id"] == 4  # riskiest first
    # the hard negative's box is not a missed object
    assert all(f["box"] != [40.0, 40.0, 50.0, 50.0] for f in findings)
    assert _compare_objects(verified, negative, None, CLASSES) == (
        0.0,
        {"missed": 0, "doubted": 0, "class_conflicts": 0},
        [],
    )


def test_server_dashboard_and_review_answer_on_a_detection_project(project: Project) -> None:
    root = project.root
    add_user(project.db, "rev", "reviewer", PASSWORD)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        served = Served(root, client)
        served.login("rev")
        r = client.get("/api/v1/dashboard")
        assert r.status_code == 200, r.text
        assert r.json()["per_class_counts"] == "objects"
        assert r.json()["learning_curve_vs_random"]["metric"] == "map50"
        r = client.get("/api/v1/review")
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert items and all("findings" in i for i in items)
        for page in ("/dashboard", "/review"):
            assert client.get(page).status_code == 200
        item_id = items[0]["item_id"]
        bad = client.post(
            f"/api/v1/review/{item_id}", json={"action": "correct", "label": "nucleus"}
        )
        assert bad.status_code == 422 and "object" in bad.json()["detail"]
        ok = client.post(f"/api/v1/review/{item_id}", json={"action": "reject"})
        assert ok.status_code == 200 and ok.json()["status"] == "rejected"


def test_cli_curve_and_review_speak_of_objects(project: Project) -> None:
    from typer.testing import CliRunner

    from exemplar.cli.main import app

    runner = CliRunner()
    root = str(project.root)
    curve = runner.invoke(app, ["curve", "-p", root], env={"COLUMNS": "200"})
    assert curve.exit_code == 0, curve.output
    assert "mAP@0.5 on the gold set (6 images" in curve.output
    assert "accuracy" not in curve.output
    review = runner.invoke(app, ["review", "-p", root], env={"COLUMNS": "200"})
    assert review.exit_code == 0, review.output
    assert "object(s)" in review.output and "confident box(es)" in review.output
