"""The stream learner and a project's stream: decisions logged, budget kept, resumable,
asked items queued as a feed, and a skipped feed item back after k others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sqlalchemy import select

from exemplar.errors import ProjectError
from exemplar.loop.stream import STREAM_STRATEGY, StreamLearner
from exemplar.models import make_model
from exemplar.project import Project
from exemplar.project.stream import StreamItemIn, stream_decisions, stream_iter, submit_items
from exemplar.store.queue import lease, skip, submit
from exemplar.store.schema import Label, QueueEntry, StreamDecision
from exemplar.stream import make_manager

CLASSES = [str(i) for i in range(10)]


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))[:n]
    return X[order], y[order].astype(str)


def _project(root: Path, oracle: str, database_url: str = "", **stream: object) -> Project:
    return Project.init(
        root,
        CLASSES,
        database_url=database_url,
        oracle={"kind": oracle},
        model={"candidates": [{"recipe": "logreg", "params": {"C": 1.0}}]},
        stream={"enabled": True, "budget": 0.2, "retrain_every": 5, **stream},
    )


def _items(X: np.ndarray, y: np.ndarray) -> list[StreamItemIn]:
    return [StreamItemIn(features=x.tolist(), ground_truth=t) for x, t in zip(X, y, strict=True)]


def test_learner_retrains_every_k_labels_and_starts_uncertain() -> None:
    X, y = _digits(200)
    learner = StreamLearner(
        lambda: make_model("logreg", 0), make_manager("random", 0.5), retrain_every=4
    )
    assert learner.utility(X[0]) == 1.0  # no model yet
    learner.fit(X[:20], y[:20])
    assert learner.fits == 1 and 0.0 <= learner.utility(X[0]) <= 1.0
    retrained = [learner.learn(X[i], y[i]) for i in range(20, 32)]
    assert retrained == [False, False, False, True] * 3
    assert learner.fits == 4 and learner.n_labels == 32
    step = learner.process(X[40], oracle=lambda: y[40])
    if step.decision.asked:
        assert step.label == y[40] and learner.n_labels == 33
    else:
        assert step.label is None and learner.n_labels == 32


def test_simulated_project_stream_logs_decisions_and_keeps_budget(tmp_path: Path) -> None:
    X, y = _digits(300)
    with _project(tmp_path / "p", "simulated", manager="variable_uncertainty") as project:
        out = submit_items(project, _items(X, y))
        assert [d.seq for d in out] == list(range(1, 301))
        asked = [d for d in out if d.asked]
        assert len(asked) <= 0.2 * 300 + 1 and len(asked) >= 0.1 * 300
        for n, d in enumerate(out, start=1):
            assert d.budget_state["arrivals"] == n
            assert d.budget_state["asked"] <= 0.2 * n + 1
        assert all(d.label == y[d.seq - 1] for d in asked)
        versions = [d.model_version for d in out]
        assert versions[0] is None  # cold start: no labels, no model
        assert len(set(versions) - {None}) >= 5  # retrained as labels came in
        log = stream_decisions(project, limit=1000)
        assert [r["asked"] for r in log] == [d.asked for d in out]
        with project.db.read() as s:
            labels = s.scalars(select(Label)).all()
        assert len(labels) == len(asked)
        assert {lab.strategy for lab in labels} == {STREAM_STRATEGY}


def test_stream_resumes_in_another_process_as_if_never_stopped(tmp_path: Path) -> None:
    X, y = _digits(160)
    with _project(tmp_path / "whole", "simulated", manager="split") as project:
        whole = submit_items(project, _items(X, y))
    with _project(tmp_path / "parts", "simulated", manager="split") as project:
        first = submit_items(project, _items(X[:70], y[:70]))
    with Project.open(tmp_path / "parts") as project:  # a fresh process: state from the db
        second = submit_items(project, _items(X[70:], y[70:]))

    def key(d: object) -> tuple[object, ...]:
        return (d.seq, d.asked, round(d.utility, 9), d.threshold, d.budget_state)  # type: ignore[attr-defined]

    assert [key(d) for d in first + second] == [key(d) for d in whole]


def test_human_stream_queues_a_feed_and_a_skip_comes_back_after_k(
    tmp_path: Path, database_url: str
) -> None:
    """On SQLite and PostgreSQL."""
    X, y = _digits(400)
    with _project(
        tmp_path / "h",
        "human",
        database_url,
        manager="random",
        budget=0.5,
        skip_requeue_after=3,
    ) as project:
        out = submit_items(project, _items(X, y))
        asked = [d.item_id for d in out if d.asked]
        assert len(asked) > 10
        with project.db.read() as s:
            entries = s.scalars(select(QueueEntry).order_by(QueueEntry.rank)).all()
        assert [e.item_id for e in entries] == asked  # the feed, in arrival order
        assert [e.rank for e in entries] == list(range(len(asked)))
        assert {e.strategy for e in entries} == {STREAM_STRATEGY}

        first = lease(project.db, "ann", lease_seconds=60)
        assert first is not None and first.item_id == asked[0]
        project.skip_item(first.entry_id, "ann")
        served = []
        for _ in range(5):
            got = lease(project.db, "ann", lease_seconds=60)
            assert got is not None
            served.append(got.item_id)
            submit(project.db, got.entry_id, "ann", y[got.item_id - 1], classes=CLASSES)
        assert served == [asked[1], asked[2], asked[3], asked[0], asked[4]]


def test_skip_with_nothing_waiting_waits_for_k_new_arrivals(tmp_path: Path) -> None:
    X, y = _digits(200)
    with _project(
        tmp_path / "h2", "human", manager="random", budget=1.0, skip_requeue_after=2
    ) as project:
        first_batch = submit_items(project, _items(X[:1], y[:1]))
        assert first_batch[0].asked
        got = lease(project.db, "ann", lease_seconds=60)
        assert got is not None
        skip(project.db, got.entry_id, "ann", requeue_after=2)
        later = submit_items(project, _items(X[1:4], y[1:4]))
        served = []
        for _ in range(4):
            item = lease(project.db, "ann", lease_seconds=60)
            assert item is not None
            served.append(item.item_id)
            submit(project.db, item.entry_id, "ann", y[item.item_id - 1], classes=CLASSES)
        assert served == [later[0].item_id, later[1].item_id, got.item_id, later[2].item_id]


def test_plain_skip_is_unchanged_for_cycle_entries(tmp_path: Path) -> None:
    """A non-stream entry is still served after every pending one (no requeue_after)."""
    from loop_helpers import make_project

    with make_project(tmp_path / "c", oracle="human", n=200) as project:
        project.run()
        got = lease(project.db, "ann", lease_seconds=60)
        assert got is not None
        project.skip_item(got.entry_id, "ann")
        with project.db.read() as s:
            entry = s.get_one(QueueEntry, got.entry_id)
        assert entry.status == "skipped"


@pytest.mark.parametrize("manager", ["fixed_uncertainty", "balanced_incremental"])
def test_every_decision_row_is_written(tmp_path: Path, manager: str) -> None:
    X, y = _digits(60)
    with _project(tmp_path / manager, "simulated", manager=manager) as project:
        submit_items(project, _items(X, y))
        with project.db.read() as s:
            rows = s.scalars(select(StreamDecision).order_by(StreamDecision.seq)).all()
        assert [r.seq for r in rows] == list(range(1, 61))
        assert {r.manager for r in rows} == {manager}
        assert all(0.0 <= r.utility <= 1.0 for r in rows)


def test_a_python_iterator_is_decided_item_by_item(tmp_path: Path) -> None:
    X, y = _digits(30)
    read: list[int] = []

    def arrivals() -> Iterator[StreamItemIn]:
        for i in range(30):
            read.append(i)
            yield StreamItemIn(features=X[i].tolist(), ground_truth=y[i])

    with _project(tmp_path / "it", "simulated", manager="random") as project:
        decided = stream_iter(project, arrivals())
        first = next(decided)
        assert first.seq == 1 and read == [0]  # decided before the next item is read
        rest = list(decided)
        assert [d.seq for d in rest] == list(range(2, 31)) and len(read) == 30


def test_a_failed_first_transaction_does_not_wedge_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exemplar.loop.stream as loop_stream
    from exemplar.errors import StoreError

    real = loop_stream.enqueue_stream_item
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreError("transient: connection reset")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop_stream, "enqueue_stream_item", flaky)
    X, y = _digits(3)
    with _project(tmp_path / "w", "human", manager="random", budget=1.0) as project:
        with pytest.raises(StoreError, match="transient"):
            submit_items(project, _items(X[:1], y[:1]))
        out = submit_items(project, _items(X[1:3], y[1:3]))
        assert [(d.seq, d.budget_state["arrivals"]) for d in out] == [(1, 1), (2, 2)]
        with project.db.read() as s:
            assert [r.seq for r in s.scalars(select(StreamDecision))] == [1, 2]


def test_two_processes_posting_at_once_take_turns(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Project objects (two server processes' streams) post at the same moment: each
    decision is made on the state the other saved, none fails (SQLite and PostgreSQL)."""
    import threading
    import time

    from exemplar.loop.stream import ProjectStream
    from exemplar.project.stream import project_stream

    X, y = _digits(4)
    root = tmp_path / "race"
    with _project(root, "human", database_url, manager="random", budget=1.0):
        pass
    w1, w2 = Project.open(root), Project.open(root)
    try:
        slow_stream = project_stream(w1)[0]
        project_stream(w2)  # both warm, as after a first request
        real = ProjectStream._save_state

        def slow_save(self: ProjectStream, s: object) -> None:
            real(self, s)  # type: ignore[arg-type]
            if self is slow_stream:
                time.sleep(1.0)  # w1's transaction stays open while w2 posts

        monkeypatch.setattr(ProjectStream, "_save_state", slow_save)
        results: dict[str, object] = {}

        def post(name: str, project: Project, i: int) -> None:
            try:
                results[name] = submit_items(project, _items(X[i : i + 1], y[i : i + 1]))
            except Exception as exc:  # noqa: BLE001 - the test reports it
                results[name] = exc

        t1 = threading.Thread(target=post, args=("w1", w1, 0))
        t1.start()
        time.sleep(0.4)
        t2 = threading.Thread(target=post, args=("w2", w2, 1))
        t2.start()
        t1.join()
        t2.join()
        assert not any(isinstance(v, Exception) for v in results.values()), results
        monkeypatch.setattr(ProjectStream, "_save_state", real)
        nxt = submit_items(w2, _items(X[2:3], y[2:3])) + submit_items(w1, _items(X[3:4], y[3:4]))
        assert [(d.seq, d.budget_state["arrivals"]) for d in nxt] == [(3, 3), (4, 4)]
        with w1.db.read() as s:
            rows = s.scalars(select(StreamDecision).order_by(StreamDecision.seq)).all()
            queued = s.scalars(select(QueueEntry.item_id)).all()
        assert [r.seq for r in rows] == [1, 2, 3, 4]
        assert [r.budget_state["arrivals"] for r in rows] == [1, 2, 3, 4]
        assert sorted(queued) == sorted(r.item_id for r in rows)
    finally:
        w1.close()
        w2.close()


