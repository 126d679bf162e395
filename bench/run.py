"""Run every benchmark with its defaults (``make bench``); results go to bench/results/.

    python -m bench.run

1. ``bench.selection_scale``: query time and peak memory per strategy at N = 10^4..10^6
   (writes selection_scale.json and selection_scale.md).
2. ``bench.label_efficiency``: paired simulations against random (label_efficiency.json).
3. ``bench.import_speed``: 10^5 CSV rows and 10^4 images into a project (import_speed.json).
4. ``bench.cycle_overhead``: label-to-next-batch time at a pool of 10^5 (cycle_overhead.json).
5. ``bench.queue_ops``: lease + submit with 8 concurrent writers, SQLite and PostgreSQL.
6. ``bench.server_load``: 50 annotators over HTTP while the server retrains, SQLite and
   PostgreSQL, and the same client against a hello-world app (the machine's ceiling).
7. ``bench.stochastic_scoring``: MC-dropout scoring throughput and flat memory, pools of
   10^4..10^6 (stochastic_scoring_mlp.json, stochastic_scoring_committee.json).
8. ``bench.mc_dropout_throughput``: the built-in CNN with 20 MC-dropout passes scoring pools
   of 10^4..10^6 with BALD, and its dropout masks against PyTorch's
   (mc_dropout_throughput.json).
9. ``bench.object_load``: 50 annotators verifying model proposals (one-object writes and
   object sets) over HTTP while the detector retrains, SQLite and PostgreSQL
   (object_load.json, object_load_postgresql.json).
10. ``bench.selection_10m``: margin, k-center, TypiClust, ProbCover and the default at 10^6
    and 10^7 items with 64-d embeddings on disk: time and peak memory per item
    (selection_10m.json).
11. ``bench.ray_overhead``: the same pool scored on a local Ray and in process
    (ray_overhead.json).
12. ``bench.albl_compare``: the ALBL bandit against the default and random on every
    built-in dataset (albl_compare.json).
13. ``bench.annotators``: ActiveLab's relabel-or-label-new against fixed policies with
    simulated annotators (annotators.json).
14. ``bench.synthesis``: query synthesis against pool-based selection (synthesis.json).

Each runs in its own process, so one's memory and thread pools do not affect the other.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

BENCHMARKS: list[list[str]] = [
    ["bench.selection_scale", "--markdown", str(RESULTS / "selection_scale.md")],
    ["bench.label_efficiency"],
    ["bench.import_speed"],
    ["bench.cycle_overhead"],
    ["bench.queue_ops", "--db", "sqlite", "--repeat", "3"],
    ["bench.queue_ops", "--db", "postgresql", "--out", str(RESULTS / "queue_ops_postgresql.json")],
    ["bench.server_load", "--db", "sqlite"],
    ["bench.server_load", "--db", "postgresql"],
    ["bench.server_load", "--hello-world"],
    ["bench.stochastic_scoring", "--model", "mlp", "--sizes", "10000,100000"],
    ["bench.stochastic_scoring", "--model", "committee", "--sizes", "10000,100000,1000000"],
    ["bench.mc_dropout_throughput"],
    ["bench.object_load", "--db", "sqlite"],
    ["bench.object_load", "--db", "postgresql"],
    ["bench.selection_10m", "--sizes", "1000000,10000000"],
    ["bench.ray_overhead"],
    ["bench.albl_compare"],
    ["bench.annotators"],
    ["bench.synthesis"],
]


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent
    failed = []
    for module, *args in BENCHMARKS:
        print(f"\n=== {module} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", module, *args], cwd=root)
        print(f"=== {module}: exit {rc} after {time.perf_counter() - t0:.0f} s ===", flush=True)
        if rc != 0:
            failed.append(module)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
