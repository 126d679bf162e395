"""Stream routes: items posted are decided at once and logged, asked ones reach the
labeling feed, a skipped feed item comes back after ``skip_requeue_after`` others, and
the label page of a stream project is a feed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

from exemplar.project import Project
from exemplar.server import create_app
from exemplar.server.deps import CSRF_HEADER
from exemplar.store.accounts import add_user

PASSWORD = "correct horse battery"
CLASSES = [str(i) for i in range(10)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "stream"
    with Project.init(
        root,
        CLASSES,
        oracle={"kind": "human"},
        model={"candidates": [{"recipe": "logreg", "params": {"C": 1.0}}]},
        stream={"enabled": True, "manager": "random", "budget": 0.5, "skip_requeue_after": 2},
    ) as project:
        add_user(project.db, "ann", "annotator", PASSWORD)
        add_user(project.db, "boss", "admin", PASSWORD)
    return root


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        yield c


def _login(client: TestClient, name: str) -> None:
    response = client.post("/api/v1/session", json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers[CSRF_HEADER] = response.json()["csrf"]


def _rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n].astype(str)


def test_post_items_decides_logs_and_feeds_the_queue(client: TestClient) -> None:
    _login(client, "boss")
    X, _ = _rows(40)
    response = client.post(
        "/api/v1/stream/items", json={"items": [{"features": x.tolist()} for x in X]}
    )
    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    assert [d["seq"] for d in decisions] == list(range(1, 41))
    asked = [d["item_id"] for d in decisions if d["asked"]]
    assert 5 <= len(asked) <= 0.5 * 40 + 1
    assert decisions[-1]["budget_state"]["arrivals"] == 40
    assert all(d["threshold"] is None for d in decisions)  # random: a coin each

    log = client.get("/api/v1/stream/decisions", params={"limit": 100}).json()
    assert [r["seq"] for r in log["decisions"]] == list(range(1, 41))
    assert log["summary"]["asked"] == len(asked) and log["summary"]["arrivals"] == 40
    only_asked = client.get("/api/v1/stream/decisions", params={"asked": True}).json()
    assert [r["item_id"] for r in only_asked["decisions"]] == asked

    served = client.get("/api/v1/items/next")
    assert served.status_code == 200 and served.json()["item_id"] == asked[0]

    # A duplicate is not decided again: its earlier decision comes back, nothing is spent.
    again = client.post("/api/v1/stream/items", json={"items": [{"features": X[0].tolist()}]})
    repeat = again.json()["decisions"][0]
    assert repeat["item_id"] == decisions[0]["item_id"] and repeat["duplicate"] is True
    assert repeat["seq"] == 1 and repeat["asked"] == decisions[0]["asked"]
    assert not any(d["duplicate"] for d in decisions)
    log = client.get("/api/v1/stream/decisions", params={"limit": 100}).json()
    assert log["summary"]["arrivals"] == 40


def test_duplicates_in_one_post_are_decided_once(client: TestClient) -> None:
    _login(client, "boss")
    X, _ = _rows(2)
    rows = [X[0].tolist(), X[0].tolist(), X[1].tolist()]
    out = client.post("/api/v1/stream/items", json={"items": [{"features": r} for r in rows]})
    decisions = out.json()["decisions"]
    assert [(d["seq"], d["duplicate"]) for d in decisions] == [(1, False), (1, True), (2, False)]
    assert decisions[1]["budget_state"] == decisions[0]["budget_state"]
    summary = client.get("/api/v1/stream/decisions").json()["summary"]
    assert summary["arrivals"] == 2


def test_unknown_ground_truth_is_422_and_nothing_is_decided(client: TestClient) -> None:
    _login(client, "boss")
    X, _ = _rows(3)
    items = [
        {"features": X[0].tolist(), "ground_truth": "0"},
        {"features": X[1].tolist(), "ground_truth": "cat"},
        {"features": X[2].tolist(), "ground_truth": "2"},
    ]
    out = client.post("/api/v1/stream/items", json={"items": items})
    assert out.status_code == 422 and "'cat'" in out.text and "stream item 1" in out.text
    assert client.get("/api/v1/stream/decisions").json()["summary"]["arrivals"] == 0


def test_bad_manager_params_are_422_not_500(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    with Project.init(
        root,
        CLASSES,
        oracle={"kind": "human"},
        model={"candidates": [{"recipe": "logreg", "params": {}}]},
        stream={"enabled": True, "manager": "variable_uncertainty", "params": {"window": "abc"}},
    ) as project:
        add_user(project.db, "boss", "admin", PASSWORD)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        _login(c, "boss")
        out = c.post("/api/v1/stream/items", json={"items": [{"features": [0.0] * 64}]})
    assert out.status_code == 422 and "window" in out.text


def test_a_project_without_stream_enabled_refuses_items(tmp_path: Path) -> None:
    root = tmp_path / "pool"
    with Project.init(root, CLASSES, oracle={"kind": "human"}) as project:
        add_user(project.db, "boss", "admin", PASSWORD)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        _login(c, "boss")
        out = c.post("/api/v1/stream/items", json={"items": [{"features": [0.0] * 64}]})
        assert out.status_code == 422 and "enabled = true" in out.text
        assert 'name="exemplar-feed" content=""' in c.get("/label").text


def test_only_admins_post_and_bad_items_are_422(client: TestClient) -> None:
    _login(client, "ann")
    item = {"features": [0.0] * 64}
    assert client.post("/api/v1/stream/items", json={"items": [item]}).status_code == 403
    assert client.get("/api/v1/stream/decisions").status_code == 200
    client.delete("/api/v1/session")
    _login(client, "boss")
    both = {"features": [1.0], "text": "x"}
    assert client.post("/api/v1/stream/items", json={"items": [both]}).status_code == 422
    assert client.post("/api/v1/stream/items", json={"items": []}).status_code == 422
    first = client.post("/api/v1/stream/items", json={"items": [item]})
    assert first.status_code == 200
    wrong_dim = client.post("/api/v1/stream/items", json={"items": [{"features": [1.0, 2.0]}]})
    assert wrong_dim.status_code == 422 and "feature dimension" in wrong_dim.text


def test_skipped_feed_item_comes_back_after_k_others(client: TestClient) -> None:
    _login(client, "boss")
    X, y = _rows(60)
    decisions = client.post(
        "/api/v1/stream/items", json={"items": [{"features": x.tolist()} for x in X]}
    ).json()["decisions"]
    asked = [d["item_id"] for d in decisions if d["asked"]]
    assert len(asked) >= 5
    first = client.get("/api/v1/items/next").json()
    assert first["item_id"] == asked[0]
    skipped = client.post(f"/api/v1/items/{first['entry_id']}/skip")
    assert skipped.status_code == 200
    served = []
    for _ in range(4):
        item = client.get("/api/v1/items/next").json()
        served.append(item["item_id"])
        label = y[item["item_id"] - 1]
        posted = client.post(
            "/api/v1/labels", json={"entry_id": item["entry_id"], "label": str(label)}
        )
        assert posted.status_code == 200, posted.text
    assert served == [asked[1], asked[2], asked[0], asked[3]]


def test_a_lone_skipped_item_waits_for_new_arrivals(client: TestClient) -> None:
    _login(client, "boss")
    X, _ = _rows(60)
    rows = iter(X)
    asked: list[int] = []
    while len(asked) < 1:  # budget 0.5, a coin each: post until one is asked
        out = client.post(
            "/api/v1/stream/items", json={"items": [{"features": next(rows).tolist()}]}
        )
        asked += [d["item_id"] for d in out.json()["decisions"] if d["asked"]]
    first = client.get("/api/v1/items/next").json()
    assert first["item_id"] == asked[0]
    assert client.post(f"/api/v1/items/{first['entry_id']}/skip").status_code == 200
    assert client.get("/api/v1/items/next").status_code == 204  # not served straight back
    while len(asked) < 3:  # skip_requeue_after = 2: it returns after two new asked items
        out = client.post(
            "/api/v1/stream/items", json={"items": [{"features": next(rows).tolist()}]}
        )
        asked += [d["item_id"] for d in out.json()["decisions"] if d["asked"]]
        if len(asked) == 2:
            item = client.get("/api/v1/items/next").json()
            assert item["item_id"] == asked[1]
            client.post("/api/v1/labels", json={"entry_id": item["entry_id"], "label": "1"})
            assert client.get("/api/v1/items/next").status_code == 204
    served = []
    for _ in range(2):
        item = client.get("/api/v1/items/next").json()
        served.append(item["item_id"])
        client.post("/api/v1/labels", json={"entry_id": item["entry_id"], "label": "1"})
    assert served == [asked[2], asked[0]]
    assert client.get("/api/v1/items/next").status_code == 204


def test_label_page_of_a_stream_project_is_a_feed_from_the_start(client: TestClient) -> None:
    _login(client, "boss")
    page = client.get("/label")
    assert 'name="exemplar-feed" content="stream"' in page.text
