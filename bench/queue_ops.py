"""Labeling-queue throughput: lease + submit from concurrent writer processes.

    python -m bench.queue_ops [--db sqlite|postgresql] [--writers 8] [--seconds 10]

Goal (issue): queue operations (lease, submit) at 1,000 per second sustained on SQLite, with
no lost or duplicate leases, measured with 8 concurrent writers.

Each writer is its own process with its own ``Database`` (on SQLite, processes are the
realistic model: threads would share one GIL). Over a pre-filled queue (synthetic items,
50,000 entries by default) every writer loops ``lease`` -> ``submit`` until the time is up.
A lease and a submit each count as one operation. At the end the run is verified against the
database: stored labels == acknowledged submits, no item labeled twice, no entry leased to
two writers at once (from the logged lease intervals), no entry left leased.

Results are merged into ``bench/results/queue_ops.json`` (one key per database) and a
markdown table row is printed. With ``--repeat N`` the median run is reported and every
run's throughput is kept (useful on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
CLASSES = ("a", "b", "c")
GOAL_OPS_PER_S = 1000.0


def _fill(url: str, n: int) -> None:
    """Create ``n`` synthetic feature items and queue them for one cycle."""
    from sqlalchemy import insert, select

    from exemplar.store.db import open_database
    from exemplar.store.queue import enqueue
    from exemplar.store.schema import Cycle, Item, utcnow

    db = open_database(url)
    now = utcnow()
    with db.session() as s:
        cycle = Cycle(number=1, seed=0, strategy="bench", batch_size=n)
        s.add(cycle)
        s.flush()
        s.execute(
            insert(Item),
            [
                {
                    "uid": f"bench-{i}",
                    "row": i,
                    "uri": f"mem://{i}",
                    "kind": "features",
                    "created_at": now,
                }
                for i in range(n)
            ],
        )
        item_ids = list(s.scalars(select(Item.id).order_by(Item.row)))
        enqueue(
            s, cycle.id, [(item_id, "bench", 1.0 - i / n) for i, item_id in enumerate(item_ids)]
        )
    db.dispose()


def _writer(
    url: str,
    who: str,
    lease_seconds: float,
    start: Any,
    deadline_s: float,
    results: Any,
) -> None:
    """One writer process: lease -> submit until the deadline; report logs and latencies."""
    from exemplar.store.db import open_database
    from exemplar.store.queue import lease, submit

    db = open_database(url)
    lease_lat: list[float] = []
    submit_lat: list[float] = []
    log: list[tuple[int, float, float, int]] = []  # entry, leased at, submitted at, label id
    errors: list[str] = []
    start.wait()
    t_end = time.perf_counter() + deadline_s
    try:
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            got = lease(db, who, lease_seconds=lease_seconds)
            t1 = time.perf_counter()
            lease_lat.append(t1 - t0)
            if got is None:
                break
            leased_at = time.time()
            label = CLASSES[got.item_id % len(CLASSES)]
            t2 = time.perf_counter()
            written = submit(
                db,
                got.entry_id,
                who,
                label,
                classes=CLASSES,
                idempotency_key=f"{who}:{got.entry_id}",
            )
            submit_lat.append(time.perf_counter() - t2)
            log.append((got.entry_id, leased_at, time.time(), written.id))
    except Exception as exc:  # noqa: BLE001 - reported and counted by the parent
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        db.dispose()
    results.put((who, lease_lat, submit_lat, log, errors))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _verify(url: str, logs: dict[str, list[tuple[int, float, float, int]]]) -> dict[str, Any]:
    """Compare the writers' logs with the database."""
    from sqlalchemy import func, select

    from exemplar.store.db import open_database
    from exemplar.store.schema import Label, QueueEntry, QueueStatus

    db = open_database(url)
    with db.session() as s:
        n_labels = s.scalar(select(func.count()).select_from(Label)) or 0
        twice = s.scalar(
            select(func.count()).select_from(
                select(Label.item_id).group_by(Label.item_id).having(func.count() > 1).subquery()
            )
        )
        label_ids = set(s.scalars(select(Label.id)))
        still_leased = s.scalar(select(func.count()).where(QueueEntry.status == QueueStatus.LEASED))
        n_done = s.scalar(select(func.count()).where(QueueEntry.status == QueueStatus.DONE))
    db.dispose()

    acknowledged = [label_id for log in logs.values() for *_, label_id in log]
    spans: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    for who, log in logs.items():
        for entry, leased_at, submitted_at, _ in log:
            spans[entry].append((leased_at, submitted_at, who))
    duplicate_leases = sum(len(v) - 1 for v in spans.values())
    overlapping = 0
    for entry_spans in spans.values():
        entry_spans.sort()
        for (_, e1, _), (s2, _, _) in pairwise(entry_spans):
            overlapping += s2 < e1
    lost = len(set(acknowledged) - label_ids)
    checks = {
        "labels_stored": n_labels,
        "submits_acknowledged": len(acknowledged),
        "entries_done": n_done,
        "lost_labels": lost,
        "items_labeled_twice": twice,
        "duplicate_leases": duplicate_leases,
        "overlapping_leases": overlapping,
        "entries_left_leased": still_leased,
    }
    checks["ok"] = (
        n_labels == len(acknowledged) == n_done
        and lost == 0
        and twice == 0
        and duplicate_leases == 0
        and overlapping == 0
        and still_leased == 0
    )
    return checks


