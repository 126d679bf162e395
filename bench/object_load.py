"""Object-labeling load test: 50 annotators verifying model proposals over loopback.

    python -m bench.object_load [--db sqlite|postgresql] [--annotators 50] [--items 3000]
                                [--finished 2500] [--seconds 600] [--workers 2]
                                [--learner on|off] [--learner-nice 10] [--epochs 2]
                                [--think-ms 0] [--profile FILE]

Goal (issue #13): a load test with 50 annotators on object labels keeps p99 under 100 ms
for the object routes, with every acknowledged write stored exactly once.

Setup: a detection project (human oracle, one CenterNet candidate) of ``--items`` SYNTHETIC
cell images (128x128 PNG files from :func:`exemplar.data.cells.synthetic_cells`, written
once into the run's temporary folder and imported with ``Project.import_`` like
``exemplar import``). Every item gets 3-8 model proposals (status ``proposed``, source
``model``, a confidence): the synthetic objects' boxes, each moved by up to 2 px, padded with
random boxes up to 3. One annotator account and API token per simulated annotator.

- ``--learner on`` (default): ``exemplar serve --workers N`` with its background learner at
  ``--learner-nice``; the first cycle queues ``--batch`` random items, the learner refills
  the queue from the pool (4 batches from the previous ranking) and retrains the detector
  once ``--batch`` items are finished (the JSON says whether a model was fitted and how far
  its cycle got). The default ``--finished`` 2500 is what the queue holds until the first
  retraining cycle queues its batch: on 2 shared cores that cycle (CenterNet fit, then
  scoring the pool) takes longer than 50 annotators need for 2000 items. The run ends
  early when no item was served for 15 s (``queue_ran_dry`` in the JSON): beyond that it
  would measure annotators polling an empty queue.
- ``--learner off``: every item is queued at the start, and the same web workers
  (``exemplar.server.app:app_from_env`` under uvicorn, as ``exemplar serve`` runs them) serve
  with no learner process.

The client is :mod:`bench.server_load`'s: one process, an asyncio (uvloop) task per
annotator, each with its own keep-alive HTTP/1.1 connection (:class:`~bench.server_load.Http1`,
bearer token). Each annotator loops like a person verifying with the keyboard, as fast as the
server answers: ``GET /api/v1/items/next`` -> ``GET /api/v1/items/{item_id}/objects`` ->
for each proposal ``POST /api/v1/objects/{id}/verify`` (80%) or ``/reject`` (20%); on 30% of
the items one verified box is moved (``PATCH /api/v1/objects/{id}``) and on 30% one box is
drawn (``POST /api/v1/items/{item_id}/objects``) -> ``POST /api/v1/queue/{entry_id}/objects``
(the whole set) finishes the item. Every write carries an ``Idempotency-Key`` header; a
transport error is retried with the same key. The run ends after ``--finished`` items (or
``--seconds``). With no pause (``--think-ms 0``) each annotator is a closed loop, so the
latency is the number of annotators over the throughput (Little's law); ``--think-ms T``
pauses 0.5-1.5 T before each request, a person's pace, to see latency below saturation.
``--profile FILE`` serves with one web worker under cProfile (its thread-pool calls run on
the event loop so that cProfile sees them) and writes the stats to FILE.

Afterwards the server is stopped and the run is checked against the database: each
acknowledged one-object write is exactly one row with its key, the row the server answered
with, and the status asked for; each acknowledged set is one label row with its key and one
annotation row per object sent; no item got two object sets (labels) in one cycle; no
annotation row of an annotator without an acknowledged key; no queue entry held by two
annotators at overlapping times (lease and submit times recorded client-side).

Results go to ``bench/results/object_load.json`` (``object_load_postgresql.json``) and a
markdown table row is printed. Client and server share the machine: the load average, the
client's CPU per request and the server processes' CPU are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from bench.server_load import (
    GOAL_P99_MS,
    MAX_ERRORS,
    PASSWORD,
    PG_SERVER,
    PG_URL,
    RESULTS,
    SLOW_S,
    Http1,
    PgBackendCpu,
    TransportError,
    _count_cycles,
    _cpu_s,
    _descendants,
    _first_traceback,
    _free_port,
    _histogram,
    _machine,
    _pct,
    _proc_stat,
    _served_by,
    overlapping_leases,
    serve_command,
    start_server,
)

CLASSES = ["nucleus", "micronucleus"]
SIDE = 128
#: The routes whose p99 the goal covers (``next`` is reported beside them).
OBJECT_ROUTES = ("objects", "verify", "reject", "patch", "draw", "submit")
ROUTES = ("next", *OBJECT_ROUTES)
#: The run ends when no item was served for this long (the queue ran dry: the learner's
#: next batch is not ready yet); the JSON says so (``queue_ran_dry``).
DRY_S = 15.0
#: Cycle states after a retraining cycle's batch is queued.
READY_STATES = ("label", "compare", "stop_check", "done", "stopped")
#: How long the server may take to answer its first request.
START_TIMEOUT_S = 300.0


def make_images(
    folder: Path, n: int, seed: int = 0
) -> list[list[tuple[str, tuple[float, float, float, float]]]]:
    """Write ``n`` SYNTHETIC 128x128 cell images as PNG files; each image's 3-8 proposals
    (class, box): its objects' boxes moved by up to 2 px, random boxes added up to 3."""
    from PIL import Image

    from exemplar.data.cells import synthetic_cells

    data = synthetic_cells(n, size=SIDE, classes=CLASSES, objects_per_image=(3, 8), seed=seed)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    proposals = []
    for k, (pixels, objs) in enumerate(zip(data.images, data.objects, strict=True)):
        Image.fromarray(pixels).save(folder / f"cell{k:05d}.png")
        boxes = []
        for box, c in zip(objs.boxes[:8], objs.classes[:8], strict=True):
            x0, y0, x1, y1 = (float(v) + rng.uniform(-2, 2) for v in box)
            x0, y0 = max(x0, 0.0), max(y0, 0.0)
            x1, y1 = min(max(x1, x0 + 2), SIDE), min(max(y1, y0 + 2), SIDE)
            boxes.append((data.classes[int(c)], (x0, y0, x1, y1)))
        while len(boxes) < 3:
            x0, y0 = rng.uniform(0, SIDE - 20, size=2)
            w, h = rng.uniform(6, 20, size=2)
            boxes.append((CLASSES[0], (x0, y0, x0 + w, y0 + h)))
        proposals.append(boxes)
    return proposals


