"""Ray scoring against local scoring on the same pool: the overhead of going distributed.

    nice -n 10 python -m bench.ray_overhead [--n 1000000] [--dim 64] [--num-cpus 2]
        [--repeats 2] [--out bench/results/ray_overhead.json]

Protocol (issue #14): a SYNTHETIC pool of ``n`` rows × ``dim`` float32 features (20
Gaussian clusters, generated chunk by chunk) is saved as a ``.npy`` file and memory-mapped,
as a project's features are. A logistic-regression pipeline (the ``logreg`` recipe: scaler
+ logistic regression) is fitted on 2,000 rows labeled by their cluster. The same model
scores the same pool (65,536-row chunks) through :func:`exemplar.loop.score_pool` in this
process (``local``) and through :func:`exemplar.engines.score_pool_ray` on a Ray started on
this machine with ``--num-cpus`` CPUs (``ray``: Ray Data tasks of 65,536 rows, one CPU
each, shards in a temporary folder), for:

- ``margin``: class probabilities only (``proba`` shards, ``.npy`` and Parquet);
- ``coreset``: probabilities and the pipeline's embeddings (``dim`` floats per row, written
  as shards, then assembled into one memory-mapped ``embeddings.npy``, each shard deleted
  once copied).

Each case runs ``--repeats`` times; the best time is reported, and the case's first Ray
call (``first_ray_s``). Only the session's very first call (the first case, margin npy)
also starts Ray's worker processes and imports exemplar in them; later cases' first calls
find them warm. ``ray_start_s`` is the one-off start of the local Ray (``ray.init``), not
counted in the per-call times; each Ray call still pays Ray Data's planning and task
scheduling (``score_s``) and the driver's reading of the shards (``assemble_s``).
``overhead`` is ray time / local time; ``equal`` says every array of every repeat was
``np.array_equal`` to the local one; ``shard_mib`` is what a call leaves in its shard
folder. On a cluster, the workers' CPUs add up; here both paths share this machine's
cores, so the ratio is the cost of the machinery.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
CHUNK = 65_536
LABELED = 2_000


def make_pool(path: Path, n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A SYNTHETIC clustered pool in a .npy file (written in chunks); memory-mapped X, labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(20, dim)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    y = np.empty(n, dtype=np.int64)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        labels = rng.integers(0, centers.shape[0], size=stop - start)
        out[start:stop] = centers[labels] + rng.standard_normal((stop - start, dim), np.float32)
        y[start:stop] = labels
    out.flush()
    del out
    return np.load(path, mmap_mode="r"), y


def _equal(a: Any, b: Any) -> bool:
    pa, pb = a.predictions, b.predictions
    for name in ("proba", "embeddings"):
        x, z = getattr(pa, name), getattr(pb, name)
        if (x is None) != (z is None) or (x is not None and not np.array_equal(x, z)):
            return False
    return True


def run(n: int, dim: int, num_cpus: int, repeats: int) -> dict[str, Any]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from exemplar.engines import last_run, ray_session, score_pool_ray
    from exemplar.loop.scoring import score_pool
    from exemplar.models import make_model
    from exemplar.strategies import get_strategy

    tmp = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    rows: list[dict[str, Any]] = []
    try:
        X, y = make_pool(tmp / "X.npy", n, dim)
        model = make_model("logreg", 0).fit(np.asarray(X[:LABELED]), y[:LABELED])
        t0 = time.perf_counter()
        with ray_session("", num_cpus) as ray:
            ray_start = time.perf_counter() - t0
            cases = [("margin", "npy"), ("margin", "parquet"), ("coreset", "npy")]
            for name, fmt in cases:
                strategy = get_strategy(name)
                local_times, ray_times, parts = [], [], []
                local = remote = None
                equal = True
                for _ in range(repeats):
                    t = time.perf_counter()
                    local = score_pool(model, X, strategy, chunk_size=CHUNK, tmp_dir=tmp)
                    local_times.append(time.perf_counter() - t)
                    shards = tmp / f"shards-{name}-{fmt}"
                    t = time.perf_counter()
                    remote = score_pool_ray(
                        model,
                        X,
                        strategy,
                        rows_per_task=CHUNK,
                        chunk_size=CHUNK,
                        shard_dir=shards,
                        shard_format=fmt,  # type: ignore[arg-type]
                    )
                    ray_times.append(time.perf_counter() - t)
                    run = last_run()
                    parts.append(dict(run.seconds) if run is not None else {})
                    equal = equal and _equal(local, remote)
                    shard_bytes = sum(p.stat().st_size for p in shards.iterdir())
                    del remote
                    shutil.rmtree(shards)
                best = int(np.argmin(ray_times))
                row = {
                    "strategy": name,
                    "shard_format": fmt,
                    "n": n,
                    "dim": dim,
                    "tasks": -(-n // CHUNK),
                    "local_s": round(min(local_times), 3),
                    "ray_s": round(ray_times[best], 3),
                    "first_ray_s": round(ray_times[0], 3),
                    "score_s": parts[best].get("score"),
                    "assemble_s": parts[best].get("assemble"),
                    "overhead": round(ray_times[best] / min(local_times), 2),
                    "shard_mib": round(shard_bytes / 2**20, 1),
                    "equal": equal,
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
                del local
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"ray_start_s": round(ray_start, 2), "ray_version": ray.__version__, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        (
            f"Ray scoring overhead, {result['rows'][0]['n']:,} × {result['rows'][0]['dim']} "
            f"SYNTHETIC pool, {result['num_cpus']} Ray CPUs on a {result['machine']['cpus']}"
            f"-core machine (Ray {result['ray_version']}; local Ray start "
            f"{result['ray_start_s']} s, not counted below)"
        ),
        "",
        (
            "| strategy | shards | tasks | local s | Ray s | of which Ray Data s | assemble s "
            "| overhead | first Ray call s | shard folder MiB | equal |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['strategy']} | {r['shard_format']} | {r['tasks']} | {r['local_s']} "
            f"| {r['ray_s']} | {r['score_s']} | {r['assemble_s']} | {r['overhead']}× "
            f"| {r['first_ray_s']} | {r['shard_mib']} | {r['equal']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "ray_overhead.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = run(args.n, args.dim, args.num_cpus, args.repeats)
    result = {
        "benchmark": "ray_overhead",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "num_cpus": args.num_cpus,
        "protocol": __doc__.split("\n\n", 2)[2].strip() if __doc__ else "",
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
