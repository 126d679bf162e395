"""Labeling-server load test: concurrent annotators over loopback while retraining runs.

    python -m bench.server_load [--db sqlite|postgresql] [--annotators 50] [--labels 10000]
                                [--workers 2] [--learner-nice 10] [--hello-world]

Goal (issue): 50 concurrent simulated annotators, each labeling as fast as the server
allows, 10,000 labels in total while the background learner retrains; p99 latency of
"next item" and "submit" under 100 ms, 0 lost labels, 0 items leased to two annotators at
once, on SQLite and on PostgreSQL.

Setup: a human-oracle project over a synthetic 64-feature pool (15,000 items in 10 classes,
with ground truth so annotators answer correctly; noisy enough that the KPI is never met, so
every cycle fits a new model), selection ``batch_size`` 500 so the queue is deep, a label
budget above the target so the loop never stops during the run. The first cycle is run once
so its batch is queued. One annotator account and API token per simulated annotator.
``exemplar serve --workers N`` (``--no-access-log``; the learner in its own process at
``--learner-nice``) runs as a subprocess on 127.0.0.1.

The client is one process: an asyncio (uvloop) task per annotator, each with its own
keep-alive HTTP/1.1 connection (:class:`Http1`, bearer token), looping
``GET /api/v1/items/next`` -> ``POST /api/v1/labels`` (with an idempotency key) until the
target number of labels is acknowledged. A 204 (queue momentarily empty) is counted and
retried after 50 ms. Afterwards the server is stopped and the run is checked against the
database: every acknowledged label stored (0 lost), no extra labels, no item labeled twice,
and no queue entry held by two annotators at overlapping times (from the lease and submit
times recorded client-side).

``--hello-world`` runs the same client against two routes that do no work
(:func:`hello_app`, same uvicorn settings): the ceiling this machine allows.

Results go to ``bench/results/server_load.json`` (``server_load_postgresql.json``,
``server_load_hello.json``) and a markdown table row is printed. Client and server share
the machine: the load average, the client's CPU per request and the server processes' CPU
are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop
from fastapi import FastAPI, Request

RESULTS = Path(__file__).parent / "results"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
CLASSES = [f"c{i}" for i in range(10)]
GOAL_P99_MS = 100.0
PASSWORD = "load test password"
#: Requests slower than this are counted per second of the run (to see when tails happen).
SLOW_S = GOAL_P99_MS / 1000
#: A run stops early after this many failed requests (and after ``Run.deadline``).
MAX_ERRORS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pool(path: Path, n: int, dim: int, seed: int = 0) -> Path:
    """A synthetic pool: ``n`` points in 10 Gaussian classes, ``dim`` features, with labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 1.0, size=(len(CLASSES), dim))
    y = rng.integers(0, len(CLASSES), size=n)
    X = (centers[y] + rng.normal(0.0, 6.0, size=(n, dim))).astype(np.float32)
    np.savez(path, X=X, y=np.asarray(CLASSES)[y])
    return path


def setup(
    root: Path, url: str, *, n_items: int, batch: int, budget: int, annotators: int
) -> tuple[dict[str, str], dict[int, str]]:
    """Create the project, queue the first batch, add the accounts; tokens and ground truth."""
    from sqlalchemy import select

    from exemplar.project import Project
    from exemplar.store.accounts import add_user, create_token
    from exemplar.store.schema import Item

    project = Project.init(
        root,
        CLASSES,
        database_url=url,
        oracle={"kind": "human"},
        model={"candidates": [{"recipe": "logreg", "params": {"C": 1.0}}]},
        selection={"batch_size": batch, "initial_size": batch},
        stopping={"criteria": [{"name": "label_budget", "budget": budget}]},
        # Accuracy 1.0 is never reached on this noisy pool: every cycle retrains (a met KPI
        # would make the loop reuse the previous model instead of fitting a new one).
        kpi={"metric": "accuracy", "target": 1.0},
    )
    with project:
        project.import_(_pool(root.parent / "pool.npz", n_items, 64), labels_as="ground_truth")
        project.run()
        tokens = {}
        for i in range(annotators):
            user = add_user(project.db, f"ann{i:03d}", "annotator", PASSWORD)
            tokens[user.name] = create_token(project.db, user.id, "load")
        with project.db.read() as s:
            truth = {int(i): str(g) for i, g in s.execute(select(Item.id, Item.ground_truth))}
    return tokens, truth


