"""On PostgreSQL the hot routes await the async queue (store/pg_async.py) on the event loop.

While the app runs (its lifespan), ``GET /api/v1/items/next`` and ``POST /api/v1/labels``
with a class lease and submit through :class:`~exemplar.store.pg_async.AsyncQueue`, not
through a worker thread (:meth:`~exemplar.server.deps.ServerState.run_store`); accept and
reject (which read the model's proposal) and an app driven without its lifespan keep the
thread path. SQLite never opens an async queue.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_helpers import build_project, ground_truth
from sqlalchemy import select

from exemplar.server import create_app
from exemplar.server.deps import ServerState
from exemplar.store.accounts import User, create_token
from exemplar.store.pg_async import AsyncQueue

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

NEXT, LABELS = "/api/v1/items/next", "/api/v1/labels"


@pytest.fixture
def pg_root(tmp_path: Path) -> Iterator[Path]:
    """A human-oracle project on a fresh PostgreSQL database (server_helpers.build_project)."""
    for url in fresh_pg_database():
        yield build_project(tmp_path / "proj", url)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the async queue's leases and submits and the thread path's store calls."""
    counts: Counter[str] = Counter()

    def counting(cls: type, name: str) -> None:
        real = getattr(cls, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    counting(AsyncQueue, "lease")
    counting(AsyncQueue, "submit")
    counting(ServerState, "run_store")
    return counts


def _auth(app: Any) -> dict[str, str]:
    db = app.state.exemplar.project.db
    with db.read() as s:
        user = s.scalar(select(User).where(User.name == "ann"))
    assert user is not None
    return {"Authorization": f"Bearer {create_token(db, user.id, 'test')}"}


def test_the_hot_routes_await_the_async_queue_on_postgresql(
    pg_root: Path, calls: Counter[str]
) -> None:
    app = create_app(pg_root)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        state = app.state.exemplar
        assert isinstance(state.queue, AsyncQueue)
        auth = _auth(app)
        item = client.get(NEXT, headers=auth).json()
        truth = ground_truth(pg_root, item["item_id"])
        body = {"entry_id": item["entry_id"], "label": truth, "idempotency_key": "key-000001"}
        first = client.post(LABELS, json=body, headers=auth)
        assert first.status_code == 200, first.text
        assert first.json()["item_id"] == item["item_id"] and first.json()["label"] == truth
        # A retry: the one statement writes nothing, the transaction path finds the label.
        retry = client.post(LABELS, json=body, headers=auth)
        assert retry.status_code == 200 and retry.json() == first.json()
        assert calls == {"lease": 1, "submit": 2}  # no worker-thread hand-off
        # A lost lease is reported as on the thread path (409).
        other = client.get(NEXT, headers=auth).json()
        lost = client.post(
            LABELS, json={"entry_id": item["entry_id"], "label": truth}, headers=auth
        )
        assert lost.status_code == 409, lost.text
        # Accept reads the model's proposal: the thread path (there is none yet: 409).
        accept = client.post(
            LABELS, json={"entry_id": other["entry_id"], "action": "accept"}, headers=auth
        )
        assert accept.status_code == 409 and "no model proposal" in accept.text
        assert calls == {"lease": 2, "submit": 3, "run_store": 1}
    assert state.queue is None  # closed at shutdown


def test_without_the_lifespan_the_hot_routes_use_worker_threads(
    pg_root: Path, calls: Counter[str]
) -> None:
    app = create_app(pg_root)
    client = TestClient(app, base_url="http://127.0.0.1")  # not entered: no lifespan
    auth = _auth(app)
    item = client.get(NEXT, headers=auth).json()
    truth = ground_truth(pg_root, item["item_id"])
    r = client.post(LABELS, json={"entry_id": item["entry_id"], "label": truth}, headers=auth)
    assert r.status_code == 200, r.text
    assert app.state.exemplar.queue is None
    assert calls == {"run_store": 2}
    app.state.exemplar.project.close()


def test_sqlite_serves_without_an_async_queue(tmp_path: Path, calls: Counter[str]) -> None:
    root = build_project(tmp_path / "proj")
    app = create_app(root)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.exemplar.queue is None
        assert client.get(NEXT, headers=_auth(app)).status_code == 200
    assert calls == {"run_store": 1}


def test_an_app_served_on_two_event_loops_gets_a_queue_on_each(pg_root: Path) -> None:
    # Two test clients at once run the app on two loops: each must use (and close) its own
    # queue; a queue's connections cannot be awaited from another loop.
    app = create_app(pg_root)
    with TestClient(app, base_url="http://127.0.0.1") as outer:
        auth = _auth(app)
        first = app.state.exemplar.queue
        with TestClient(app, base_url="http://127.0.0.1") as inner:
            item = inner.get(NEXT, headers=auth).json()
            truth = ground_truth(pg_root, item["item_id"])
            body = {"entry_id": item["entry_id"], "label": truth}
            assert inner.post(LABELS, json=body, headers=auth).status_code == 200
        assert app.state.exemplar.queue is first  # the outer loop's queue is still open
        assert outer.get(NEXT, headers=auth).status_code == 200
    assert app.state.exemplar.queue is None
