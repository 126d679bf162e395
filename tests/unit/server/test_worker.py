"""Background learning: the random control arm, the worker thread, stale refills, retrain."""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_helpers import Served, ground_truth, project_root, served, until  # noqa: F401
from sqlalchemy import select

from exemplar.loop.engine import LoopEngine
from exemplar.loop.refill import refill_queue
from exemplar.loop.selection import CONTROL_STRATEGY
from exemplar.project import Project
from exemplar.server import create_app
from exemplar.server.worker import BackgroundLearner
from exemplar.store.schema import Cycle, QueueEntry
from loop_helpers import make_project, snapshot

TIMEOUT = 60.0


_until = functools.partial(until, timeout=TIMEOUT)


def _entries(root: Path) -> list[tuple[int | None, str | None, str, int]]:
    with Project.open(root) as p, p.db.read() as s:
        number = dict(s.execute(select(Cycle.id, Cycle.number)).all())
        return [
            (number.get(e.cycle_id) if e.cycle_id else None, e.strategy, e.status, e.attempts)
            for e in s.scalars(select(QueueEntry))
        ]


def _label_all(client: TestClient, root: Path, n: int) -> None:
    for _ in range(n):
        item = client.get("/api/v1/items/next").json()
        truth = ground_truth(root, item["item_id"])
        r = client.post("/api/v1/labels", json={"entry_id": item["entry_id"], "label": truth})
        assert r.status_code == 200, r.text


@pytest.fixture
def learning(project_root: Path) -> Iterator[Served]:  # noqa: F811
    """The app with background learning on."""
    app = create_app(project_root, background_learning=True)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield Served(project_root, client)


def _set_selection(root: Path, **values: Any) -> None:
    from exemplar.project.config import CONFIG_NAME, load_config, save_config

    cfg = load_config(root / CONFIG_NAME)
    for key, value in values.items():
        setattr(cfg.selection, key, value)
    save_config(cfg, root / CONFIG_NAME)


# -- the random control arm --------------------------------------------------------------------


def test_control_arm_is_part_of_each_model_batch_and_deterministic(tmp_path: Path) -> None:
    selection = {"batch_size": 10, "initial_size": 20, "control_fraction": 0.2}
    snaps = []
    for name in ("a", "b"):
        with make_project(tmp_path / name, budget=50, selection=selection) as p:
            assert p.run().status == "stopped"
            snaps.append(snapshot(p))
    assert snaps[0] == snaps[1]
    per_cycle: dict[int, Counter[str]] = {}
    for cycle, _uid, strategy, *_ in snaps[0]["queue"]:
        per_cycle.setdefault(cycle, Counter())[strategy] += 1
    assert per_cycle[0] == Counter({"random": 20})  # the cold start is random anyway
    model_cycles = [c for c in per_cycle if c > 0]
    assert model_cycles == [1, 2, 3]
    for c in model_cycles:
        assert per_cycle[c] == Counter({"uncertain_diverse": 8, CONTROL_STRATEGY: 2})
    controls = [lab for lab in snaps[0]["labels"] if lab[5] == CONTROL_STRATEGY]
    assert len(controls) == 6  # their labels carry the provenance
    uids = [lab[0] for lab in snaps[0]["labels"]]
    assert len(uids) == len(set(uids))


def test_control_fraction_is_validated(tmp_path: Path) -> None:
    from exemplar.errors import ConfigError

    with pytest.raises(ConfigError, match="control_fraction"):
        make_project(tmp_path / "p", selection={"control_fraction": 1.0})


# -- stale refills ---------------------------------------------------------------------------