def setup(
    root: Path,
    url: str,
    *,
    n_items: int,
    batch: int,
    budget: int,
    annotators: int,
    epochs: int,
    queue_all: bool,
) -> tuple[dict[str, str], dict[str, int], int]:
    """Create the project, add the proposals, queue, add the accounts.

    Returns the tokens and user ids by annotator name, and the number of proposals.
    """
    from sqlalchemy import select

    from exemplar.project import Project
    from exemplar.store.accounts import add_user, create_token
    from exemplar.store.annotations import AnnotationIn, add_annotations
    from exemplar.store.queue import enqueue
    from exemplar.store.schema import Cycle, Item

    proposals = make_images(root.parent / "images", n_items)
    project = Project.init(
        root,
        CLASSES,
        task="detection",
        database_url=url,
        oracle={"kind": "human"},
        data={"image_side": SIDE},
        model={"candidates": [{"recipe": "centernet", "params": {"epochs": epochs}}]},
        selection={"batch_size": batch, "initial_size": batch},
        stopping={"criteria": [{"name": "label_budget", "budget": budget}]},
    )
    n_proposals = 0
    with project:
        project.import_(root.parent / "images")
        project.run()  # the first cycle: ``batch`` random items queued
        with project.db.session() as s:
            items = list(s.execute(select(Item.id, Item.uri).order_by(Item.id)))
            by_name = {Path(uri).name: item_id for item_id, uri in items}
            for k, boxes in enumerate(proposals):
                item_id = by_name[f"cell{k:05d}.png"]
                objs = [
                    AnnotationIn(c, box, confidence=0.5 + 0.49 * random.random())
                    for c, box in boxes
                ]
                add_annotations(
                    s,
                    item_id,
                    objs,
                    status="proposed",
                    source="model",
                    model_version="load-test",
                    classes=CLASSES,
                )
                n_proposals += len(objs)
            if queue_all:
                cycle = s.scalar(select(Cycle.id).order_by(Cycle.number.desc()).limit(1))
                enqueue(s, cycle, [(item_id, "load", None) for item_id, _uri in items])
        tokens, ids = {}, {}
        for i in range(annotators):
            user = add_user(project.db, f"ann{i:03d}", "annotator", PASSWORD)
            tokens[user.name] = create_token(project.db, user.id, "load")
            ids[user.name] = user.id
    return tokens, ids, n_proposals


