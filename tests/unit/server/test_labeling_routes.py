"""The labeling hot path as plain Starlette routes (``exemplar.server.routes.labeling``):
validation errors in FastAPI's 422 shape, authentication and CSRF, idempotent retries,
their OpenAPI operations, and their store calls around SQLite's writer turn.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import server_helpers
from fastapi.testclient import TestClient
from server_helpers import Served, build_project, ground_truth
from sqlalchemy import select

from exemplar.server import create_app
from exemplar.server.deps import CSRF_HEADER
from exemplar.server.routes import labeling
from exemplar.store.accounts import User, create_token

# A project on SQLite and on PostgreSQL (the database_url fixture of tests/conftest.py).
project_root = server_helpers.project_root

MAX_ID = 2**63 - 1
MIN_ID = -(2**63)
#: Only turns a deadlock into a failure; nothing here should come near it.
GUARD_S = 20.0


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite project with a queued batch and 3 users, built once for this module."""
    return build_project(tmp_path_factory.mktemp("labeling") / "proj")


@pytest.fixture
def sqlite_root(template: Path, tmp_path: Path) -> Path:
    """A private copy of ``template``."""
    return Path(shutil.copytree(template, tmp_path / "proj"))


@pytest.fixture
def served(sqlite_root: Path) -> Iterator[Served]:
    """The app over a SQLite project behind a TestClient."""
    with TestClient(create_app(sqlite_root), base_url="http://127.0.0.1") as client:
        yield Served(sqlite_root, client)


@pytest.fixture
def served_any(project_root: Path) -> Iterator[Served]:
    """The app over a project on SQLite or PostgreSQL."""
    with TestClient(create_app(project_root), base_url="http://127.0.0.1") as client:
        yield Served(project_root, client)


def _token(app: Any, name: str = "ann") -> dict[str, str]:
    """Bearer headers for user ``name`` of the app's project."""
    db = app.state.exemplar.project.db
    with db.read() as s:
        user = s.scalar(select(User).where(User.name == name))
    assert user is not None
    return {"Authorization": f"Bearer {create_token(db, user.id, 'test')}"}


