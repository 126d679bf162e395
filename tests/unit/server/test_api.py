"""The labeling server's JSON API over a real project: auth, roles, queue flow, safety."""

from __future__ import annotations

import logging
from pathlib import Path

import server_helpers
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, Served, ground_truth
from sqlalchemy import func, select

from exemplar.project import Project
from exemplar.server.deps import CSRF_HEADER
from exemplar.store.schema import Item, Label, QueueEntry

# Fixtures shared through a helper module (a second `conftest` would shadow tests/conftest).
project_root = server_helpers.project_root
served = server_helpers.served


def _label_rows(root: Path, item_id: int) -> int:
    with Project.open(root) as project, project.db.read() as s:
        return int(s.scalar(select(func.count()).where(Label.item_id == item_id)) or 0)


# -- auth ------------------------------------------------------------------------------------


def test_login_ok_and_wrong_password(served: Served) -> None:
    bad = served.client.post("/api/v1/session", json={"name": "ann", "password": "nope-nope"})
    assert bad.status_code == 401
    assert served.client.get("/api/v1/status").status_code == 401
    served.login("ann")
    assert served.client.get("/api/v1/status").json()["queue"]["pending"] == 20
    assert served.client.delete("/api/v1/session").status_code == 204
    assert served.client.get("/api/v1/status").status_code == 401


def test_login_rate_limited_after_five_failures(served: Served) -> None:
    for _ in range(5):
        r = served.client.post("/api/v1/session", json={"name": "ann", "password": "wrong-pass"})
        assert r.status_code == 401
    r = served.client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
    assert r.status_code == 429
    assert "retry-after" in r.headers
    # another user from the same address is not blocked
    assert (
        served.client.post(
            "/api/v1/session", json={"name": "rev", "password": PASSWORD}
        ).status_code
        == 200
    )