class Run:
    """Shared state of the simulated annotators."""

    def __init__(self, target: int, max_seconds: float = 1800.0) -> None:
        self.target = target
        self.started = time.perf_counter()
        self.empty_at: list[float] = []  # seconds into the run of each 204
        self.slow_at: list[float] = []  # start of each request slower than SLOW_S
        self.deadline = time.monotonic() + max_seconds
        self.acked: dict[int, tuple[int, str, int]] = {}  # label_id -> (item, annotator, entry)
        self.next_ms: list[float] = []  # every next request, 204 (queue empty) included
        self.next_item_ms: list[float] = []  # those that returned an item
        self.submit_ms: list[float] = []
        self.next_at: list[float] = []  # when each next request started (s into the run)
        self.submit_at: list[float] = []
        self.empty = 0
        self.errors: Counter[str] = Counter()
        self.leases: list[tuple[int, str, float, float]] = []  # entry, annotator, t0, t1
        self.strategies: Counter[str] = Counter()

    def record(self, times: list[float], starts: list[float], t0: float, t1: float) -> None:
        """One request's latency (ms) and start (s into the run); a slow one is noted too."""
        times.append((t1 - t0) * 1000)
        starts.append(t0 - self.started)
        if t1 - t0 > SLOW_S:
            self.slow_at.append(t0 - self.started)

    @property
    def done(self) -> bool:
        """The target is reached, or the run gives up (too many errors, or too long)."""
        return (
            len(self.acked) >= self.target
            or sum(self.errors.values()) >= MAX_ERRORS
            or time.monotonic() > self.deadline
        )


class TransportError(Exception):
    """The connection broke, or the server's answer was not HTTP/1.1 as expected."""


