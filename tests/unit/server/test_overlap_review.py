"""Overlap 2 through the API: two annotators per item, disputes first on the review list,
only reviewers resolve them, and the dashboard counts follow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, Served
from sqlalchemy import select

from exemplar.project import Project
from exemplar.server import create_app
from exemplar.store.accounts import add_user
from exemplar.store.labels import add_label
from exemplar.store.schema import Item, Label, LabelSource
from loop_helpers import make_project


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A human project with overlap 2 whose first batch (20 items, 40 slots) waits."""
    root = tmp_path / "proj"
    with make_project(root, oracle="human", n=200, oracle_extra={"overlap": 2}) as project:
        assert project.run().status == "waiting"
        for name, role in (("ann", "annotator"), ("ann2", "annotator"), ("rev", "reviewer")):
            add_user(project.db, name, role, PASSWORD)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        yield Served(root, client)


def _next(client: TestClient, after: int | None = None) -> dict[str, Any] | None:
    r = client.get("/api/v1/items/next" + (f"?after={after}" if after else ""))
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def _label(client: TestClient, entry_id: int, label: str) -> dict[str, Any]:
    r = client.post("/api/v1/labels", json={"entry_id": entry_id, "label": label})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _history(root: Path, item_id: int) -> list[tuple[str | None, str | None, str, str | None]]:
    with Project.open(root) as project, project.db.read() as s:
        rows = s.scalars(select(Label).where(Label.item_id == item_id).order_by(Label.id))
        return [(r.annotator, r.label, r.status, r.strategy) for r in rows]


def test_each_annotator_gets_each_item_once(served: Served) -> None:
    client = served.login("ann")
    first = _next(client)
    assert first is not None
    prefetched = _next(client, after=first["entry_id"])
    assert prefetched is not None and prefetched["item_id"] != first["item_id"]
    seen = []
    while (item := _next(client)) is not None:
        seen.append(item["item_id"])
        assert _label(client, item["entry_id"], "1")["status"] == "proposed"  # an open vote
    assert len(seen) == len(set(seen)) == 20  # the other 20 slots wait for someone else
    other = served.login("ann2")
    second = _next(other)
    assert second is not None and second["item_id"] in seen


def test_disagreement_goes_to_the_reviewer_first(served: Served) -> None:
    client = served.login("ann")
    mine = _next(client)
    assert mine is not None
    assert _label(client, mine["entry_id"], "3")["status"] == "proposed"
    served.login("ann2")
    theirs = _next(client)
    assert theirs is not None and theirs["item_id"] == mine["item_id"]
    assert theirs["entry_id"] != mine["entry_id"]
    assert _label(client, theirs["entry_id"], "4")["status"] == "proposed"
    item = mine["item_id"]
    # An older-style disagreement (two direct labels, risk 2) ranks below the dispute.
    with Project.open(served.root) as project:
        with project.db.read() as s:
            other = s.scalars(select(Item.id).where(Item.id != item).limit(1)).one()
        with project.db.session() as s:
            kw = {"classes": project.classes, "source": LabelSource.HUMAN}
            add_label(s, other, "5", annotator="x", **kw)
            add_label(s, other, "6", annotator="y", **kw)
    board = client.get("/api/v1/dashboard").json()
    assert (board["labels_disputed"], board["labels_total"]) == (1, 1)

    # Annotators may neither see nor resolve the review list.
    assert client.get("/api/v1/review").status_code == 403
    denied = client.post(f"/api/v1/review/{item}", json={"action": "accept", "label": "4"})
    assert denied.status_code == 403

    served.login("rev")
    rows = client.get("/api/v1/review").json()["items"]
    assert [r["item_id"] for r in rows[:2]] == [item, other]
    top = rows[0]
    assert (top["status"], top["label"], top["reasons"], top["risk"]) == (
        "disputed",
        None,
        ["disagreement"],
        4.0,
    )
    assert top["votes"] == [
        {"annotator": "ann", "label": "3", "verdict": "verified"},
        {"annotator": "ann2", "label": "4", "verdict": "verified"},
    ]
    before = _history(served.root, item)
    for body, detail in (
        ({"action": "accept"}, "is disputed (ann: 3, ann2: 4)"),
        ({"action": "accept", "label": "7"}, "accept one of its labels (3, 4)"),
        ({"action": "correct"}, "needs a label"),
        ({"action": "correct", "label": "cat"}, "unknown class"),
    ):
        r = client.post(f"/api/v1/review/{item}", json=body)
        assert r.status_code == 422 and detail in r.json()["detail"], r.text
    assert _history(served.root, item) == before  # refused decisions write nothing

    r = client.post(f"/api/v1/review/{item}", json={"action": "accept", "label": "4"})
    assert r.status_code == 200, r.text
    assert (r.json()["label"], r.json()["status"], r.json()["annotator"]) == (
        "4",
        "verified",
        "rev",
    )
    assert _history(served.root, item) == [
        ("ann", "3", "proposed", "random"),
        ("ann2", "4", "proposed", "random"),
        (None, None, "disputed", "random"),
        ("rev", "4", "verified", "review"),
    ]
    assert item not in {r["item_id"] for r in client.get("/api/v1/review").json()["items"]}
    board = client.get("/api/v1/dashboard").json()
    assert (board["labels_disputed"], board["labels_total"]) == (0, 2)
    assert board["labels_per_class"]["4"] == 1


def test_accept_keeps_the_current_label_only(served: Served) -> None:
    with Project.open(served.root) as project:
        with project.db.read() as s:
            item = s.scalars(select(Item.id).limit(1)).one()
        with project.db.session() as s:
            add_label(s, item, "2", classes=project.classes, source="human", annotator="x")
    client = served.login("rev")
    r = client.post(f"/api/v1/review/{item}", json={"action": "accept", "label": "3"})
    assert r.status_code == 422 and "use 'correct'" in r.json()["detail"]
    r = client.post(f"/api/v1/review/{item}", json={"action": "accept", "label": "2"})
    assert r.status_code == 200 and r.json()["label"] == "2"