class Run:
    """Shared state of the simulated annotators."""

    def __init__(self, target: int, max_seconds: float, think_s: float = 0.0) -> None:
        self.target = target
        self.think_s = think_s
        self.max_seconds = max_seconds
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + max_seconds
        self.ms: dict[str, list[float]] = {route: [] for route in ROUTES}
        self.slow_at: list[float] = []
        self.empty = 0
        self.errors: Counter[str] = Counter()
        self.leases: list[tuple[int, str, float, float]] = []  # entry, annotator, t0, t1
        #: one-object writes: stored key -> (annotation_id, object_id, status, annotator)
        self.object_acks: dict[str, tuple[int, int, str, str]] = {}
        #: object sets: label_id -> (item, annotator, entry, stored key, objects sent)
        self.set_acks: dict[int, tuple[int, str, int, str, int]] = {}
        self.strategies: Counter[str] = Counter()
        self.last_served = time.monotonic()  # when the last item was served to anyone
        self.ran_dry = False

    def start(self) -> None:
        """The server answers: the clocks start now (not while it started up)."""
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + self.max_seconds
        self.last_served = time.monotonic()

    def record(self, route: str, t0: float, t1: float) -> None:
        """One request's latency (ms); a slow one's start is noted too."""
        self.ms[route].append((t1 - t0) * 1000)
        if t1 - t0 > SLOW_S:
            self.slow_at.append(t0 - self.started)

    @property
    def done(self) -> bool:
        """The target is reached, or the run gives up (too many errors, or too long)."""
        if time.monotonic() - self.last_served > DRY_S:
            self.ran_dry = True
        return (
            len(self.set_acks) >= self.target
            or self.ran_dry
            or sum(self.errors.values()) >= MAX_ERRORS
            or time.monotonic() > self.deadline
        )