class Http1:
    """One keep-alive HTTP/1.1 connection on asyncio streams: just what the annotators send.

    A general client (aiohttp) spent 0.25-0.37 ms of CPU per request here, on the machine the
    server shares; this one writes the request in one piece and reads ``Content-Length``
    (or chunked) bodies. It reconnects after a broken connection.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self._head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes | None = None, extra: str = ""
    ) -> tuple[int, bytes]:
        """Send one request (``extra``: more ``Name: value\\r\\n`` header lines); the status
        and the body of the answer."""
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            head = f"{method} {path} HTTP/1.1\r\n{self._head}{extra}"
            if body is not None:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            self._writer.write(head.encode() + b"\r\n" + (body or b""))
            raw = await self._reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            headers = raw.lower()
            close = b"\r\nconnection: close" in headers
            if b"\r\ntransfer-encoding: chunked" in headers:
                data = await self._chunked()
            else:
                start = headers.find(b"\r\ncontent-length:")
                length = (
                    0 if start < 0 else int(headers[start + 17 : headers.index(b"\r\n", start + 2)])
                )
                data = await self._reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            await self.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if close:
            await self.close()
        return status, data

    async def _chunked(self) -> bytes:
        assert self._reader is not None
        parts = []
        while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await self._reader.readexactly(size + 2))
        await self._reader.readuntil(b"\r\n")
        return b"".join(p[:-2] for p in parts)

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def annotator(http: Http1, name: str, truth: dict[int, str], run: Run) -> None:
    """Loop next -> submit as fast as the server answers until the run's target is reached."""
    while not run.done:
        t0 = time.perf_counter()
        try:
            status, data = await http.request("GET", "/api/v1/items/next")
        except TransportError as exc:
            run.errors[f"next {exc}"[:80]] += 1
            await asyncio.sleep(0.05)
            continue
        t1 = time.perf_counter()
        run.record(run.next_ms, run.next_at, t0, t1)
        if status == 204:
            run.empty += 1
            run.empty_at.append(t1 - run.started)
            await asyncio.sleep(0.05)
            continue
        if status != 200:
            run.errors[f"next {status}"] += 1
            await asyncio.sleep(0.05)
            continue
        item = json.loads(data)
        run.next_item_ms.append((t1 - t0) * 1000)
        run.strategies[str(item["strategy"]).split(":")[0]] += 1
        body = json.dumps(
            {
                "entry_id": item["entry_id"],
                "label": truth[item["item_id"]],
                "idempotency_key": f"{name}-{uuid.uuid4().hex}",
            }
        ).encode()
        for _attempt in range(3):  # a transport error is retried with the same key
            t2 = time.perf_counter()
            try:
                status, data = await http.request("POST", "/api/v1/labels", body)
            except TransportError as exc:
                run.errors[f"submit {exc}"[:80]] += 1
                continue
            t3 = time.perf_counter()
            run.record(run.submit_ms, run.submit_at, t2, t3)
            if status == 200:
                out = json.loads(data)
                run.acked[out["label_id"]] = (out["item_id"], name, item["entry_id"])
            else:
                run.errors[f"submit {status}"] += 1
            run.leases.append((item["entry_id"], name, t0, t3))
            break


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    if a.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": int(a.size),
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
        "max_ms": round(float(a.max()), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def overlapping_leases(leases: list[tuple[int, str, float, float]]) -> int:
    """Entries held by two different annotators at overlapping times."""
    by_entry: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    for entry, who, t0, t1 in leases:
        by_entry[entry].append((t0, t1, who))
    bad = 0
    for spans in by_entry.values():
        spans.sort()
        held: list[tuple[float, str]] = []  # (end, annotator) of the spans seen so far
        for start, end, who in spans:
            if any(e > start and w != who for e, w in held):
                bad += 1
                break
            held.append((end, who))
    return bad


def verify(root: Path, run: Run, cycles_before: int) -> dict[str, Any]:
    """Compare the acknowledged labels with the database."""
    from sqlalchemy import func, select

    from exemplar.project import Project
    from exemplar.store.schema import Cycle, Label, ModelVersion, QueueEntry

    with Project.open(root) as project, project.db.read() as s:
        rows = s.execute(
            select(Label.id, Label.item_id, Label.annotator, Label.cycle_id, Label.strategy)
        ).all()
        cycles = s.scalar(select(func.count()).select_from(Cycle)) or 0
        models = s.scalar(select(func.count()).select_from(ModelVersion)) or 0
        still_leased = (
            s.scalar(
                select(func.count()).select_from(QueueEntry).where(QueueEntry.status == "leased")
            )
            or 0
        )
    stored = {r.id: r for r in rows}
    lost = [lid for lid, (item, who, _e) in run.acked.items() if lid not in stored]
    mismatched = [
        lid
        for lid, (item, who, _e) in run.acked.items()
        if lid in stored and (stored[lid].item_id != item or stored[lid].annotator != who)
    ]
    per_item = Counter(r.item_id for r in rows)
    per_item_cycle = Counter((r.item_id, r.cycle_id) for r in rows)
    per_entry = Counter(e for (_i, _w, e) in run.acked.values())
    return {
        "labels_stored": len(rows),
        "labels_acknowledged": len(run.acked),
        "lost_labels": len(lost),
        "mismatched_labels": len(mismatched),
        "unacknowledged_extra_labels": len(set(stored) - set(run.acked)),
        "items_labeled_twice": sum(1 for c in per_item.values() if c > 1),
        "items_labeled_twice_same_cycle": sum(1 for c in per_item_cycle.values() if c > 1),
        "entries_acked_twice": sum(1 for c in per_entry.values() if c > 1),
        "overlapping_leases": overlapping_leases(run.leases),
        "entries_served_to_2_annotators": sum(
            1
            for who in _served_by(run.leases).values()
            if len(who) > 1  # not necessarily at once: see overlapping_leases
        ),
        "entries_left_leased": still_leased,
        "stale_labels": sum(1 for r in rows if (r.strategy or "").startswith("stale")),
        "cycles_before": cycles_before,
        "cycles_after": cycles,
        "retrain_cycles_completed": cycles - cycles_before,
        "model_versions": models,
    }


def _served_by(leases: list[tuple[int, str, float, float]]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for entry, who, _t0, _t1 in leases:
        out[entry].add(who)
    return out


def _count_cycles(root: Path) -> int:
    from sqlalchemy import func, select

    from exemplar.project import Project
    from exemplar.store.schema import Cycle

    with Project.open(root) as project, project.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Cycle)) or 0)