def test_a_stream_project_gets_no_pool_cycles_from_the_learner(tmp_path: Path) -> None:
    from exemplar.loop.refill import refill_queue
    from exemplar.server.worker import BackgroundLearner

    X, y = _digits(300)
    with _project(tmp_path / "l", "human", manager="variable_uncertainty", budget=0.1) as project:
        out = submit_items(project, _items(X, y))
        while (got := lease(project.db, "ann", lease_seconds=60)) is not None:
            submit(project.db, got.entry_id, "ann", y[got.item_id - 1], classes=CLASSES)
        assert BackgroundLearner(project).tick() == "stream"
        assert refill_queue(project).added == 0
        with project.db.read() as s:
            strategies = set(s.scalars(select(QueueEntry.strategy)))
            n_entries = len(s.scalars(select(QueueEntry.id)).all())
        assert strategies == {STREAM_STRATEGY} and n_entries == sum(d.asked for d in out)
        with pytest.raises(ProjectError, match="stream project"):
            project.run()
        with project.db.read() as s:
            assert len(s.scalars(select(QueueEntry.id)).all()) == n_entries


def test_feed_file_reports_rows_of_unknown_classes(tmp_path: Path) -> None:
    from exemplar.project.stream import feed_file

    X, y = _digits(6)
    labels = list(y)
    labels[2] = "cat"
    path = tmp_path / "rows.csv"
    lines = [",".join([f"f{j}" for j in range(64)] + ["label"])]
    lines += [",".join([str(v) for v in x] + [t]) for x, t in zip(X, labels, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    with _project(tmp_path / "f", "simulated", manager="random", budget=1.0) as project:
        report = feed_file(project, path, label_column="label")
    assert len(report.decisions) == 5
    assert len(report.skipped) == 1 and "cat" in str(report.skipped[0])
