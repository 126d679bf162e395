"""The review page and the dashboard: risk ordering, append-only reviews, roles, escaping."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import server_helpers
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, Served
from sqlalchemy import func, select, update

from exemplar.project import Project
from exemplar.project.dashboard import learning_curve_vs_random, rare_classes
from exemplar.server import create_app
from exemplar.store.accounts import add_user
from exemplar.store.labels import add_label
from exemplar.store.schema import Item, Label, LabelSource, ModelVersion, Split

project_root = server_helpers.project_root
served = server_helpers.served

CLASSES = [str(i) for i in range(10)]


def _rows(root: Path, item_id: int) -> list[tuple[int, str | None, str, str | None]]:
    with Project.open(root) as project, project.db.read() as s:
        return [
            (lab.id, lab.label, lab.status, lab.annotator)
            for lab in s.scalars(select(Label).where(Label.item_id == item_id).order_by(Label.id))
        ]


def _seed(root: Path) -> dict[str, int]:
    """A fake newest model (proba array, pruned checkpoint) and four labeled items.

    agree: label 1, model says 1 at 0.95; conflict: label 2, model says 7 at 0.9;
    disagree: ann says 3, rev says 4 (model agrees with the current label 4);
    unsure: label 5, model says 5 at 0.4.
    """
    with Project.open(root) as project:
        with project.db.read() as s:
            items = list(s.scalars(select(Item).order_by(Item.row).limit(4)))
        proba = np.full((project.n_rows, 10), 0.0)
        proba[:, 0] = 1.0
        picks = {
            "agree": (items[0], "1", 0.95),
            "conflict": (items[1], "7", 0.9),
            "disagree": (items[2], "4", 0.95),
            "unsure": (items[3], "5", 0.4),
        }
        for item, best, p in picks.values():
            proba[item.row] = (1 - p) / 9
            proba[item.row, int(best)] = p
        project.arrays.save("proba-fake-v1", proba)
        with project.db.session() as s:
            s.add(
                ModelVersion(
                    version="fake-v1", recipe="logreg", path="models/gone.joblib", n_labels=4
                )
            )
            kw = {"classes": CLASSES, "source": LabelSource.HUMAN}
            add_label(s, items[0].id, "1", annotator="ann", **kw)
            add_label(s, items[1].id, "2", annotator="ann", **kw)
            add_label(s, items[2].id, "3", annotator="ann", **kw)
            add_label(s, items[2].id, "4", annotator="other", **kw)
            add_label(s, items[3].id, "5", annotator="ann", **kw)
    return {name: item.id for name, (item, _, _) in picks.items()}


def test_review_orders_by_risk(served: Served) -> None:
    ids = _seed(served.root)
    client = served.login("rev")
    r = client.get("/api/v1/review?limit=50")
    assert r.status_code == 200, r.text
    rows = r.json()["items"]
    order = [row["item_id"] for row in rows]
    assert order.index(ids["conflict"]) < order.index(ids["agree"])
    assert order.index(ids["disagree"]) < order.index(ids["agree"])
    assert order.index(ids["unsure"]) < order.index(ids["agree"])
    by_id = {row["item_id"]: row for row in rows}
    assert by_id[ids["conflict"]]["reasons"] == ["model-conflict", "low-confidence"]
    assert by_id[ids["conflict"]]["proposal"] == {
        "label": "7",
        "confidence": 0.9,
        "model_version": "fake-v1",
    }
    assert "disagreement" in by_id[ids["disagree"]]["reasons"]
    assert by_id[ids["agree"]]["reasons"] == []
    assert by_id[ids["unsure"]]["reasons"] == ["low-confidence"]
    assert by_id[ids["agree"]]["annotator"] == "ann" and by_id[ids["agree"]]["created_at"]
    assert len(client.get("/api/v1/review?limit=2").json()["items"]) == 2
    # each row says what was labeled (feature rows here: no text, no image)
    assert {(row["kind"], row["text"]) for row in rows} == {("features", None)}


def test_review_page_has_keys_and_help(served: Served) -> None:
    client = served.login("rev")
    page = client.get("/review")
    assert page.status_code == 200
    # digit classes: the class key is the class itself, as on the labeling page
    for digit in CLASSES:
        assert f'<option value="{digit}" data-key="{digit}">{digit}</option>' in page.text
    assert '<aside id="help" hidden>' in page.text and "<dt>x</dt>" in page.text
    assert "<th>what was labeled</th>" in page.text


def test_review_keys_avoid_the_reserved_ones() -> None:
    from exemplar.server.routes.pages import REVIEW_KEYS, class_keys

    assert class_keys(["a", "b"], REVIEW_KEYS) == ["a", "b"]
    # "j" moves down on the review page, so one-letter classes that use it get digits
    assert class_keys(["i", "j"], REVIEW_KEYS) == ["1", "2"]
    assert class_keys(["i", "j"]) == ["i", "j"]  # the labeling page does not reserve "j"


def test_accept_correct_reject_append_history(served: Served) -> None:
    ids = _seed(served.root)
    client = served.login("rev")
    for name, body, status, label in (
        ("agree", {"action": "accept"}, "verified", "1"),
        ("conflict", {"action": "correct", "label": "7"}, "verified", "7"),
        ("unsure", {"action": "reject"}, "rejected", "5"),
    ):
        before = _rows(served.root, ids[name])
        r = client.post(f"/api/v1/review/{ids[name]}", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == status and r.json()["label"] == label
        after = _rows(served.root, ids[name])
        assert after[: len(before)] == before  # old rows untouched
        assert len(after) == len(before) + 1
        assert after[-1][1:] == (label, status, "rev")
    # reviewed labels leave the review list
    left = {row["item_id"] for row in client.get("/api/v1/review").json()["items"]}
    assert left.isdisjoint({ids["agree"], ids["conflict"], ids["unsure"]})
    assert ids["disagree"] in left
    # bad requests
    assert (
        client.post(f"/api/v1/review/{ids['disagree']}", json={"action": "correct"}).status_code
        == 422
    )
    bad = {"action": "correct", "label": "cat"}
    assert client.post(f"/api/v1/review/{ids['disagree']}", json=bad).status_code == 422
    assert client.post("/api/v1/review/999999", json={"action": "accept"}).status_code == 404


def test_annotator_may_not_review(served: Served) -> None:
    ids = _seed(served.root)
    assert served.client.get("/api/v1/review").status_code == 401
    client = served.login("ann")
    assert client.get("/api/v1/review").status_code == 403
    assert (
        client.post(f"/api/v1/review/{ids['agree']}", json={"action": "accept"}).status_code == 403
    )
    assert client.get("/review").status_code == 403
    served.login("boss")
    assert served.client.get("/api/v1/review").status_code == 200


def test_dashboard_json(served: Served) -> None:
    _seed(served.root)
    client = served.login("ann")
    r = client.get("/api/v1/dashboard")
    assert r.status_code == 200, r.text
    data = r.json()
    # current labels: 1, 2, 4 (newest of the disagreeing item), 5
    assert data["labels_per_class"] == {c: int(c in {"1", "2", "4", "5"}) for c in CLASSES}
    assert data["labels_total"] == 4
    assert set(data["rare_classes"]) == set(CLASSES)  # every class under 5 labels
    by_name = {t["annotator"]: t for t in data["throughput"]}
    assert by_name["ann"]["labels"] == 4 and by_name["ann"]["labels_24h"] == 4
    assert by_name["other"]["labels"] == 1
    assert by_name["ann"]["per_hour_24h"] == round(4 / 24, 3)
    assert by_name["ann"]["per_hour_overall"] == 4.0
    assert data["cycle"] == client.get("/api/v1/status").json()["cycle"]["cycle"]
    assert data["model_version"] == "fake-v1"
    assert data["stopping"]["criteria"] == [{"name": "label_budget", "budget": 50}]
    assert data["stopping"]["stopped"] is False
    # the criteria in words, with progress: the 4 current labels are pool items
    assert [(c["text"], c["met"], c["depth"]) for c in data["stopping"]["progress"]] == [
        ("label budget: 4 of 50 labels", False, 0)
    ]
    assert isinstance(data["learning_curve"], list)
    vs = data["learning_curve_vs_random"]
    assert vs["active"] == [] and vs["random"] == [] and vs["note"]


def test_rare_classes_rule() -> None:
    assert rare_classes({"a": 100, "b": 100, "c": 10, "d": 4}) == ["c", "d"]
    assert rare_classes({"a": 10, "b": 12}) == []
    assert rare_classes({}) == []


def test_pages_use_vendored_chart_library(served: Served) -> None:
    assert served.client.get("/dashboard", follow_redirects=False).status_code == 303
    served.login("rev")
    for path in ("/dashboard", "/review"):
        page = served.client.get(path)
        assert page.status_code == 200
        srcs = re.findall(r'<script[^>]*src="([^"]+)"', page.text)
        assert srcs and all(s.startswith("/static/") for s in srcs)
        assert not re.search(r"<script[^>]*src=\"(https?:)?//", page.text)
    dash = served.client.get("/dashboard").text
    assert '<script src="/static/vendor/chart.umd.min.js"' in dash
    lib = served.client.get("/static/vendor/chart.umd.min.js")
    assert lib.status_code == 200 and "Chart.js v4" in lib.text[:200]
    assert served.client.get("/static/vendor/chart.js-LICENSE.md").status_code == 200
    for js in ("/static/review.js", "/static/dashboard.js"):
        source = served.client.get(js).text
        assert "innerHTML" not in source and "textContent" in source


def test_hostile_names_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    root = tmp_path / "evil"
    with Project.init(root, [evil, "a&b"], oracle={"kind": "human"}) as project:
        data = tmp_path / "x.npz"
        np.savez(data, X=np.eye(4), y=np.asarray([evil, "a&b", evil, "a&b"]))
        project.import_(data, labels_as="ground_truth")
        add_user(project.db, "rev", "reviewer", PASSWORD)
        with project.db.read() as s:
            item_id = s.scalars(select(Item.id).limit(1)).one()
        with project.db.session() as s:
            add_label(s, item_id, evil, classes=project.classes, source="human", annotator=evil)
            s.execute(update(Item).values(split=Split.POOL))
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        served = Served(root, client)
        served.login("rev")
        for path in ("/review", "/dashboard"):
            page = client.get(path)
            assert page.status_code == 200
            assert evil not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/review").text
        rows = client.get("/api/v1/review").json()["items"]
        assert rows[0]["annotator"] == evil and rows[0]["label"] == evil  # JSON, shown as text
        assert client.get("/api/v1/dashboard").json()["labels_per_class"][evil] == 1


def test_learning_curve_on_gold_set(tmp_path: Path) -> None:
    from loop_helpers import make_project

    root = tmp_path / "sim"
    with make_project(root, n=300, budget=40) as project:
        with project.db.session() as s:
            s.execute(update(Item).where(Item.row >= 250).values(split=Split.TEST))
        project.run()
        curve = learning_curve_vs_random(project)
        assert curve["gold_size"] == 50
        assert curve["active"] and all(0.0 <= p["accuracy"] <= 1.0 for p in curve["active"])
        assert curve["random"] == [] and "random-control" in curve["note"]
        # a control arm's labels give a second curve
        with project.db.read() as s:
            pool = list(
                s.scalars(
                    select(Item).where(Item.split == Split.POOL).order_by(Item.row.desc()).limit(30)
                )
            )
        with project.db.session() as s:
            for item in pool:
                add_label(
                    s,
                    item.id,
                    item.ground_truth,
                    classes=project.classes,
                    source="simulated",
                    strategy="random-control",
                )
            n = s.scalar(select(func.count()).select_from(Label))
        assert n
        curve = learning_curve_vs_random(project)
        assert curve["random"] and len(curve["random"]) == len(curve["active"])
        assert all(0.0 <= p["accuracy"] <= 1.0 for p in curve["random"])