def start_server(
    cmd: list[str], port: int, log_path: Path, timeout: float = 60.0
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` (a server on ``port``) and wait up to ``timeout`` s until it answers."""
    log = log_path.open("wb")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1.0)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"server did not start in {timeout:.0f} s")


def serve_command(root: Path, port: int, args: argparse.Namespace) -> list[str]:
    """``exemplar serve`` with the benchmark's options."""
    exe = Path(sys.executable).with_name("exemplar")
    return [
        str(exe),
        "serve",
        str(root),
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--access-log" if args.access_log else "--no-access-log",
        "--learner-nice",
        str(args.learner_nice),
    ]


def hello_app() -> Any:
    """The ceiling: the same two routes doing no work (a uvicorn factory, ``--hello-world``)."""
    app = FastAPI()
    counter = iter(range(1, 2**62))

    @app.get("/login")
    async def login() -> dict[str, str]:
        return {}

    @app.get("/api/v1/items/next")
    async def next_item() -> dict[str, Any]:
        return {"entry_id": next(counter), "item_id": 0, "strategy": "hello"}

    @app.post("/api/v1/labels")
    async def post_label(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"label_id": next(counter), "item_id": 0, "label": body["label"]}

    return app


def hello_command(port: int, args: argparse.Namespace) -> list[str]:
    """uvicorn serving :func:`hello_app` with the server's settings."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.server_load:hello_app",
        "--factory",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--access-log" if args.access_log else "--no-access-log",
        "--log-level",
        "warning",
    ]


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_s(fields: list[str]) -> float:
    """User + system CPU seconds from :func:`_proc_stat`'s fields (utime, stime)."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    """The processes below ``root`` (children, grandchildren, ...)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) is not None:
            parent[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        kids = [child for child, ppid in parent.items() if ppid == pid]
        found.extend(kids)
        frontier.extend(kids)
    return found


def server_process_cpu(root: int) -> dict[str, float]:
    """CPU seconds so far of the server's processes: web workers (and the supervisor) at
    niceness 0, the learner at its niceness (> 0)."""
    out = {"web": 0.0, "learner": 0.0}
    for pid in [root, *_descendants(root)]:
        fields = _proc_stat(pid)
        if fields is not None:
            out["learner" if int(fields[16]) > 0 else "web"] += _cpu_s(fields)
    return out


class PgBackendCpu:
    """CPU seconds of the PostgreSQL backends of one database while it runs.

    A thread looks at ``pg_stat_activity`` every ``POLL_S`` and notes each backend's CPU;
    :meth:`stop` returns the sum of what each used since it was first seen (since the start
    for those already open then). A backend that lived less than ``POLL_S`` is missed.
    """

    POLL_S = 0.25

    def __init__(self, database: str) -> None:
        import psycopg

        self.database = database
        self._admin = psycopg.connect(PG_SERVER, autocommit=True)
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._poll(started=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _poll(self, started: bool = False) -> None:
        rows = self._admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
        ).fetchall()
        for (pid,) in rows:
            if (fields := _proc_stat(int(pid))) is not None:
                self._first.setdefault(int(pid), _cpu_s(fields) if started else 0.0)
                self._last[int(pid)] = _cpu_s(fields)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL_S):
            self._poll()

    def stop(self) -> float:
        """Stop polling; the CPU seconds used by the database's backends meanwhile."""
        self._stop.set()
        self._thread.join()
        self._poll()
        self._admin.close()
        return sum(self._last[pid] - self._first[pid] for pid in self._last)


def drive_server(
    cmd: list[str],
    port: int,
    log_path: Path,
    tokens: dict[str, str],
    truth: dict[int, str],
    run: Run,
    pg_database: str | None = None,
) -> dict[str, Any]:
    """Start the server, run the annotators against it, stop it; timings and CPU use."""
    proc = start_server(cmd, port, log_path)
    run.started = time.perf_counter()
    cpu_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_self = time.process_time()
    load_before = os.getloadavg()
    server_before = server_process_cpu(proc.pid)
    pg_cpu = None if pg_database is None else PgBackendCpu(pg_database)
    try:
        t0 = time.perf_counter()
        uvloop.run(drive(port, tokens, truth, run))
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
    requests = len(run.next_ms) + len(run.submit_ms)
    labels = max(len(run.acked), 1)
    return {
        "wall_s": wall,
        "requests": requests,
        "requests_per_s": round(requests / wall, 1),
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(requests, 1), 3),
        # CPU during the run (after start-up), per acknowledged label: the web workers, the
        # learner, and PostgreSQL's backends of the project's database (PgBackendCpu). Less
        # sensitive to neighbours on a shared host than latency and throughput.
        "web_cpu_ms_per_label": round(
            1000 * (server_after["web"] - server_before["web"]) / labels, 3
        ),
        "learner_cpu_s": round(server_after["learner"] - server_before["learner"], 1),
        "pg_cpu_ms_per_label": None if pg_used is None else round(1000 * pg_used / labels, 3),
        # Web workers and learner together, from start-up to shutdown.
        "server_cpu_s": round(server_cpu, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


async def drive(port: int, tokens: dict[str, str], truth: dict[int, str], run: Run) -> None:
    """One HTTP/1.1 keep-alive connection per annotator, all in this process's event loop."""
    connections = [Http1("127.0.0.1", port, token) for token in tokens.values()]
    try:
        await asyncio.gather(
            *(
                annotator(http, name, truth, run)
                for http, name in zip(connections, tokens, strict=True)
            )
        )
    finally:
        for http in connections:
            await http.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--labels", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=15_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="web worker processes")
    parser.add_argument("--learner-nice", type=int, default=10)
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--hello-world", action="store_true", help="the ceiling: routes that do no work"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--server-log", type=Path, default=None, help="keep the server log")
    parser.add_argument(
        "--samples", type=Path, default=None, help="save every request's start and latency (.npz)"
    )
    args = parser.parse_args(argv)
    name = "server_load_hello" if args.hello_world else "server_load"
    suffix = "" if args.db == "sqlite" or args.hello_world else "_postgresql"
    out = args.out or RESULTS / f"{name}{suffix}.json"
    if args.hello_world:
        return hello_world(args, out)

    pg_name = None
    url = ""
    if args.db == "postgresql":
        import psycopg

        pg_name = f"ex_load_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        url = PG_URL.format(name=pg_name)
    budget = args.labels + 3 * args.batch
    try:
        with tempfile.TemporaryDirectory(prefix="exemplar-load-") as tmp:
            root = Path(tmp) / "proj"
            t_setup = time.perf_counter()
            tokens, truth = setup(
                root,
                url,
                n_items=args.items,
                batch=args.batch,
                budget=budget,
                annotators=args.annotators,
            )
            setup_s = time.perf_counter() - t_setup
            cycles_before = _count_cycles(root)
            port = _free_port()
            log_path = Path(tmp) / "server.log"
            run = Run(args.labels)
            timing = drive_server(
                serve_command(root, port, args), port, log_path, tokens, truth, run, pg_name
            )
            server_log = log_path.read_text(errors="replace")
            if args.server_log is not None:
                args.server_log.write_text(server_log)
            verdict = verify(root, run, cycles_before)
    finally:
        if pg_name is not None:
            import psycopg

            with psycopg.connect(PG_SERVER, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')

    if args.samples is not None:
        np.savez(
            args.samples,
            next_at=run.next_at,
            next_ms=run.next_ms,
            submit_at=run.submit_at,
            submit_ms=run.submit_ms,
        )
    nxt, sub = _pct(run.next_ms), _pct(run.submit_ms)
    correct = (
        verdict["lost_labels"] == 0
        and verdict["mismatched_labels"] == 0
        and verdict["unacknowledged_extra_labels"] == 0
        and verdict["overlapping_leases"] == 0
        and verdict["items_labeled_twice_same_cycle"] == 0
        and not run.errors
    )
    latency_ok = nxt.get("p99_ms", 1e9) < GOAL_P99_MS and sub.get("p99_ms", 1e9) < GOAL_P99_MS
    errors_in_log = [
        line for line in server_log.splitlines() if "Traceback" in line or "ERROR" in line
    ]
    result = {
        "db": args.db,
        "annotators": args.annotators,
        "labels_target": args.labels,
        "items": args.items,
        "batch_size": args.batch,
        "label_budget": budget,
        "workers": args.workers,
        "learner_nice": args.learner_nice,
        "access_log": args.access_log,
        "setup_s": round(setup_s, 1),
        "wall_s": round(timing["wall_s"], 2),
        "labels_per_s": round(len(run.acked) / timing["wall_s"], 1),
        "next": nxt,
        "next_with_item": _pct(run.next_item_ms),
        "submit": sub,
        "empty_next_responses": run.empty,
        "empty_next_per_second": _histogram(run.empty_at, timing["wall_s"], 1.0),
        "slow_requests_per_second": _histogram(run.slow_at, timing["wall_s"], 1.0),
        "client_errors": dict(run.errors),
        "served_strategies": dict(run.strategies),
        **verdict,
        "server_log_error_lines": len(errors_in_log),
        "server_log_first_traceback": _first_traceback(server_log),
        "goal_p99_ms": GOAL_P99_MS,
        "goal_latency_met": latency_ok,
        "correctness_ok": correct,
        **{k: v for k, v in timing.items() if k != "wall_s"},
        **_machine(),
        "note": (
            "client (Http1 on uvloop, 1 process, 1 keep-alive connection per annotator) "
            f"and server (exemplar serve: {args.workers} web workers + learner process "
            f"at nice {args.learner_nice}) share the machine"
        ),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print()
    print(
        "| db | workers | annotators | labels | labels/s | req/s | next p50/p95/p99 ms "
        "| submit p50/p95/p99 ms | empty | lost | overlaps | retrains | p99<100ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.db} | {args.workers} | {args.annotators} | {len(run.acked)} "
        f"| {result['labels_per_s']} | {result['requests_per_s']} "
        f"| {nxt.get('p50_ms')}/{nxt.get('p95_ms')}/{nxt.get('p99_ms')} "
        f"| {sub.get('p50_ms')}/{sub.get('p95_ms')}/{sub.get('p99_ms')} | {run.empty} "
        f"| {verdict['lost_labels']} | {verdict['overlapping_leases']} "
        f"| {verdict['retrain_cycles_completed']} | {'met' if latency_ok else 'MISSED'} |"
    )
    print(
        f"CPU per label: web workers {result['web_cpu_ms_per_label']} ms, PostgreSQL "
        f"{result['pg_cpu_ms_per_label']} ms; learner {result['learner_cpu_s']} s in all; "
        f"load {result['loadavg_before'][0]} -> {result['loadavg_after'][0]}"
    )
    return 0 if correct else 1


def hello_world(args: argparse.Namespace, out: Path) -> int:
    """The same client against :func:`hello_app`: what this machine allows at best."""
    run = Run(args.labels)
    tokens = {f"ann{i:03d}": "none" for i in range(args.annotators)}
    with tempfile.TemporaryDirectory(prefix="exemplar-hello-") as tmp:
        port = _free_port()
        timing = drive_server(
            hello_command(port, args), port, Path(tmp) / "server.log", tokens, {0: "c0"}, run
        )
    nxt, sub = _pct(run.next_ms), _pct(run.submit_ms)
    result = {
        "server": "hello world (bench.server_load:hello_app)",
        "annotators": args.annotators,
        "labels": len(run.acked),
        "workers": args.workers,
        "access_log": args.access_log,
        "wall_s": round(timing["wall_s"], 2),
        "labels_per_s": round(len(run.acked) / timing["wall_s"], 1),
        "next": nxt,
        "submit": sub,
        "client_errors": dict(run.errors),
        **{k: v for k, v in timing.items() if k != "wall_s"},
        **_machine(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(
        f"| hello world | {args.workers} | {args.annotators} | {len(run.acked)} "
        f"| {result['labels_per_s']} | {result['requests_per_s']} "
        f"| {nxt.get('p50_ms')}/{nxt.get('p95_ms')}/{nxt.get('p99_ms')} "
        f"| {sub.get('p50_ms')}/{sub.get('p95_ms')}/{sub.get('p99_ms')} |"
    )
    return 0 if not run.errors else 1


def _histogram(times: list[float], wall: float, width: float) -> list[int]:
    """How many of ``times`` fall in each ``width``-second interval of the run."""
    counts, _ = np.histogram(times, bins=np.arange(0.0, wall + width, width))
    return [int(c) for c in counts]


def _first_traceback(log: str, lines: int = 40) -> list[str]:
    """The first traceback in the server log (and what precedes it), if any."""
    rows = log.splitlines()
    for i, row in enumerate(rows):
        if row.startswith("Traceback"):
            return rows[max(0, i - 2) : i + lines]
    return []


def _machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


if __name__ == "__main__":
    sys.exit(main())