class Annotator:
    """One simulated person: a connection, a name, a user id and a seeded random source."""

    def __init__(self, http: Http1, name: str, user_id: int, run: Run, seed: int) -> None:
        self.http, self.name, self.user_id, self.run = http, name, user_id, run
        self.rng = random.Random(seed)

    async def call(
        self, route: str, method: str, path: str, body: Any = None, key: str | None = None
    ) -> tuple[int, Any]:
        """One request (a write with ``key`` is retried up to 3 times after a transport
        error, with the same key); the status and the decoded body (None: no answer)."""
        data = None if body is None else json.dumps(body).encode()
        headers = "" if key is None else f"Idempotency-Key: {key}\r\n"
        if self.run.think_s:  # a person's pace: 0.5-1.5 times the think time per action
            await asyncio.sleep(self.run.think_s * self.rng.uniform(0.5, 1.5))
        for _attempt in range(3 if key is not None else 1):
            t0 = time.perf_counter()
            try:
                status, raw = await self.http.request(method, path, data, headers)
            except TransportError as exc:
                self.run.errors[f"{route} {exc}"[:80]] += 1
                continue
            self.run.record(route, t0, time.perf_counter())
            if status >= 300:
                self.run.errors[f"{route} {status}"] += 1
            return status, json.loads(raw) if raw else None
        return 0, None

    def key(self) -> str:
        return f"{self.name}-{uuid.uuid4().hex}"

    async def loop(self) -> None:
        """next -> objects -> one decision per proposal (+ a move, a drawn box) -> the set."""
        while not self.run.done:
            t0 = time.perf_counter()
            status, item = await self.call("next", "GET", "/api/v1/items/next")
            if status == 204:
                self.run.empty += 1
                await asyncio.sleep(0.05)
                continue
            if status != 200:
                await asyncio.sleep(0.05)
                continue
            self.run.strategies[str(item["strategy"]).split(":")[0]] += 1
            self.run.last_served = time.monotonic()
            await self.label(item, t0)

    async def label(self, item: dict[str, Any], t0: float) -> None:
        item_id, entry_id = item["item_id"], item["entry_id"]
        status, view = await self.call("objects", "GET", f"/api/v1/items/{item_id}/objects")
        if status != 200:
            return
        sent: list[dict[str, Any]] = []
        for obj in view["objects"]:
            if obj["status"] != "proposed":
                continue
            verdict = "verify" if self.rng.random() < 0.8 else "reject"
            done = await self.write(
                verdict, "POST", f"/api/v1/objects/{obj['object_id']}/{verdict}"
            )
            if done is None:
                return
            sent.append(self.entry(done))
        verified = [o for o in sent if o["status"] == "verified"]
        if verified and self.rng.random() < 0.3:  # move one box by a few pixels
            obj = self.rng.choice(verified)
            x0, y0, x1, y1 = obj["box"]
            dx = self.rng.uniform(-min(3.0, x0), min(3.0, SIDE - x1))  # stays in the image
            box = [x0 + dx, y0, x1 + dx, y1]
            done = await self.write(
                "patch", "PATCH", f"/api/v1/objects/{obj['object_id']}", {"box": box}
            )
            if done is None:
                return
            obj["box"] = done["box"]
        if self.rng.random() < 0.3:  # draw the one the model missed
            x0, y0 = self.rng.uniform(0, SIDE - 24), self.rng.uniform(0, SIDE - 24)
            w, h = self.rng.uniform(6, 24), self.rng.uniform(6, 24)
            body = {"label": self.rng.choice(CLASSES), "box": [x0, y0, x0 + w, y0 + h]}
            done = await self.write("draw", "POST", f"/api/v1/items/{item_id}/objects", body)
            if done is None:
                return
            sent.append(self.entry(done))
        key = self.key()
        status, out = await self.call(
            "submit", "POST", f"/api/v1/queue/{entry_id}/objects", {"objects": sent}, key
        )
        self.run.leases.append((entry_id, self.name, t0, time.perf_counter()))
        if status == 200:
            stored = f"u{self.user_id}:{key}"
            self.run.set_acks[out["label_id"]] = (
                out["item_id"],
                self.name,
                entry_id,
                stored,
                len(sent),
            )

    async def write(
        self, route: str, method: str, path: str, body: Any = None
    ) -> dict[str, Any] | None:
        """A one-object write with a fresh key; the object it returned (None: failed)."""
        key = self.key()
        status, out = await self.call(route, method, path, body, key)
        if status not in (200, 201):
            return None
        stored = f"o{self.user_id}:{key}" + ("#0" if route == "draw" else "")
        self.run.object_acks[stored] = (
            out["annotation_id"],
            out["object_id"],
            out["status"],
            self.name,
        )
        return out

    @staticmethod
    def entry(obj: dict[str, Any]) -> dict[str, Any]:
        """The object as the set names it (its id, class, box and the person's verdict)."""
        return {
            "object_id": obj["object_id"],
            "label": obj["label"],
            "box": obj["box"],
            "status": "rejected" if obj["status"] == "rejected" else "verified",
        }


