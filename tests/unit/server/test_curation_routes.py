"""The curation API (``/api/v1/curation``): each route's effect in the database, the roles
that may call it, and its error codes.

The project is a digits project (scikit-learn's ``load_digits``, features items) run by
the simulated oracle until its budget of 60 labels, so a model exists; 30 pool items carry
the model's proposals. It is built once (SQLite) and copied for each test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_helpers import PASSWORD
from sqlalchemy import select

from exemplar.project import Project
from exemplar.project import curation as facade
from exemplar.server import create_app
from exemplar.server.deps import CSRF_HEADER
from exemplar.store.accounts import add_user
from exemplar.store.schema import CurationOperation, Label
from loop_helpers import make_project

API = "/api/v1/curation"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits project with a trained model, 30 open proposals and 3 users."""
    root = tmp_path_factory.mktemp("curation") / "proj"
    with make_project(root, n=300, budget=60) as project:
        assert project.run().status == "stopped"
        assert facade.propose_now(project, sample=30)["proposed"] == 30
        for name, role in (("ann", "annotator"), ("rev", "reviewer"), ("boss", "admin")):
            add_user(project.db, name, role, PASSWORD)
    return root


@pytest.fixture
def root(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "proj"
    shutil.copytree(template, copy)
    return copy


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        yield c


def login(client: TestClient, name: str) -> TestClient:
    response = client.post("/api/v1/session", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers[CSRF_HEADER] = response.json()["csrf"]
    return client


def newest_label(root: Path, item_id: int) -> Label:
    with Project.open(root) as project, project.db.read() as s:
        row = s.scalars(
            select(Label).where(Label.item_id == item_id).order_by(Label.id.desc()).limit(1)
        ).one()
        s.expunge(row)
        return row


# -- verification queue --------------------------------------------------------------------


def test_annotator_reads_the_queue_filtered_and_ordered(client: TestClient) -> None:
    c = login(client, "ann")
    everything = c.get(f"{API}/verification", params={"limit": 1000}).json()
    assert everything["total"] == 30 and len(everything["items"]) == 30
    assert everything["classes"] == [str(i) for i in range(10)]
    confidences = [p["confidence"] for p in everything["items"]]
    # "uncertain": least confident first within each class, classes interleaved
    assert confidences[0] == min(confidences)
    for name in {p["label"] for p in everything["items"]}:
        mine = [p["confidence"] for p in everything["items"] if p["label"] == name]
        assert mine == sorted(mine)
    assert all("uri" not in p for p in everything["items"])  # file paths never sent
    assert {p["kind"] for p in everything["items"]} == {"label"}

    confident = c.get(f"{API}/verification", params={"order": "confident", "limit": 5}).json()
    assert [p["confidence"] for p in confident["items"]] == sorted(confidences, reverse=True)[:5]

    band = c.get(
        f"{API}/verification", params={"min_confidence": 0.5, "max_confidence": 0.9}
    ).json()
    assert band["total"] == sum(0.5 <= x <= 0.9 for x in confidences)
    assert all(0.5 <= p["confidence"] <= 0.9 for p in band["items"])

    label = everything["items"][0]["label"]
    one_class = c.get(f"{API}/verification", params={"label": label, "limit": 1000}).json()
    assert one_class["total"] == sum(p["label"] == label for p in everything["items"])
    assert {p["label"] for p in one_class["items"]} == {label}

    page = c.get(f"{API}/verification", params={"limit": 10, "offset": 10}).json()
    assert [p["id"] for p in page["items"]] == [p["id"] for p in everything["items"][10:20]]
    assert c.get(f"{API}/verification", params={"order": "random"}).status_code == 422
    assert c.get(f"{API}/verification", params={"min_confidence": 2}).status_code == 422


def test_annotator_verifies_and_rejects_proposals(client: TestClient, root: Path) -> None:
    c = login(client, "ann")
    first, second, third = c.get(f"{API}/verification", params={"limit": 3}).json()["items"]

    response = c.post(f"{API}/verification/label/{first['id']}/verify")
    assert response.status_code == 200, response.text
    row = newest_label(root, first["item_id"])
    assert row.id == response.json()["written"]
    assert (row.label, row.status, row.annotator) == (first["label"], "verified", "ann")

    other = "0" if second["label"] != "0" else "1"
    response = c.post(f"{API}/verification/label/{second['id']}/verify", json={"label": other})
    assert response.status_code == 200, response.text
    row = newest_label(root, second["item_id"])
    assert (row.label, row.status, row.annotator) == (other, "verified", "ann")

    response = c.post(f"{API}/verification/label/{third['id']}/reject")
    assert response.status_code == 200, response.text
    assert newest_label(root, third["item_id"]).status == "rejected"

    left = c.get(f"{API}/verification", params={"limit": 1000}).json()
    assert left["total"] == 27
    assert not {first["id"], second["id"], third["id"]} & {p["id"] for p in left["items"]}

    # decided already: 409; not a proposal: 404; unknown class: 400
    again = c.post(f"{API}/verification/label/{first['id']}/verify")
    assert again.status_code == 409 and "changed since proposal" in again.json()["detail"]
    assert c.post(f"{API}/verification/label/999999/reject").status_code == 404
    assert c.post(f"{API}/verification/object/999999/verify").status_code == 404
    fourth = left["items"][0]
    bad = c.post(f"{API}/verification/label/{fourth['id']}/verify", json={"label": "cat"})
    assert bad.status_code == 400 and "unknown class" in bad.json()["detail"]
    assert newest_label(root, fourth["item_id"]).status == "proposed"  # nothing written
    assert c.post(f"{API}/verification/box/{fourth['id']}/verify").status_code == 422


def test_roles_and_authentication(client: TestClient) -> None:
    assert client.get(f"{API}/verification").status_code == 401
    c = login(client, "ann")
    for method, path, body in (
        ("GET", "/operations", None),
        ("GET", "/operations/1", None),
        ("GET", "/gallery/3", None),
        ("POST", "/propose", {"sample": 5}),
        ("POST", "/find", {"steps": ["prune"]}),
        ("POST", "/operations/1/decisions", {"decisions": {"1": "accepted"}}),
        ("POST", "/operations/1/apply", None),
        ("POST", "/operations/1/undo", None),
        ("POST", "/operations/1/dismiss", None),
        ("POST", "/classes/split", {"class": "3", "n": 2}),
        ("POST", "/classes/merge", {"classes": ["3", "8"], "into": "3"}),
    ):
        response = c.request(method, API + path, json=body)
        assert response.status_code == 403, (path, response.text)
    assert c.get(f"{API}/operations").status_code == 403
    c.headers.pop(CSRF_HEADER)
    first = c.get(f"{API}/verification", params={"limit": 1}).json()["items"][0]
    assert c.post(f"{API}/verification/label/{first['id']}/verify").status_code == 403  # CSRF


def test_propose_writes_proposals(client: TestClient) -> None:
    c = login(client, "rev")
    response = c.post(f"{API}/propose", json={"sample": 10, "seed": 1})
    assert response.status_code == 200, response.text
    assert response.json()["proposed"] > 0
    total = c.get(f"{API}/verification").json()["total"]
    assert total > 30  # new pool items got proposals
    assert c.post(f"{API}/propose", json={"sample": -1}).status_code == 422


def test_propose_without_a_model_is_a_conflict(tmp_path: Path) -> None:
    with make_project(tmp_path / "fresh", n=50) as project:
        add_user(project.db, "boss", "admin", PASSWORD)
    with TestClient(create_app(tmp_path / "fresh"), base_url="http://127.0.0.1") as client:
        response = login(client, "boss").post(f"{API}/propose", json={})
        assert response.status_code == 409
        assert "no trained model" in response.json()["detail"]


def test_find_decide_apply_undo(client: TestClient, root: Path) -> None:
    c = login(client, "rev")
    response = c.post(f"{API}/find", json={"steps": ["label_errors"]})
    assert response.status_code == 200, response.text
    (op,) = response.json()
    assert op["kind"] == "label_errors" and op["status"] == "proposed"
    assert op["created_by"] == "rev" and sum(op["candidates"].values()) > 0
    listed = c.get(f"{API}/operations", params={"kind": "label_errors"}).json()
    assert [o["id"] for o in listed] == [op["id"]]
    assert c.get(f"{API}/operations", params={"status": "applied"}).json() == []

    detail = c.get(f"{API}/operations/{op['id']}").json()
    assert len(detail["items"]) == sum(op["candidates"].values())
    assert all("uri" not in cand for cand in detail["items"])
    first, *rest = detail["items"]
    chosen = next(k for k in detail["classes"] if k not in (first["current_label"],))
    response = c.post(
        f"{API}/operations/{op['id']}/decisions",
        json={
            "decisions": {str(first["id"]): "accepted", **{str(x["id"]): "declined" for x in rest}},
            "labels": {str(first["id"]): chosen},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["decided"] == 1 + len(rest)
    decided = c.get(f"{API}/operations/{op['id']}", params={"limit": 1}).json()
    assert len(decided["items"]) == 1 and decided["items"][0]["decision"] == "accepted"
    assert decided["items"][0]["suggested_label"] == chosen
    assert decided["items"][0]["decided_by"] == "rev"

    before = newest_label(root, first["item_id"]).label
    response = c.post(f"{API}/operations/{op['id']}/apply", json={})
    assert response.status_code == 200, response.text
    assert response.json()["written"] == 1 and response.json()["status"] == "applied"
    row = newest_label(root, first["item_id"])
    assert (row.label, row.status, row.annotator) == (chosen, "verified", "rev")
    for other in rest:  # declined: untouched
        assert newest_label(root, other["item_id"]).label == other["current_label"]

    again = c.post(f"{API}/operations/{op['id']}/apply")
    assert again.status_code == 409 and "it is applied" in again.json()["detail"]
    late = c.post(f"{API}/operations/{op['id']}/decisions", json={"decisions": {}})
    assert late.status_code == 409

    response = c.post(f"{API}/operations/{op['id']}/undo")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "undone" and response.json()["written"] == 1
    assert newest_label(root, first["item_id"]).label == before
    assert c.post(f"{API}/operations/{op['id']}/undo").status_code == 409

    assert c.get(f"{API}/operations/999999").status_code == 404
    assert c.post(f"{API}/operations/999999/apply").status_code == 404


def test_bad_decisions_are_400_and_write_nothing(client: TestClient, root: Path) -> None:
    c = login(client, "boss")  # admins may curate too
    (op,) = c.post(f"{API}/find", json={"steps": ["label_errors"]}).json()
    detail = c.get(f"{API}/operations/{op['id']}").json()
    cand = detail["items"][0]
    unknown = c.post(
        f"{API}/operations/{op['id']}/decisions", json={"decisions": {"999999": "accepted"}}
    )
    assert unknown.status_code == 400 and "no candidate 999999" in unknown.json()["detail"]
    wrong_class = c.post(
        f"{API}/operations/{op['id']}/decisions",
        json={"decisions": {str(cand["id"]): "accepted"}, "labels": {str(cand["id"]): "cat"}},
    )
    assert wrong_class.status_code == 400
    bad_value = c.post(
        f"{API}/operations/{op['id']}/decisions", json={"decisions": {str(cand["id"]): "maybe"}}
    )
    assert bad_value.status_code == 422
    after = c.get(f"{API}/operations/{op['id']}").json()
    assert after["candidates"] == op["candidates"]  # still all pending


def test_dismiss_closes_without_changes(client: TestClient, root: Path) -> None:
    c = login(client, "rev")
    (op,) = c.post(f"{API}/find", json={"steps": ["prune"]}).json()
    assert op["kind"] == "prune"
    detail = c.get(f"{API}/operations/{op['id']}").json()
    labels = {x["item_id"]: newest_label(root, x["item_id"]).id for x in detail["items"]}
    response = c.post(f"{API}/operations/{op['id']}/dismiss")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "dismissed" and response.json()["decided_by"] == "rev"
    assert {i: newest_label(root, i).id for i in labels} == labels
    assert c.post(f"{API}/operations/{op['id']}/dismiss").status_code == 409
    with Project.open(root) as project, project.db.read() as s:
        assert s.get_one(CurationOperation, op["id"]).status == "dismissed"


def test_split_then_apply_renames_the_class(client: TestClient, root: Path) -> None:
    c = login(client, "rev")
    response = c.post(f"{API}/classes/split", json={"class": "3", "into": ["3a", "3b"]})
    assert response.status_code == 200, response.text
    op = response.json()
    assert op["kind"] == "split" and op["params"]["into"] == ["3a", "3b"]
    assert {"3a", "3b"} <= set(op["classes"])
    assert {x["suggested_label"] for x in op["items"]} <= {"3a", "3b"}
    applied = c.post(f"{API}/operations/{op['id']}/apply", json={"all_pending": True})
    assert applied.status_code == 200, applied.text
    assert applied.json()["written"] == len(op["items"])
    with Project.open(root) as project:
        assert "3" not in project.classes and {"3a", "3b"} <= set(project.classes)
    for x in op["items"]:
        assert newest_label(root, x["item_id"]).label == x["suggested_label"]
    gone = c.get(f"{API}/gallery/3")
    assert gone.status_code == 404 and "unknown class" in gone.json()["detail"]


def test_split_and_merge_errors(client: TestClient) -> None:
    c = login(client, "rev")
    unknown = c.post(f"{API}/classes/split", json={"class": "cat", "n": 2})
    assert unknown.status_code == 400 and "unknown class" in unknown.json()["detail"]
    mismatch = c.post(f"{API}/classes/split", json={"class": "3", "into": ["a", "b"], "n": 3})
    assert mismatch.status_code == 400
    clash = c.post(f"{API}/classes/split", json={"class": "3", "into": ["4", "x"]})
    assert clash.status_code == 400 and "distinct and new" in clash.json()["detail"]
    merge = c.post(f"{API}/classes/merge", json={"classes": ["7"], "into": "1"})
    assert merge.status_code == 400 and "list it too" in merge.json()["detail"]
    ok = c.post(f"{API}/classes/merge", json={"classes": ["1", "7"], "into": "1"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["kind"] == "merge"
    assert {x["current_label"] for x in ok.json()["items"]} == {"7"}
    assert {x["suggested_label"] for x in ok.json()["items"]} == {"1"}
    assert c.post(f"{API}/classes/split", json={"n": 2}).status_code == 422


def test_gallery_is_ordered_by_risk_with_suspects(client: TestClient) -> None:
    c = login(client, "rev")
    (op,) = c.post(f"{API}/find", json={"steps": ["label_errors"]}).json()
    suspects = c.get(f"{API}/operations/{op['id']}").json()["items"]
    label = suspects[0]["current_label"]
    response = c.get(f"{API}/gallery/{label}", params={"limit": 1000})
    assert response.status_code == 200, response.text
    gallery = response.json()
    assert gallery["label"] == label and gallery["total"] == len(gallery["items"]) > 0
    risks = [e["risk"] for e in gallery["items"]]
    assert risks == sorted(risks, reverse=True)
    flagged = {e["item_id"]: e["suspect"] for e in gallery["items"] if e["suspect"]}
    mine = {s["item_id"] for s in suspects if s["current_label"] == label}
    assert mine <= set(flagged)
    for item_id in mine:
        assert flagged[item_id]["operation_id"] == op["id"]
        assert flagged[item_id]["kind"] == "label_errors"
    page = c.get(f"{API}/gallery/{label}", params={"limit": 2, "offset": 1}).json()
    assert [e["item_id"] for e in page["items"]] == [e["item_id"] for e in gallery["items"][1:3]]
    assert c.get(f"{API}/gallery/nope").status_code == 404


# -- the pages -------------------------------------------------------------------------------


def test_pages_by_role(client: TestClient) -> None:
    assert client.get("/curate", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/gallery", follow_redirects=False).headers["location"] == "/login"
    c = login(client, "ann")
    page = c.get("/curate")
    assert page.status_code == 200
    assert 'id="queue"' in page.text and "/static/curate.js" in page.text
    assert 'id="operations-section"' not in page.text  # the operations are for reviewers
    assert c.get("/gallery?label=3").status_code == 403
    assert c.delete("/api/v1/session").status_code == 204
    c = login(client, "rev")
    page = c.get("/curate")
    assert 'id="operations-section"' in page.text and 'id="split-form"' in page.text
    gallery = c.get("/gallery?label=3")
    assert gallery.status_code == 200 and 'data-label="3"' in gallery.text
    assert 'data-label="0"' in c.get("/gallery?label=nope").text  # unknown: the first class
    for script in ("curate.js", "gallery.js", "thumbs.js"):
        assert c.get(f"/static/{script}").status_code == 200
    assert 'href="/curate"' in c.get("/review").text and 'href="/gallery"' in c.get("/label").text


# -- objects (detection) ---------------------------------------------------------------------


@pytest.fixture
def detection_client(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """A detection project of 2 images (200x100, made in the database): three model
    proposals on the first, one object a person drew (and verified) on the second."""
    from exemplar.store.annotations import OBJECTS_LABEL, AnnotationIn, add_annotations
    from exemplar.store.labels import add_label
    from exemplar.store.schema import Item

    root = tmp_path / "det"
    classes = ["cell", "debris"]
    with Project.init(root, classes, task="detection", oracle={"kind": "human"}) as project:
        with project.db.session() as s:
            items = [
                Item(uid=f"img{k}", row=k, uri=str(root / f"img{k}.png"), kind="image")
                for k in range(2)
            ]
            for item in items:
                item.width, item.height = 200, 100
            s.add_all(items)
            s.flush()
            add_annotations(
                s,
                items[0].id,
                [
                    AnnotationIn("cell", (10.0, 10.0, 50.0, 50.0), confidence=0.9),
                    AnnotationIn("cell", (60.0, 10.0, 90.0, 40.0), confidence=0.4),
                    AnnotationIn("debris", (120.0, 50.0, 150.0, 90.0), confidence=0.6),
                ],
                status="proposed",
                source="model",
                model_version="v-test",
                classes=classes,
            )
            add_annotations(
                s,
                items[1].id,
                [AnnotationIn("cell", (5.0, 5.0, 25.0, 25.0))],
                status="verified",
                source="human",
                annotator="ann",
                classes=classes,
            )
            add_label(
                s,
                items[1].id,
                OBJECTS_LABEL,
                classes=[*classes, OBJECTS_LABEL],
                source="human",
                annotator="ann",
            )
        for name, role in (("ann", "annotator"), ("rev", "reviewer")):
            add_user(project.db, name, role, PASSWORD)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        yield c, root


def test_object_proposals_and_their_gallery(
    detection_client: tuple[TestClient, Path],
) -> None:
    from exemplar.store.annotations import OBJECTS_LABEL, object_history

    client, root = detection_client
    c = login(client, "ann")
    queue = c.get(f"{API}/verification", params={"order": "confident"}).json()
    assert queue["total"] == 3
    sure, unsure = (p for p in queue["items"] if p["label"] == "cell")
    (debris,) = (p for p in queue["items"] if p["label"] == "debris")
    assert {p["kind"] for p in queue["items"]} == {"object"}
    assert {p["item_kind"] for p in queue["items"]} == {"image"}
    assert unsure["box"] == [60.0, 10.0, 90.0, 40.0] and unsure["confidence"] == pytest.approx(0.4)

    fixed = c.post(
        f"{API}/verification/object/{unsure['id']}/verify", json={"box": [60, 12, 90, 40]}
    )
    assert fixed.status_code == 200, fixed.text
    assert c.post(f"{API}/verification/object/{sure['id']}/verify").status_code == 200
    assert c.post(f"{API}/verification/object/{debris['id']}/reject").status_code == 200
    again = c.post(f"{API}/verification/object/{debris['id']}/reject")
    assert again.status_code == 409 and "not an open proposal" in again.json()["detail"]
    with Project.open(root) as project, project.db.read() as s:
        last = {p["id"]: object_history(s, p["id"])[-1] for p in (sure, unsure, debris)}
        assert last[unsure["id"]].status == "verified" and last[unsure["id"]].annotator == "ann"
        assert (last[unsure["id"]].y0, last[unsure["id"]].x1) == (12.0, 90.0)
        assert last[debris["id"]].status == "hard_negative"  # 0.6 sure >= 0.5
    image = newest_label(root, unsure["item_id"])  # every proposal decided: the image is done
    assert (image.label, image.status) == (OBJECTS_LABEL, "verified")

    assert c.get(f"{API}/gallery/cell").status_code == 403
    assert c.delete("/api/v1/session").status_code == 204
    c = login(client, "rev")
    gallery = c.get(f"{API}/gallery/cell").json()
    assert [e["object_id"] for e in gallery["items"][:2]] == [unsure["id"], sure["id"]]
    assert [round(e["risk"], 3) for e in gallery["items"]] == [0.6, 0.1, 0.0]
    assert gallery["items"][0]["box"] == [60.0, 12.0, 90.0, 40.0]
    assert {e["item_kind"] for e in gallery["items"]} == {"image"}
    assert gallery["items"][2]["width"] == 200 and gallery["items"][2]["height"] == 100

    # a label-error suspicion on an object (recorded as the detection step records it):
    # the operation shows the object's newest box, the gallery puts it first, and applying
    # it relabels the object
    from exemplar.store.curation import CandidateIn, record_operation

    with Project.open(root) as project, project.db.session() as s:
        op_id = record_operation(
            s,
            "label_errors",
            [
                CandidateIn(
                    sure["item_id"],
                    "confident_learning",
                    score=0.95,
                    current_label="cell",
                    suggested_label="debris",
                    object_id=sure["id"],
                )
            ],
            summary="1 suspect",
        ).id
    (cand,) = c.get(f"{API}/operations/{op_id}").json()["items"]
    assert (cand["object_id"], cand["box"]) == (sure["id"], [10.0, 10.0, 50.0, 50.0])
    first = c.get(f"{API}/gallery/cell").json()["items"][0]
    assert (first["object_id"], first["risk"]) == (sure["id"], pytest.approx(0.95))
    assert first["suspect"]["operation_id"] == op_id
    assert first["suspect"]["suggested_label"] == "debris"
    applied = c.post(f"{API}/operations/{op_id}/apply", json={"all_pending": True})
    assert applied.status_code == 200 and applied.json()["written"] == 1, applied.text
    with Project.open(root) as project, project.db.read() as s:
        row = object_history(s, sure["id"])[-1]
        assert (row.label, row.status, row.annotator) == ("debris", "verified", "rev")
    assert sure["id"] not in {e["object_id"] for e in c.get(f"{API}/gallery/cell").json()["items"]}
