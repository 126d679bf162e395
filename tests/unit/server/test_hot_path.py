"""The server's hot path under load: auth cache, immutable-fact caches, the learner process,
and ``exemplar serve --workers``. Timing goals live in bench/server_load.py, not here."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import server_helpers
from fastapi.testclient import TestClient
from server_helpers import Served, ground_truth, until
from sklearn.datasets import load_digits
from sqlalchemy import event, select, update

from exemplar.project import Project
from exemplar.server import create_app
from exemplar.server.cache import hot_cache
from exemplar.server.security import TtlCache
from exemplar.server.worker import BackgroundLearner, LearnerLink, LearnerProcess
from exemplar.store.accounts import User, create_token
from exemplar.store.schema import Cycle, Item, ModelVersion
from loop_helpers import make_project
from uvicorn_server import free_port

project_root = server_helpers.project_root
served = server_helpers.served

TIMEOUT = 90.0


_until = functools.partial(until, timeout=TIMEOUT)


# -- the auth cache ----------------------------------------------------------------------------


def test_ttl_cache_expires_bounds_its_size_and_never_keeps_none() -> None:
    cache: TtlCache[str, int | None] = TtlCache(ttl=0.2, max_size=2)
    calls: list[str] = []

    def compute(key: str, value: int | None) -> Callable[[], int | None]:
        def run() -> int | None:
            calls.append(key)
            return value

        return run

    assert cache.get("a", compute("a", 1)) == 1
    assert cache.get("a", compute("a", 2)) == 1  # cached
    assert cache.get("none", compute("none", None)) is None
    assert cache.get("none", compute("none", None)) is None  # a miss is never cached
    assert calls == ["a", "none", "none"]
    time.sleep(0.25)
    assert cache.get("a", compute("a", 3)) == 3  # expired: computed again
    cache.get("b", compute("b", 4))
    cache.get("c", compute("c", 5))
    assert len(cache._items) <= 2


def test_bearer_auth_is_cached_and_a_deactivated_user_is_refused_once_it_expires(
    served: Served,
) -> None:
    state = served.client.app.state.exemplar  # type: ignore[attr-defined]
    project: Project = state.project
    with project.db.read() as s:
        ann = s.scalar(select(User).where(User.name == "ann"))
    assert ann is not None
    token = create_token(project.db, ann.id, "test")
    statements: list[str] = []

    def record(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(project.db.engine, "before_cursor_execute", record)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(3):
            assert served.client.get("/api/v1/status", headers=headers).status_code == 200
        lookups = [s for s in statements if s.lstrip().startswith("SELECT") and "api_tokens" in s]
        assert len(lookups) == 1  # one lookup for 3 requests
        with project.db.session() as s:
            s.execute(update(User).where(User.id == ann.id).values(active=False))
        # Within the cache's lifetime the user still gets in ...
        assert served.client.get("/api/v1/status", headers=headers).status_code == 200
        state.users.clear()  # ... and not once the entry has expired.
        assert served.client.get("/api/v1/status", headers=headers).status_code == 401
    finally:
        event.remove(project.db.engine, "before_cursor_execute", record)


# -- caches of immutable facts -----------------------------------------------------------------


def _more_digits(path: Path, start: int, stop: int) -> Path:
    X, y = load_digits(return_X_y=True)
    np.savez(path, X=X[start:stop], y=y[start:stop].astype(str))
    return path


def test_hot_cache_serves_the_same_facts_as_the_database(tmp_path: Path, database_url: str) -> None:
    with make_project(tmp_path / "p", database_url=database_url, oracle="human", n=100) as p:
        p.run()  # cycle 0: random, no model
        cache = hot_cache(p)
        assert hot_cache(p) is cache
        features = np.asarray(p.features())
        np.testing.assert_array_equal(cache.feature_row(7), features[7])
        # Rows appended after the map was made are found (the map is reopened).
        p.import_(_more_digits(tmp_path / "more.npz", 600, 650), labels_as="ground_truth")
        np.testing.assert_array_equal(cache.feature_row(120), np.asarray(p.features())[120])

        with p.db.read() as s:
            cycle0 = s.scalar(select(Cycle).where(Cycle.number == 0))
            item = s.scalar(select(Item).where(Item.row == 120))
        assert cycle0 is not None and item is not None
        assert cache.cycle_model(cycle0.id) is None  # the random first cycle has no model
        assert cache.proba("no-such-version") is None


def test_hot_cache_model_and_proba_match_the_cycle(project_root: Path) -> None:
    with Project.open(project_root) as p:
        # Label the first batch and run cycle 1, which fits a model and scores the pool.
        while (leased := p.next_item("ann")) is not None:
            truth = ground_truth(project_root, leased.item_id)
            p.submit_label(leased.entry_id, "ann", truth)
        p.run()
        with p.db.read() as s:
            cycle = s.scalar(select(Cycle).where(Cycle.number == 1))
            assert cycle is not None and cycle.model_version_id is not None
            version = s.get_one(ModelVersion, cycle.model_version_id)
        cache = hot_cache(p)
        ref = cache.cycle_model(cycle.id)
        assert ref is not None and (ref.version, ref.path) == (version.version, version.path)
        proba = cache.proba(ref.version)
        assert proba is not None and cache.proba(ref.version) is proba  # kept mapped
        np.testing.assert_array_equal(proba, p.arrays.load(f"proba-{ref.version}"))


# -- the learner in its own process ------------------------------------------------------------


def test_learner_link_passes_requests_and_state_through_files(tmp_path: Path) -> None:
    link = LearnerLink(tmp_path)
    assert link.take_request() is False
    assert link.state() == {"busy": False, "runs": 0, "last": None}
    link.request_retrain()
    link.request_retrain()  # requests do not pile up
    assert link.take_request() is True
    assert link.take_request() is False
    link.write_state({"busy": True, "runs": 3, "last": {"status": "waits", "cycle": 2}})
    assert LearnerLink(tmp_path).state()["runs"] == 3
    assert not list(tmp_path.glob("*.tmp"))


def _set_selection(root: Path, **values: Any) -> None:
    from exemplar.project.config import CONFIG_NAME, load_config, save_config

    cfg = load_config(root / CONFIG_NAME)
    for key, value in values.items():
        setattr(cfg.selection, key, value)
    save_config(cfg, root / CONFIG_NAME)


def _label_batch(client: TestClient | httpx.Client, root: Path, n: int) -> None:
    for _ in range(n):
        item = client.get("/api/v1/items/next").json()
        truth = ground_truth(root, item["item_id"])
        r = client.post("/api/v1/labels", json={"entry_id": item["entry_id"], "label": truth})
        assert r.status_code == 200, r.text


def _cycle(client: TestClient | httpx.Client) -> int:
    status = client.get("/api/v1/status")
    assert status.status_code == 200, status.text
    return int(status.json()["cycle"]["cycle"])


def test_learner_process_runs_niced_and_retrains_on_request(project_root: Path) -> None:
    _set_selection(project_root, retrain_every=1000)  # never by count: only on demand
    learner = LearnerProcess(project_root, poll_seconds=0.2, nice=5)
    app = create_app(project_root, learner_process=True)
    learner.start()
    try:
        pid = learner.pid
        assert pid is not None
        _until(lambda: os.getpriority(os.PRIO_PROCESS, pid) == os.nice(0) + 5)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            served_ = Served(project_root, client)
            served_.login("ann")
            _label_batch(client, project_root, 20)
            # The batch is done but far from 1000 new labels: the learner refills from stale
            # scores and waits.
            item = _until(lambda: (r := client.get("/api/v1/items/next")).status_code == 200 and r)
            assert item.json()["strategy"] == "stale:random"
            assert _cycle(client) == 0
            client.delete("/api/v1/session")
            served_.login("boss")
            r = client.post("/api/v1/retrain")
            assert r.status_code == 202, r.text
            assert set(r.json()["worker"]) >= {"busy", "runs", "last"}
            _until(lambda: _cycle(client) == 1)
            _until(lambda: LearnerLink(project_root).state()["runs"] >= 1)
    finally:
        learner.stop()
    assert not learner.is_alive()


def _cycle_state(client: httpx.Client) -> tuple[int, str]:
    cycle = client.get("/api/v1/status").json()["cycle"]
    return int(cycle["cycle"]), str(cycle["state"])


# -- exemplar serve ----------------------------------------------------------------------------


@pytest.fixture
def cli_server(project_root: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``exemplar serve --workers 2`` on a free port; its URL and tokens of ann and rev."""
    tokens = {}
    with Project.open(project_root) as p, p.db.read() as s:
        for name in ("ann", "rev"):
            user_id = s.scalar(select(User.id).where(User.name == name))
            assert user_id is not None
            tokens[name] = create_token(p.db, user_id, "test")
    port = free_port()
    exe = Path(sys.executable).with_name("exemplar")
    log = (tmp_path / "serve.log").open("wb")
    cmd = [str(exe), "serve", str(project_root), "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen([*cmd, "--no-access-log"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _answers(url) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield url, tokens
    finally:
        proc.terminate()
        rc = proc.wait(60)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert rc == 0 and "Traceback" not in text, text


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/login", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_with_two_workers_and_a_learner_process(
    cli_server: tuple[str, dict[str, str]], project_root: Path
) -> None:
    url, tokens = cli_server
    clients = {
        name: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {t}"}, timeout=30)
        for name, t in tokens.items()
    }
    try:
        ann, rev = clients["ann"], clients["rev"]
        first = ann.get("/api/v1/items/next").json()
        second = rev.get("/api/v1/items/next").json()
        assert first["entry_id"] != second["entry_id"]  # leases hold across worker processes
        assert ann.get("/api/v1/items/next").json()["entry_id"] == first["entry_id"]
        for _ in range(10):
            _label_batch(ann, project_root, 1)
            _label_batch(rev, project_root, 1)
        # The batch of 20 is labeled: the learner process trains and queues cycle 1.
        _until(lambda: _cycle_state(ann) == (1, "label"))
        item = _until(lambda: (r := ann.get("/api/v1/items/next")).status_code == 200 and r)
        assert item.json()["strategy"] == "uncertain_diverse"
    finally:
        for client in clients.values():
            client.close()


def test_learner_refills_when_the_last_items_of_a_batch_are_all_held(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", oracle="human", budget=100, n=200) as p:
        p.run()  # cycle 0: 20 random items wait for labels
        learner = BackgroundLearner(p, stale_batches=2)
        held = [p.next_item(f"a{i}") for i in range(19)]
        assert all(h is not None for h in held)
        assert learner.tick() == "labeling"  # one entry still waits: nothing to do
        assert p.next_item("a19") is not None
        # All 20 are held and none is labeled: the others would wait for the batch to close.
        assert learner.tick() == "labeling (refilled 20)"  # stale_batches * batch_size
        extra = p.next_item("late")
        assert extra is not None and extra.strategy == "stale:random"
        assert learner.tick() == "labeling"  # stale entries wait now: no second refill
        with p.db.read() as s:
            cycle = s.scalar(select(Cycle).where(Cycle.number == 0))
        assert cycle is not None and cycle.state == "label"  # the batch is still open