def test_stale_refill_is_marked_and_dropped_when_fresh_batch_arrives(tmp_path: Path) -> None:
    root = tmp_path / "p"
    with make_project(root, oracle="human", budget=60, n=200) as p:
        p.run()
        engine = LoopEngine(p)
        with engine.lock():
            assert refill_queue(p).added == 0  # the open batch is not complete
        y = {}
        for _ in range(20):
            leased = p.next_item("ann")
            assert leased is not None
            y[leased.entry_id] = ground_truth(root, leased.item_id)
            p.submit_label(leased.entry_id, "ann", y[leased.entry_id])
        with engine.lock():
            assert refill_queue(p).added == 10  # no model yet: stale random
        assert {e[1] for e in _entries(root) if e[0] is None} == {"stale:random"}
        held = p.next_item("ann")  # an annotator holds one stale entry
        assert held is not None and held.strategy == "stale:random"
        assert p.run().status == "waiting"  # cycle 1 trains, scores and selects
        entries = _entries(root)
        stale = [e for e in entries if (e[1] or "").startswith("stale:")]
        assert stale == [(None, "stale:random", "leased", 1)]  # the others are gone
        fresh = [e for e in entries if e[0] == 1]
        assert len(fresh) == 10 and all(e[1] == "uncertain_diverse" for e in fresh)
        p.submit_label(held.entry_id, "ann", ground_truth(root, held.item_id))
        for _ in range(10):
            leased = p.next_item("ann")
            assert leased is not None and leased.cycle_id is not None
            p.submit_label(leased.entry_id, "ann", ground_truth(root, leased.item_id))
        with engine.lock():
            # now from the model's stored scores, ranked by the project's strategy
            assert refill_queue(p).added == 10
        assert {e[1] for e in _entries(root) if e[2] == "pending"} == {"stale:uncertain_diverse"}
        labels = snapshot(p)["labels"]
        assert sum(lab[5] == "stale:random" for lab in labels) == 1  # provenance kept


# -- the worker in the server ----------------------------------------------------------------


def _status(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/status")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_worker_advances_the_loop_after_the_batch_is_labeled(learning: Served) -> None:
    client = learning.login("ann")
    assert _status(client)["cycle"]["cycle"] == 0
    _label_all(client, learning.root, 20)
    status = _until(
        lambda: (
            (s := _status(client))["cycle"]["cycle"] == 1 and s["cycle"]["state"] == "label" and s
        )
    )
    assert status["cycle"]["model"] == "c0001-m0"
    item = client.get("/api/v1/items/next").json()
    assert item["strategy"] == "uncertain_diverse"  # stale entries never served as fresh


def test_retrain_is_admin_only_and_runs_the_loop(project_root: Path) -> None:  # noqa: F811
    _set_selection(project_root, retrain_every=1000)  # never by count: only on demand
    app = create_app(project_root, background_learning=True)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        served_ = Served(project_root, client)
        served_.login("ann")
        _label_all(client, project_root, 20)
        # the batch is done, but 20 < 1000 new labels: the queue is kept full from stale scores
        item = _until(lambda: (r := client.get("/api/v1/items/next")).status_code == 200 and r)
        assert item.json()["strategy"] == "stale:random"
        assert client.post("/api/v1/retrain").status_code == 403
        time.sleep(1.5)
        assert _status(client)["cycle"]["cycle"] == 0
        client.delete("/api/v1/session")
        served_.login("boss")
        r = client.post("/api/v1/retrain")
        assert r.status_code == 202, r.text
        _until(lambda: _status(client)["cycle"]["cycle"] == 1)


def test_retrain_without_worker_is_refused(served: Served) -> None:  # noqa: F811
    client = served.login("boss")
    assert served.client.post("/api/v1/retrain").status_code == 409
    assert client.get("/api/v1/status").status_code == 200


def test_requests_are_answered_while_the_worker_trains(
    learning: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    training = threading.Event()
    release = threading.Event()
    original = LoopEngine._evaluate

    def slow_evaluate(self: LoopEngine, *args: Any, **kwargs: Any) -> Any:
        training.set()
        release.wait(TIMEOUT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LoopEngine, "_evaluate", slow_evaluate)
    client = learning.login("ann")
    try:
        _label_all(client, learning.root, 20)
        assert training.wait(TIMEOUT)
        t0 = time.perf_counter()
        r = client.get("/api/v1/items/next")
        assert time.perf_counter() - t0 < 2.0
        assert r.status_code == 200 and r.json()["strategy"].startswith("stale:")
        assert _status(client)["cycle"]["state"] == "train"
    finally:
        release.set()
    _until(lambda: _status(client)["cycle"]["state"] == "label")
    entries = _entries(learning.root)
    assert [e for e in entries if (e[1] or "").startswith("stale:")] == [
        (None, "stale:random", "leased", 1)
    ]


def test_worker_errors_are_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_project(tmp_path / "p", oracle="human", n=200) as p:
        learner = BackgroundLearner(p, poll_seconds=0.05)

        def boom(*_a: Any, **_k: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr(LoopEngine, "run", boom)
        learner.start()
        learner.request_retrain()
        time.sleep(0.3)
        assert learner._thread is not None and learner._thread.is_alive()
        learner.stop()
        assert not learner._thread.is_alive()