def test_form_login_needs_csrf(served: Served) -> None:
    form = {"name": "ann", "password": PASSWORD}
    assert served.client.post("/api/v1/session", data=form).status_code == 403
    page = served.client.get("/login")
    assert page.status_code == 200
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = served.client.post("/api/v1/session", data={**form, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/label"
    label_page = served.client.get("/label")
    assert label_page.status_code == 200 and 'name="exemplar-csrf"' in label_page.text


def test_cookie_write_without_csrf_header_is_403(served: Served) -> None:
    client = served.login("ann")
    entry = client.get("/api/v1/items/next").json()["entry_id"]
    del client.headers[CSRF_HEADER]
    r = client.post("/api/v1/labels", json={"entry_id": entry, "label": "1"})
    assert r.status_code == 403
    client.headers[CSRF_HEADER] = "forged"
    assert client.post("/api/v1/labels", json={"entry_id": entry, "label": "1"}).status_code == 403


def test_roles_and_tokens(served: Served) -> None:
    new = {"name": "newbie", "role": "annotator", "password": "long enough pw"}
    assert served.client.post("/api/v1/users", json=new).status_code == 401
    served.login("ann")
    assert served.client.post("/api/v1/users", json=new).status_code == 403
    token = served.client.post("/api/v1/tokens", json={"name": "script"}).json()["token"]
    served.login("boss")
    created = served.client.post("/api/v1/users", json=new)
    assert created.status_code == 201 and created.json()["role"] == "annotator"
    assert served.client.post("/api/v1/users", json=new).status_code == 409
    # a bearer token works without cookies or CSRF header
    with TestClient(served.client.app, base_url="http://127.0.0.1") as script:
        assert script.get("/api/v1/status").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        item = script.get("/api/v1/items/next", headers=auth).json()
        r = script.post(
            "/api/v1/labels", headers=auth, json={"entry_id": item["entry_id"], "label": "3"}
        )
        assert r.status_code == 200
        bad = {"Authorization": "Bearer exm_not-a-token"}
        assert script.get("/api/v1/status", headers=bad).status_code == 401


# -- the queue -------------------------------------------------------------------------------


def test_next_submit_next(served: Served) -> None:
    client = served.login("ann")
    first = client.get("/api/v1/items/next").json()
    assert first["kind"] == "features" and first["classes"] == [str(i) for i in range(10)]
    assert first["display"]["features"]["dim"] == 64 and "uri" not in first
    assert first["strategy"] == "random" and first["proposal"] is None  # no model in cycle 1
    assert client.get("/api/v1/items/next").json()["entry_id"] == first["entry_id"]
    truth = ground_truth(served.root, first["item_id"])
    r = client.post("/api/v1/labels", json={"entry_id": first["entry_id"], "label": truth})
    assert r.status_code == 200 and r.json()["label"] == truth
    second = client.get("/api/v1/items/next").json()
    assert second["entry_id"] != first["entry_id"]
    # unknown class, unknown entry, someone else's entry
    assert (
        client.post(
            "/api/v1/labels", json={"entry_id": second["entry_id"], "label": "cat"}
        ).status_code
        == 422
    )
    assert client.post("/api/v1/labels", json={"entry_id": 9999, "label": "1"}).status_code == 404
    served.login("rev")
    r = client.post("/api/v1/labels", json={"entry_id": second["entry_id"], "label": "1"})
    assert r.status_code == 409


def test_prefetch_leases_at_most_one_more(served: Served) -> None:
    client = served.login("ann")
    first = client.get("/api/v1/items/next").json()
    ahead = client.get(f"/api/v1/items/next?after={first['entry_id']}").json()
    assert ahead["entry_id"] != first["entry_id"]
    again = client.get(f"/api/v1/items/next?after={first['entry_id']}").json()
    assert again["entry_id"] == ahead["entry_id"]
    assert client.get("/api/v1/status").json()["queue"]["leased"] == 2


def test_idempotent_retry_returns_same_label(served: Served) -> None:
    client = served.login("ann")
    item = client.get("/api/v1/items/next").json()
    body = {"entry_id": item["entry_id"], "label": "4", "idempotency_key": "key-0001-abc"}
    first = client.post("/api/v1/labels", json=body)
    retry = client.post("/api/v1/labels", json=body)
    assert first.status_code == retry.status_code == 200
    assert first.json()["label_id"] == retry.json()["label_id"]
    assert _label_rows(served.root, item["item_id"]) == 1
    # without a key, a second submit of a done entry is refused, not written twice
    del body["idempotency_key"]
    assert client.post("/api/v1/labels", json=body).status_code == 409
    assert _label_rows(served.root, item["item_id"]) == 1


def test_skip_brings_item_back_after_the_others(served: Served) -> None:
    client = served.login("ann")
    skipped = client.get("/api/v1/items/next").json()
    r = client.post(f"/api/v1/items/{skipped['entry_id']}/skip")
    assert r.status_code == 200
    seen = []
    for _ in range(19):
        item = client.get("/api/v1/items/next").json()
        assert item["entry_id"] != skipped["entry_id"]
        seen.append(item["entry_id"])
        client.post("/api/v1/labels", json={"entry_id": item["entry_id"], "label": "0"})
    assert len(set(seen)) == 19
    assert client.get("/api/v1/items/next").json()["entry_id"] == skipped["entry_id"]


def test_undo_reopens_the_last_label(served: Served) -> None:
    client = served.login("ann")
    assert client.post("/api/v1/labels/undo").status_code == 409
    a = client.get("/api/v1/items/next").json()
    la = client.post("/api/v1/labels", json={"entry_id": a["entry_id"], "label": "5"}).json()
    b = client.get("/api/v1/items/next").json()
    undone = client.post("/api/v1/labels/undo").json()
    assert undone["entry_id"] == a["entry_id"] and undone["undone_label_id"] == la["label_id"]
    # the undone item comes first; the held one went back to the queue
    assert client.get("/api/v1/items/next").json()["entry_id"] == a["entry_id"]
    status = client.get("/api/v1/status").json()
    assert status["labels"]["verified"] == 0 and status["queue"]["leased"] == 1
    fixed = client.post("/api/v1/labels", json={"entry_id": a["entry_id"], "label": "6"})
    assert fixed.status_code == 200
    assert client.get("/api/v1/status").json()["labels"]["per_class"]["6"] == 1
    assert b["entry_id"] != a["entry_id"]
    # another annotator cannot undo ann's label
    served.login("rev")
    assert client.post("/api/v1/labels/undo").status_code == 409


# -- media, escaping, limits --------------------------------------------------------------------


def test_media_only_for_registered_images(served: Served, caplog: object) -> None:
    client = served.login("ann")
    item = client.get("/api/v1/items/next").json()
    assert client.get(f"/api/v1/media/{item['item_id']}").status_code == 404  # not an image
    assert client.get("/api/v1/media/99999").status_code == 404
    with caplog.at_level(logging.WARNING, logger="exemplar.server"):  # type: ignore[attr-defined]
        for path in ("..%2F..%2Fexemplar.toml", "%2e%2e/%2e%2e/etc/passwd", "1/../../x"):
            assert client.get(f"/api/v1/media/{path}").status_code == 404
    assert "refused media path" in caplog.text  # type: ignore[attr-defined]
    # a registered image is served
    png = served.root / "pic.png"
    from PIL import Image

    Image.new("L", (8, 8)).save(png)
    with Project.open(served.root) as project, project.db.session() as s:
        row = s.get_one(Item, item["item_id"])
        row.kind, row.uri = "image", str(png)
    r = client.get(f"/api/v1/media/{item['item_id']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert client.get("/api/v1/items/next").json()["display"] == {
        "media_url": f"/api/v1/media/{item['item_id']}"
    }


def test_xss_payload_is_data_and_page_uses_text_content(served: Served) -> None:
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    client = served.login("ann")
    item = client.get("/api/v1/items/next").json()
    with Project.open(served.root) as project, project.db.session() as s:
        row = s.get_one(Item, item["item_id"])
        row.kind, row.text = "text", payload
    shown = client.get("/api/v1/items/next")
    assert shown.headers["content-type"].startswith("application/json")
    assert shown.json()["display"] == {"text": payload}
    page = client.get("/label")
    assert "<script>alert" not in page.text
    assert "content-security-policy" in page.headers
    static = Path(__file__).parents[3] / "src/exemplar/server"
    for path in [*static.glob("static/*.js"), *static.glob("templates/*.html")]:
        text = path.read_text()
        assert "innerHTML" not in text and "outerHTML" not in text, path
        assert "| safe" not in text and "|safe" not in text, path
    assert "textContent" in (static / "static/label.js").read_text()


def test_body_too_large_is_413(served: Served) -> None:
    client = served.login("ann")
    big = {"entry_id": 1, "label": "1", "pad": "x" * (1024 * 1024 + 10)}
    assert client.post("/api/v1/labels", json=big).status_code == 413
    assert (
        client.post(
            "/api/v1/session",
            content=b"x" * (2 * 1024 * 1024),
            headers={"content-type": "text/plain"},
        ).status_code
        == 413
    )


def test_openapi_is_versioned(served: Served) -> None:
    spec = served.client.get("/api/v1/openapi.json").json()
    assert "/api/v1/labels" in spec["paths"] and "/api/v1/items/next" in spec["paths"]


def test_proposal_after_first_model_and_accept_reject(served: Served) -> None:
    client = served.login("ann")
    for _ in range(20):
        item = client.get("/api/v1/items/next").json()
        truth = ground_truth(served.root, item["item_id"])
        client.post("/api/v1/labels", json={"entry_id": item["entry_id"], "label": truth})
    assert client.get("/api/v1/items/next").status_code == 204
    with Project.open(served.root) as project:
        project.run()
    # the open app reads the new cycle's proba array
    item = client.get("/api/v1/items/next").json()
    proposal = item["proposal"]
    assert proposal["label"] in item["classes"] and 0 < proposal["confidence"] <= 1
    assert item["strategy"] and item["score"] is not None
    r = client.post("/api/v1/labels", json={"entry_id": item["entry_id"], "action": "accept"})
    assert r.json()["label"] == proposal["label"] and r.json()["status"] == "verified"
    other = client.get("/api/v1/items/next").json()
    r = client.post("/api/v1/labels", json={"entry_id": other["entry_id"], "action": "reject"})
    assert r.json()["status"] == "rejected"
    with Project.open(served.root) as project, project.db.read() as s:
        assert s.scalar(select(QueueEntry.status).where(QueueEntry.id == other["entry_id"])) == (
            "done"
        )


def test_class_keys_follow_one_character_names() -> None:
    from exemplar.server.routes.pages import class_keys

    assert class_keys(["0", "1", "2"]) == ["0", "1", "2"]
    assert class_keys(["cat", "dog"]) == ["1", "2"]
    assert class_keys(["a", "x"]) == ["1", "2"]  # "x" is the reject key
    assert class_keys([f"c{i}" for i in range(11)])[9:] == ["0", ""]