async def drive(port: int, tokens: dict[str, str], ids: dict[str, int], run: Run) -> None:
    """One HTTP/1.1 keep-alive connection per annotator, all in this process's event loop."""
    people = [
        Annotator(Http1("127.0.0.1", port, token), name, ids[name], run, seed)
        for seed, (name, token) in enumerate(tokens.items())
    ]
    try:
        await asyncio.gather(*(person.loop() for person in people))
    finally:
        for person in people:
            await person.http.close()


def no_learner_command(root: Path, port: int, args: argparse.Namespace) -> list[str]:
    """The web workers of ``exemplar serve`` with no learner process (``--learner off``);
    with ``--profile``, one worker under cProfile."""
    from exemplar.server import app as server_app

    os.environ[server_app.ENV_ROOT] = str(root)
    os.environ[server_app.ENV_HTTPS_ONLY] = "0"
    os.environ[server_app.ENV_LEARNER_PROCESS] = "0"
    if args.profile is not None:
        return [sys.executable, "-c", PROFILED_WORKER.format(port=port, out=str(args.profile))]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "exemplar.server.app:app_from_env",
        "--factory",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--access-log" if args.access_log else "--no-access-log",
        "--log-level",
        "info",
    ]


#: One web worker under cProfile (``--profile``). cProfile sees one thread: the routes'
#: thread-pool calls run on the event loop instead (serially). uvicorn re-raises the SIGTERM
#: it caught after shutting down; a handler that exits lets the stats be written first.
PROFILED_WORKER = """
import cProfile, signal, sys, uvicorn
import fastapi.dependencies.utils, fastapi.routing, starlette.concurrency
async def inline(func, *args, **kwargs):
    return func(*args, **kwargs)
for module in (fastapi.dependencies.utils, fastapi.routing, starlette.concurrency):
    module.run_in_threadpool = inline
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
profile = cProfile.Profile()
profile.enable()
try:
    uvicorn.run("exemplar.server.app:app_from_env", factory=True, port={port}, workers=1,
                access_log=False, log_level="info")
finally:
    profile.disable()
    profile.dump_stats({out!r})
"""


def server_process_cpu(root: int) -> dict[str, float]:
    """CPU seconds so far of the server's processes: the web workers (and the supervisor)
    at the server's own niceness, the learner above it (the benchmark itself may run niced,
    so :func:`bench.server_load.server_process_cpu`'s "niceness > 0" would count all as
    learner)."""
    out = {"web": 0.0, "learner": 0.0}
    base = _proc_stat(root)
    if base is None:
        return out
    for pid in [root, *_descendants(root)]:
        fields = _proc_stat(pid)
        if fields is not None:
            out["learner" if int(fields[16]) > int(base[16]) else "web"] += _cpu_s(fields)
    return out