def _locs(response: Any) -> list[list[Any]]:
    """The ``loc`` of every error of a FastAPI-shaped 422 (and that it is that shape)."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    for error in detail:
        assert {"loc", "msg", "type"} <= error.keys(), error
    return [error["loc"] for error in detail]


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [str(MAX_ID + 1), str(MIN_ID - 1), "abc", "1.5", ""])
def test_after_that_is_no_database_id_is_422(served: Served, after: str) -> None:
    auth = _token(served.client.app)
    r = served.client.get("/api/v1/items/next", params={"after": after}, headers=auth)
    assert _locs(r)[0] == ["query", "after"]


def test_after_at_the_edges_of_the_id_range_is_accepted(served: Served) -> None:
    auth = _token(served.client.app)
    for after in (MAX_ID, MIN_ID):
        r = served.client.get("/api/v1/items/next", params={"after": after}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["entry_id"] not in (MAX_ID, MIN_ID)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"entry_id": 1, "label": ', ["body"]),  # not JSON
        (b"\x80\x81", ["body"]),  # not UTF-8
        (b'{"entry_id": 1, "label": "\xff"}', ["body"]),  # not UTF-8 inside a string
        (b"", ["body"]),
        (b"[1, 2]", ["body"]),
        (b'{"label": "1"}', ["body", "entry_id"]),
        (b'{"entry_id": "one", "label": "1"}', ["body", "entry_id"]),
        (f'{{"entry_id": {MAX_ID + 1}, "label": "1"}}'.encode(), ["body", "entry_id"]),
        (b'{"entry_id": 1, "action": "maybe"}', ["body", "action"]),
        (b'{"entry_id": 1, "label": "1", "idempotency_key": "short"}', ["body", "idempotency_key"]),
        (
            b'{"entry_id": 1, "label": "1", "idempotency_key": "bad key!!"}',
            ["body", "idempotency_key"],
        ),
    ],
)
def test_an_invalid_label_body_is_422_at_the_body(
    served: Served, body: bytes, loc: list[str]
) -> None:
    auth = {**_token(served.client.app), "content-type": "application/json"}
    r = served.client.post("/api/v1/labels", content=body, headers=auth)
    locs = _locs(r)
    assert locs[0][: len(loc)] == loc, locs
    assert all(loc[0] == "body" for loc in locs)


def test_label_action_without_a_label_and_an_unknown_class_are_422(served: Served) -> None:
    auth = _token(served.client.app)
    entry = served.client.get("/api/v1/items/next", headers=auth).json()["entry_id"]
    r = served.client.post("/api/v1/labels", json={"entry_id": entry}, headers=auth)
    # FastAPI's documented 422 shape (HTTPValidationError): a list of located errors
    assert r.status_code == 422 and _locs(r) == [["body"]]
    assert "needs a label" in r.json()["detail"][0]["msg"]
    r = served.client.post(
        "/api/v1/labels", json={"entry_id": entry, "action": "label"}, headers=auth
    )
    assert r.status_code == 422
    r = served.client.post("/api/v1/labels", json={"entry_id": entry, "label": "cat"}, headers=auth)
    assert r.status_code == 422 and _locs(r) == [["body", "label"]]
    assert "cat" in r.json()["detail"][0]["msg"]
    # nothing was written: the entry is still the caller's, and labels fine
    assert served.client.get("/api/v1/items/next", headers=auth).json()["entry_id"] == entry
    r = served.client.post("/api/v1/labels", json={"entry_id": entry, "label": "1"}, headers=auth)
    assert r.status_code == 200, r.text


# -- the round trip --------------------------------------------------------------------------


def test_next_then_label_and_an_idempotent_retry(served_any: Served) -> None:
    client = served_any.client
    auth = _token(client.app)
    item = client.get("/api/v1/items/next", headers=auth)
    assert item.status_code == 200 and item.headers["content-type"] == "application/json"
    entry, item_id = item.json()["entry_id"], item.json()["item_id"]
    truth = ground_truth(served_any.root, item_id)
    body = {"entry_id": entry, "label": truth, "idempotency_key": "retry-key-0001"}
    first = client.post("/api/v1/labels", json=body, headers=auth)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/json"
    out = first.json()
    assert set(out) == {"label_id", "item_id", "label", "status"}
    assert isinstance(out["label_id"], int)
    assert (out["item_id"], out["label"], out["status"]) == (item_id, truth, "verified")
    retry = client.post("/api/v1/labels", json=body, headers=auth)
    assert retry.status_code == 200 and retry.json() == out
    # the next item is another one
    after = client.get("/api/v1/items/next", headers=auth).json()
    assert after["entry_id"] != entry


# -- authentication --------------------------------------------------------------------------


def test_the_hot_routes_need_authentication_before_anything_else(served: Served) -> None:
    client = served.client
    assert client.get("/api/v1/items/next").status_code == 401
    assert client.get("/api/v1/items/next", params={"after": "abc"}).status_code == 401
    assert client.post("/api/v1/labels", json={"entry_id": 1, "label": "1"}).status_code == 401
    assert client.post("/api/v1/labels", content=b"\x80").status_code == 401
    bad = {"Authorization": "Bearer exm_not-a-token"}
    assert client.get("/api/v1/items/next", headers=bad).status_code == 401
    basic = {"Authorization": "Basic YW5uOnB3"}
    r = client.post("/api/v1/labels", json={"entry_id": 1, "label": "1"}, headers=basic)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_a_cookie_session_needs_the_csrf_header_to_label(served: Served) -> None:
    client = served.login("ann")
    csrf = client.headers.pop(CSRF_HEADER)
    entry = client.get("/api/v1/items/next").json()["entry_id"]  # GET: no CSRF needed
    body = {"entry_id": entry, "label": "1"}
    assert client.post("/api/v1/labels", json=body).status_code == 403
    assert (
        client.post("/api/v1/labels", json=body, headers={CSRF_HEADER: "forged"}).status_code == 403
    )
    r = client.post("/api/v1/labels", json=body, headers={CSRF_HEADER: csrf})
    assert r.status_code == 200 and r.json()["label"] == "1"


def test_a_bearer_token_needs_no_csrf_header(served: Served) -> None:
    auth = _token(served.client.app)
    entry = served.client.get("/api/v1/items/next", headers=auth).json()["entry_id"]
    r = served.client.post("/api/v1/labels", json={"entry_id": entry, "label": "2"}, headers=auth)
    assert r.status_code == 200, r.text


# -- OpenAPI ---------------------------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_documents_the_hot_routes(served: Served) -> None:
    spec = served.client.get("/api/v1/openapi.json").json()
    schemas = spec["components"]["schemas"]

    get = spec["paths"]["/api/v1/items/next"]["get"]
    (after,) = [p for p in get["parameters"] if p["name"] == "after"]
    assert after["in"] == "query" and not after["required"]
    bounds = [s for s in after["schema"].get("anyOf", [after["schema"]]) if "maximum" in s]
    assert bounds and bounds[0]["maximum"] == MAX_ID and bounds[0]["minimum"] == MIN_ID
    assert {"200", "204", "422"} <= set(get["responses"])

    post = spec["paths"]["/api/v1/labels"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/LabelIn"}
    ok = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/LabelOut"}
    assert "422" in post["responses"]

    assert set(schemas["LabelIn"]["properties"]) == set(labeling.LabelIn.model_fields)
    assert schemas["LabelIn"]["required"] == ["entry_id"]
    assert set(schemas["LabelOut"]["properties"]) == set(labeling.LabelOut.model_fields)
    # every reference of the document resolves, the hot routes' included
    for ref in set(_refs(spec)):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    operation_ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))
    assert {"next_item", "post_label"} <= set(operation_ids)
    # documented once, then served from the cache
    assert served.client.get("/api/v1/openapi.json").json() == spec


# -- the writer turn -------------------------------------------------------------------------


class _TurnHolder:
    """A thread that holds the project's writer turn until released (at most GUARD_S)."""

    def __init__(self, app: Any, seconds: float = GUARD_S) -> None:
        self._db = app.state.exemplar.project.db
        self._seconds = seconds
        self.entered = threading.Event()
        self.released = threading.Event()
        self._stop = threading.Event()
        self.acquired_at = 0.0
        self.released_at = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._db.write_turn():
            self.acquired_at = time.monotonic()
            self.entered.set()
            self._stop.wait(self._seconds)
            self.released_at = time.monotonic()
            self.released.set()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self.entered.wait(GUARD_S)
        return self

    def release(self) -> None:
        self._stop.set()
        self._thread.join(GUARD_S)
        assert not self._thread.is_alive()

    def __exit__(self, *_exc: object) -> None:
        self.release()


