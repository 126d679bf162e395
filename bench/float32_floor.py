"""Float32 probabilities against scikit-learn's predict_proba floor, with few dependencies.

    python bench/float32_floor.py [--n 1000000] [--repeats 7]

A lighter control for ``bench.selection_scale`` (issue #10): it imports only numpy,
scikit-learn and ``exemplar.models`` / ``exemplar.strategies`` (not the loop, so it runs on a
machine with just numpy, scipy and scikit-learn installed and ``src`` on the path). Same
synthetic pool (float32, 64 features, 10 Gaussian class centres), same plain
LogisticRegression fitted on 1,000 labeled items, batch 100.

* floor: scikit-learn's ``predict_proba`` chunk by chunk (65,536 rows) into float32, then
  ``argpartition`` of the top-class probability over the unlabeled rows;
* ours: ``SklearnAdapter.predict_proba`` (the float32 path), the strategy's utility, and
  its top 100 over the unlabeled rows.

Both run in each repeat, one after the other; the figure is the median of the paired
ratios ours / floor (speed-up = 1 / ratio). Results are printed, not written.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
from sklearn.linear_model import LogisticRegression

from exemplar.models.sklearn import SklearnAdapter
from exemplar.predictions import Predictions
from exemplar.strategies import get_strategy
from exemplar.strategies.base import top_k

CHUNK = 65_536
BATCH = 100


def make_pool(n: int, seed: int = 0, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """The pool of ``bench.selection_scale.make_pool`` (same seed, same rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (10, 64)).astype(np.float32)
    y = rng.integers(0, 10, n)
    X = np.empty((n, 64), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        X[start:stop] = rng.standard_normal((stop - start, 64), dtype=np.float32)
        X[start:stop] *= 1.5
        X[start:stop] += centres[y[start:stop]]
    return X, y


def split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The split of ``bench.selection_scale.split``: 1,000 labeled, the rest unlabeled."""
    rng = np.random.default_rng(seed + 1)
    labeled = np.sort(rng.choice(n, 1000, replace=False))
    mask = np.ones(n, dtype=bool)
    mask[labeled] = False
    return labeled, np.flatnonzero(mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n = args.n
    X, y = make_pool(n)
    labeled, unlabeled = split(n)
    single = SklearnAdapter(LogisticRegression(max_iter=1000)).fit(X[labeled], y[labeled])
    estimator = single.model_

    def floor() -> np.ndarray:
        proba = np.empty((n, 10), np.float32)
        for start in range(0, n, CHUNK):
            proba[start : start + CHUNK] = estimator.predict_proba(X[start : start + CHUNK])
        conf = proba[unlabeled].max(axis=1)
        return unlabeled[np.argpartition(conf, BATCH)[:BATCH]]

    def ours(name: str) -> np.ndarray:
        utility = get_strategy(name).utility(Predictions(proba=single.predict_proba(X)))
        return unlabeled[top_k(np.asarray(utility)[unlabeled], BATCH)]

    print(f"N = {n:,}; {os.cpu_count()} cores; load average {os.getloadavg()}", flush=True)
    floor()
    ours("margin")  # warm-up
    for name in ("least_confidence", "margin", "entropy", "ratio"):
        ratios, floors, calls = [], [], []
        for _ in range(args.repeats):
            gc.collect()
            t0 = time.perf_counter()
            floor()
            f = time.perf_counter() - t0
            gc.collect()
            t0 = time.perf_counter()
            ours(name)
            o = time.perf_counter() - t0
            ratios.append(o / f)
            floors.append(f)
            calls.append(o)
        ratio = statistics.median(ratios)
        print(
            f"{name}: floor {statistics.median(floors):.3f} s, ours "
            f"{statistics.median(calls):.3f} s, ratio {ratio:.2f} (speed-up {1 / ratio:.2f}x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