def drive_server(
    cmd: list[str],
    port: int,
    log_path: Path,
    tokens: dict[str, str],
    ids: dict[str, int],
    run: Run,
    pg_database: str | None,
) -> dict[str, Any]:
    """Start the server, run the annotators against it, stop it; timings and CPU use."""
    # Two workers and the learner import torch at once: on 2 busy cores that can take
    # longer than server_load's 60 s.
    proc = start_server(cmd, port, log_path, timeout=START_TIMEOUT_S)
    run.start()
    cpu_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_self = time.process_time()
    load_before = os.getloadavg()
    server_before = server_process_cpu(proc.pid)
    pg_cpu = None if pg_database is None else PgBackendCpu(pg_database)
    try:
        t0 = time.perf_counter()
        uvloop.run(drive(port, tokens, ids, run))
        wall = time.perf_counter() - t0
        client_cpu = time.process_time() - cpu_self
        load_after = os.getloadavg()
        server_after = server_process_cpu(proc.pid)
        pg_used = None if pg_cpu is None else pg_cpu.stop()
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = (after.ru_utime + after.ru_stime) - (cpu_children.ru_utime + cpu_children.ru_stime)
    requests = sum(len(v) for v in run.ms.values())
    finished = max(len(run.set_acks), 1)
    return {
        "wall_s": wall,
        "requests": requests,
        "requests_per_s": round(requests / wall, 1),
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(requests, 1), 3),
        "web_cpu_ms_per_request": round(
            1000 * (server_after["web"] - server_before["web"]) / max(requests, 1), 3
        ),
        "web_cpu_ms_per_item": round(
            1000 * (server_after["web"] - server_before["web"]) / finished, 2
        ),
        "learner_cpu_s": round(server_after["learner"] - server_before["learner"], 1),
        "pg_cpu_ms_per_item": None if pg_used is None else round(1000 * pg_used / finished, 2),
        "server_cpu_s": round(server_cpu, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


def verify(root: Path, run: Run, ids: dict[str, int], cycles_before: int) -> dict[str, Any]:
    """Compare the acknowledged writes with the database."""
    from sqlalchemy import func, select

    from exemplar.project import Project
    from exemplar.store.annotations import OBJECTS_LABEL
    from exemplar.store.schema import Annotation, Cycle, Label, ModelVersion, QueueEntry

    names = set(ids)
    with Project.open(root) as project, project.db.read() as s:
        rows = s.execute(
            select(
                Annotation.id,
                Annotation.object_id,
                Annotation.status,
                Annotation.annotator,
                Annotation.idempotency_key,
            ).where(Annotation.annotator.in_(names))
        ).all()
        labels = s.execute(
            select(
                Label.id, Label.item_id, Label.annotator, Label.cycle_id, Label.idempotency_key
            ).where(Label.label == OBJECTS_LABEL)
        ).all()
        states = {int(n): str(state) for n, state in s.execute(select(Cycle.number, Cycle.state))}
        models = s.scalar(select(func.count()).select_from(ModelVersion)) or 0
        still_leased = (
            s.scalar(
                select(func.count()).select_from(QueueEntry).where(QueueEntry.status == "leased")
            )
            or 0
        )
    by_key = Counter(r.idempotency_key for r in rows)
    row_of = {r.idempotency_key: r for r in rows}
    expected_status = {"verified", "rejected"}
    object_lost = object_twice = object_mismatched = 0
    for key, (annotation_id, object_id, status, who) in run.object_acks.items():
        count = by_key.get(key, 0)
        if count == 0:
            object_lost += 1
            continue
        if count > 1:
            object_twice += 1
        row = row_of[key]
        if (
            row.id != annotation_id
            or row.object_id != object_id
            or row.status != status
            or row.annotator != who
            or status not in expected_status
        ):
            object_mismatched += 1
    set_rows = Counter(
        (r.idempotency_key or "").rsplit("#", 1)[0]
        for r in rows
        if (r.idempotency_key or "").startswith("u")
    )
    label_by_id = {r.id: r for r in labels}
    label_keys = Counter(r.idempotency_key for r in labels)
    sets_lost = sets_twice = sets_mismatched = sets_wrong_rows = 0
    for label_id, (item, who, _entry, key, n_sent) in run.set_acks.items():
        row = label_by_id.get(label_id)
        if row is None:
            sets_lost += 1
            continue
        if label_keys[key] > 1:
            sets_twice += 1
        if row.item_id != item or row.annotator != who or row.idempotency_key != key:
            sets_mismatched += 1
        if set_rows.get(key, 0) != n_sent:
            sets_wrong_rows += 1
    acked_keys = set(run.object_acks) | {k for (_i, _w, _e, k, _n) in run.set_acks.values()}
    unacked_rows = sum(
        1
        for r in rows
        if (r.idempotency_key or "").rsplit("#", 1)[0] not in acked_keys
        and r.idempotency_key not in acked_keys
    )
    per_item_cycle = Counter((r.item_id, r.cycle_id) for r in labels)
    per_item = Counter(r.item_id for r in labels)
    return {
        "object_writes_acknowledged": len(run.object_acks),
        "object_writes_lost": object_lost,
        "object_writes_stored_twice": object_twice,
        "object_writes_mismatched": object_mismatched,
        "sets_acknowledged": len(run.set_acks),
        "sets_stored": len(labels),
        "sets_lost": sets_lost,
        "sets_stored_twice": sets_twice,
        "sets_mismatched": sets_mismatched,
        "sets_with_wrong_row_count": sets_wrong_rows,
        "unacknowledged_extra_rows": unacked_rows + len(set(label_by_id) - set(run.set_acks)),
        "items_labeled_twice": sum(1 for c in per_item.values() if c > 1),
        "items_labeled_twice_same_cycle": sum(1 for c in per_item_cycle.values() if c > 1),
        "overlapping_leases": overlapping_leases(run.leases),
        "entries_served_to_2_annotators": sum(
            1 for who in _served_by(run.leases).values() if len(who) > 1
        ),
        "entries_left_leased": still_leased,
        "cycles_before": cycles_before,
        "cycles_after": len(states),
        "cycle_states": states,
        # a retraining cycle (numbers start at 0) that got its batch queued (past scoring
        # and selection)
        "retrain_cycles_completed": sum(
            1 for n, state in states.items() if n >= cycles_before and state in READY_STATES
        ),
        "model_versions": models,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--items", type=int, default=3000, help="images in the project")
    parser.add_argument("--finished", type=int, default=2500, help="object sets to submit")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="web worker processes")
    parser.add_argument("--learner", choices=["on", "off"], default="on")
    parser.add_argument("--learner-nice", type=int, default=10)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause before each request (0: as fast as the server answers)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="CenterNet epochs per retraining")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server log")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run one web worker under cProfile (no learner) and write its stats here",
    )
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.learner, args.workers = "off", 1
    suffix = "" if args.db == "sqlite" else "_postgresql"
    out = args.out or RESULTS / f"object_load{suffix}.json"

    pg_name = None
    url = ""
    if args.db == "postgresql":
        import psycopg

        pg_name = f"ex_objload_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        url = PG_URL.format(name=pg_name)
    budget = args.items
    learner = args.learner == "on"
    try:
        with tempfile.TemporaryDirectory(prefix="exemplar-objload-") as tmp:
            root = Path(tmp) / "proj"
            t_setup = time.perf_counter()
            tokens, ids, n_proposals = setup(
                root,
                url,
                n_items=args.items,
                batch=args.batch,
                budget=budget,
                annotators=args.annotators,
                epochs=args.epochs,
                queue_all=not learner,
            )
            setup_s = time.perf_counter() - t_setup
            cycles_before = _count_cycles(root)
            port = _free_port()
            log_path = Path(tmp) / "server.log"
            cmd = (
                serve_command(root, port, args) if learner else no_learner_command(root, port, args)
            )
            run = Run(args.finished, args.seconds, args.think_ms / 1000)
            timing = drive_server(cmd, port, log_path, tokens, ids, run, pg_name)
            server_log = log_path.read_text(errors="replace")
            if args.server_log is not None:
                args.server_log.write_text(server_log)
            verdict = verify(root, run, ids, cycles_before)
    finally:
        if pg_name is not None:
            import psycopg

            with psycopg.connect(PG_SERVER, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')

    stats = {route: _pct(run.ms[route]) for route in ROUTES}
    everything = [v for route in OBJECT_ROUTES for v in run.ms[route]]
    correct = (
        all(
            verdict[k] == 0
            for k in (
                "object_writes_lost",
                "object_writes_stored_twice",
                "object_writes_mismatched",
                "sets_lost",
                "sets_stored_twice",
                "sets_mismatched",
                "sets_with_wrong_row_count",
                "unacknowledged_extra_rows",
                "items_labeled_twice_same_cycle",
                "overlapping_leases",
            )
        )
        and not run.errors
    )
    latency_ok = all(
        stats[r].get("p99_ms", 1e9) < GOAL_P99_MS for r in OBJECT_ROUTES if stats[r]["n"]
    )
    log_lines = server_log.splitlines()
    errors_in_log = [line for line in log_lines if "Traceback" in line or "ERROR" in line]
    learner_lines = [
        line for line in log_lines if "background learning" in line or "learner" in line
    ]
    result = {
        "db": args.db,
        "annotators": args.annotators,
        "items": args.items,
        "proposals": n_proposals,
        "finished_target": args.finished,
        "batch_size": args.batch,
        "workers": args.workers,
        "learner": args.learner,
        "learner_nice": args.learner_nice if learner else None,
        "centernet_epochs": args.epochs if learner else None,
        "access_log": args.access_log,
        "think_ms": args.think_ms,
        "setup_s": round(setup_s, 1),
        "wall_s": round(timing["wall_s"], 2),
        "items_per_s": round(len(run.set_acks) / timing["wall_s"], 1),
        "latency": stats,
        "object_routes": _pct(everything),
        "empty_next_responses": run.empty,
        "queue_ran_dry": run.ran_dry,
        "slow_requests_per_second": _histogram(run.slow_at, timing["wall_s"], 1.0),
        "client_errors": dict(run.errors),
        "served_strategies": dict(run.strategies),
        **verdict,
        # the learner fitted a model during the run (its cycle may still be scoring)
        "retraining_ran": verdict["model_versions"] > 0,
        "server_log_error_lines": len(errors_in_log),
        "server_log_first_traceback": _first_traceback(server_log),
        "learner_log": learner_lines[-10:],
        "goal_p99_ms": GOAL_P99_MS,
        "goal_latency_met": latency_ok,
        "correctness_ok": correct,
        **{k: v for k, v in timing.items() if k != "wall_s"},
        **_machine(),
        "note": (
            "client (Http1 on uvloop, 1 process, 1 keep-alive connection per annotator) and "
            f"server ({args.workers} web workers"
            + (f" + learner process at nice {args.learner_nice}" if learner else ", no learner")
            + ") share the machine"
        ),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print()
    print(markdown_row(result))
    return 0 if correct else 1


def markdown_row(result: dict[str, Any]) -> str:
    """The result as a markdown table (header and one row): p50/p95/p99 ms per route."""
    lat = result["latency"]

    def cell(route: str) -> str:
        s = lat[route]
        return "-" if not s["n"] else f"{s['p50_ms']}/{s['p95_ms']}/{s['p99_ms']}"

    head = (
        "| db | learner | annotators | items | items/s | req/s | "
        + " | ".join(f"{r} p50/p95/p99 ms" for r in ROUTES)
        + " | lost | twice | overlaps | retrains | p99<100ms |"
    )
    rule = "|" + "---|" * (head.count("|") - 1)
    lost = result["object_writes_lost"] + result["sets_lost"]
    twice = result["object_writes_stored_twice"] + result["sets_stored_twice"]
    row = (
        f"| {result['db']} | {result['learner']} | {result['annotators']} "
        f"| {result['sets_acknowledged']} | {result['items_per_s']} | {result['requests_per_s']} | "
        + " | ".join(cell(r) for r in ROUTES)
        + f" | {lost} | {twice} | {result['overlapping_leases']} "
        f"| {result['retrain_cycles_completed']} | {'met' if result['goal_latency_met'] else 'MISSED'} |"
    )
    return f"{head}\n{rule}\n{row}"


if __name__ == "__main__":
    sys.exit(main())
