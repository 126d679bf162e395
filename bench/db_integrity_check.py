"""What ``PRAGMA quick_check`` costs when a project is opened after an unclean shutdown.

    python -m bench.db_integrity_check [--items 100000] [--repeat 5]

``Project.open`` runs SQLite's ``PRAGMA quick_check`` only when the database may have been
left damaged: it was changed since its last clean close (its size, mtime or inode differ
from ``exemplar.db.clean``) or a write-ahead log holds frames. This measures the open of a
project of ``--items`` synthetic feature rows (32 float32 features, 10 classes; half of the
items carry a verified label, so the ``labels`` table holds ``items / 2`` rows), with and
without the check, plus the full ``PRAGMA integrity_check`` for comparison. The page cache
is warm (the file was just written); a cold read adds the disk's time to read the file.

Results are merged into ``bench/results/db_integrity_check.json`` and a markdown row is
printed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from exemplar.project import Project
from exemplar.store.db import CLEAN_SUFFIX, needs_check

RESULTS = Path(__file__).parent / "results"


def _build(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 32)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(str)
    data = root.parent / "items.npz"
    half = n // 2
    np.savez(data, X=X[:half], y=y[:half])
    with Project.init(root, [str(i) for i in range(10)]) as project:
        project.import_(data, labels_as="labels")
        np.savez(data, X=X[half:], y=y[half:])
        project.import_(data, labels_as="ground_truth")


def _time_open(root: Path, *, dirty: bool) -> float:
    marker = root / ("exemplar.db" + CLEAN_SUFFIX)
    if dirty:
        marker.unlink(missing_ok=True)
    assert needs_check(str(root / "exemplar.db")) == dirty
    t0 = time.perf_counter()
    Project.open(root).close()
    return time.perf_counter() - t0


def _time_pragma(db: Path, pragma: str) -> float:
    conn = sqlite3.connect(db)
    try:
        t0 = time.perf_counter()
        rows = conn.execute(f"PRAGMA {pragma}").fetchall()
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    assert rows == [("ok",)], rows
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build the project, time the opens and the pragmas, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        t0 = time.perf_counter()
        _build(root, args.items)
        build_s = time.perf_counter() - t0
        db = root / "exemplar.db"
        Project.open(root).close()  # stamp it clean
        clean = [_time_open(root, dirty=False) for _ in range(args.repeat)]
        dirty = [_time_open(root, dirty=True) for _ in range(args.repeat)]
        quick = [_time_pragma(db, "quick_check") for _ in range(args.repeat)]
        full = [_time_pragma(db, "integrity_check") for _ in range(args.repeat)]
        result = {
            "items": args.items,
            "labels": args.items // 2,
            "db_bytes": db.stat().st_size,
            "build_s": round(build_s, 2),
            "open_clean_ms": round(statistics.median(clean) * 1000, 1),
            "open_after_unclean_ms": round(statistics.median(dirty) * 1000, 1),
            "quick_check_ms": round(statistics.median(quick) * 1000, 1),
            "integrity_check_ms": round(statistics.median(full) * 1000, 1),
            "repeat": args.repeat,
            "machine": f"{platform.machine()} {platform.python_version()} "
            f"sqlite {sqlite3.sqlite_version}",
        }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "db_integrity_check.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved[str(args.items)] = result
    path.write_text(json.dumps(saved, indent=2) + "\n")
    print(
        "| items | db | open (clean) | open (after unclean) | quick_check | integrity_check |\n"
        "|---|---|---|---|---|---|\n"
        f"| {result['items']:,} | {result['db_bytes'] / 2**20:.1f} MB "
        f"| {result['open_clean_ms']} ms | {result['open_after_unclean_ms']} ms "
        f"| {result['quick_check_ms']} ms | {result['integrity_check_ms']} ms |"
    )
    return result


if __name__ == "__main__":
    main()