def run(db_kind: str, writers: int, seconds: float, entries: int) -> dict[str, Any]:
    """Run the benchmark on one database and return its result record."""
    tmp = tempfile.TemporaryDirectory(prefix="exemplar-queue-bench-")
    pg_name = None
    if db_kind == "sqlite":
        from exemplar.store.db import sqlite_url

        url = sqlite_url(Path(tmp.name) / "bench.db")
    else:
        import psycopg

        pg_name = f"ex_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        url = PG_URL.format(name=pg_name)
    try:
        t = time.perf_counter()
        _fill(url, entries)
        fill_s = time.perf_counter() - t

        ctx = mp.get_context("spawn")
        start = ctx.Event()
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_writer, args=(url, f"w{i}", 3600.0, start, seconds, results), daemon=True
            )
            for i in range(writers)
        ]
        for p in procs:
            p.start()
        time.sleep(2.0)  # let every process import and connect before the clock starts
        t0 = time.perf_counter()
        start.set()
        outputs = [results.get(timeout=seconds + 300) for _ in procs]
        wall = time.perf_counter() - t0
        for p in procs:
            p.join(timeout=60)

        lease_lat = [x for o in outputs for x in o[1]]
        submit_lat = [x for o in outputs for x in o[2]]
        logs = {o[0]: o[3] for o in outputs}
        errors = [e for o in outputs for e in o[4]]
        checks = _verify(url, logs)
        n_ops = len(lease_lat) + len(submit_lat)
        ms = 1000.0
        record: dict[str, Any] = {
            "db": db_kind,
            "writers": writers,
            "seconds": round(wall, 2),
            "entries": entries,
            "fill_seconds": round(fill_s, 2),
            "ops": n_ops,
            "ops_per_s": round(n_ops / wall, 1),
            "labels_per_s": round(len(submit_lat) / wall, 1),
            "lease_ms": {
                "p50": round(_percentile(lease_lat, 0.5) * ms, 3),
                "p99": round(_percentile(lease_lat, 0.99) * ms, 3),
                "mean": round(statistics.fmean(lease_lat) * ms, 3) if lease_lat else None,
            },
            "submit_ms": {
                "p50": round(_percentile(submit_lat, 0.5) * ms, 3),
                "p99": round(_percentile(submit_lat, 0.99) * ms, 3),
                "mean": round(statistics.fmean(submit_lat) * ms, 3) if submit_lat else None,
            },
            "op_ms": {
                "p50": round(_percentile(lease_lat + submit_lat, 0.5) * ms, 3),
                "p99": round(_percentile(lease_lat + submit_lat, 0.99) * ms, 3),
            },
            "errors": errors[:10],
            "checks": checks,
            "goal_ops_per_s": GOAL_OPS_PER_S if db_kind == "sqlite" else None,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "sqlite": sqlite3.sqlite_version,
            },
        }
        return record
    finally:
        if pg_name is not None:
            import psycopg

            with psycopg.connect(PG_SERVER, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs (fresh database each); the median is kept"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "queue_ops.json")
    args = parser.parse_args(argv)

    runs = []
    for _ in range(max(1, args.repeat)):
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        rec = run(args.db, args.writers, args.seconds, args.entries)
        rec["load_average_at_start"] = load
        runs.append(rec)
        print(f"run: {rec['ops_per_s']:,.0f} ops/s (load average {load})", file=sys.stderr)
    runs.sort(key=lambda r: r["ops_per_s"])
    record = dict(runs[len(runs) // 2])
    record["runs_ops_per_s"] = [r["ops_per_s"] for r in runs]
    record["checks"]["ok"] = all(r["checks"]["ok"] for r in runs)
    record["errors"] = [e for r in runs for e in r["errors"]][:10]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    merged: dict[str, Any] = {}
    if args.out.exists():
        try:
            merged = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            merged = {}
    merged[args.db] = record
    args.out.write_text(json.dumps(merged, indent=2) + "\n")

    c = record["checks"]
    print(
        "| db | writers | ops/s | labels/s | lease p50/p99 ms | submit p50/p99 ms "
        "| verified |\n|---|---|---|---|---|---|---|"
    )
    print(
        f"| {args.db} | {args.writers} | {record['ops_per_s']:,.0f} "
        f"| {record['labels_per_s']:,.0f} "
        f"| {record['lease_ms']['p50']:.2f} / {record['lease_ms']['p99']:.2f} "
        f"| {record['submit_ms']['p50']:.2f} / {record['submit_ms']['p99']:.2f} "
        f"| {'ok' if c['ok'] else 'FAILED'} ({c['labels_stored']} labels, "
        f"{c['duplicate_leases']} duplicate / {c['overlapping_leases']} overlapping leases, "
        f"{c['lost_labels']} lost) |"
    )
    if record["errors"]:
        print("writer errors:", *record["errors"], sep="\n  ", file=sys.stderr)
    return 0 if c["ok"] and not record["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