@pytest.fixture
def store_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record for each store call of ``next`` whether it ran on the event loop."""
    calls: list[bool] = []
    real = labeling.next_payload

    def recording(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            calls.append(True)
        except RuntimeError:  # a worker thread
            calls.append(False)
        return real(*args)

    monkeypatch.setattr(labeling, "next_payload", recording)
    return calls


def test_next_waits_for_a_writer_that_holds_the_turn(
    served: Served, store_calls: list[bool]
) -> None:
    auth = _token(served.client.app)
    served.client.get("/api/v1/status", headers=auth)  # auth cached, token use recorded
    assert served.client.get("/api/v1/items/next", headers=auth).status_code == 200
    assert store_calls == [True]  # a free turn: inline, on the event loop
    with _TurnHolder(served.client.app, seconds=0.3) as holder:
        r = served.client.get("/api/v1/items/next", headers=auth)
        done = time.monotonic()
        assert holder.released.is_set()
    assert r.status_code == 200, r.text
    assert done >= holder.released_at  # it leased once the holder had left
    assert store_calls == [True, False]  # busy for over INLINE_PATIENCE_S: a worker thread


def test_a_read_request_is_not_held_up_by_a_waiting_hot_request(sqlite_root: Path) -> None:
    app = create_app(sqlite_root)
    auth = _token(app)

    async def scenario() -> tuple[int, int, bool]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            warm = await client.get("/api/v1/status", headers=auth)  # caches the token's user
            assert warm.status_code == 200
            with _TurnHolder(app) as holder:
                hot = asyncio.create_task(client.get("/api/v1/items/next", headers=auth))
                await asyncio.sleep(0.1)  # the hot request is waiting for the turn by now
                status = await asyncio.wait_for(
                    client.get("/api/v1/status", headers=auth), GUARD_S / 2
                )
                # /status answered while the turn was held and the hot request waited
                still_held = not holder.released.is_set()
                waiting = not hot.done()
                holder.release()
                leased = await asyncio.wait_for(hot, GUARD_S)
            assert waiting
            return status.status_code, leased.status_code, still_held

    try:
        status, leased, still_held = asyncio.run(scenario())
    finally:
        app.state.exemplar.project.close()
    assert status == 200 and still_held
    assert leased == 200
