"""Selection scale: time and peak memory of one query per strategy as the pool grows.

    python -m bench.selection_scale [--sizes 10000,100000,1000000] [--strategies all]
        [--repeats N] [--model logreg|scaled-logreg] [--out bench/results/selection_scale.json]
        [--markdown PATH]

Protocol (issue #2): a synthetic pool of N items (float32, 64 features, 10 Gaussian class
centres), a plain scikit-learn LogisticRegression (``--model scaled-logreg``: StandardScaler +
LogisticRegression in a pipeline) fitted on 1,000 labeled items (fit time excluded), batch
100. Each strategy is timed through ``select_batch``, the exact step the loop and the
simulator run: predict what the strategy reads, then query. Committee strategies use
``CommitteeAdapter(LogisticRegression(), n_members=5)``, whose predict costs 6 model passes.

The floor is scikit-learn's own ``predict_proba`` (chunked, 65,536 rows at a time, into a
float32 array: what the adapter did before its float32 path) plus ``np.argpartition`` on the
same pool. The adapter now computes probabilities in float32 with one fused softmax
(``exemplar.models.float32``), so an uncertainty strategy can be faster than the floor. The
floor is measured beside every repeat of every strategy, and a strategy's ratio is the median
of its paired ratios (call / floor beside it), so ratios survive load drift on a busy
machine. Absolute seconds depend on the machine and its load; compare the ratios.

Peak memory is measured in a separate, untimed pass with ``tracemalloc`` (numpy reports its
buffers to it): the peak of bytes allocated during one call beyond what existed before it
(the pool ``X`` itself is not counted). BLAS scratch space is not seen by tracemalloc.

Goals: uncertainty strategies (least_confidence, margin, entropy, ratio) at least 1.3x
faster than the floor (ratio <= 1/1.3 = 0.77, issue #10); coreset, badge, typiclust and
information_density under 3 s at N = 10^5 and under 30 s at N = 10^6, with bytes per item
roughly constant across N (linear memory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from exemplar.loop.selection import select_batch
from exemplar.models.base import DEFAULT_CHUNK_SIZE
from exemplar.models.sklearn import CommitteeAdapter, SklearnAdapter
from exemplar.strategies import STRATEGIES, get_strategy

RESULTS = Path(__file__).parent / "results"
N_FEATURES = 64
N_CLASSES = 10
N_LABELED = 1_000
BATCH = 100
N_MEMBERS = 5
SEED = 0
UNCERTAINTY = ("least_confidence", "margin", "entropy", "ratio")
DIVERSITY = ("coreset", "badge", "typiclust", "information_density")
#: Seconds allowed for diversity and density strategies, by pool size.
DIVERSITY_LIMITS = {100_000: 3.0, 1_000_000: 30.0}
#: Uncertainty strategies must be at least 1.3x faster than the floor (issue #10).
UNCERTAINTY_SPEEDUP = 1.3
UNCERTAINTY_RATIO = 1 / UNCERTAINTY_SPEEDUP
MODELS = ("logreg", "scaled-logreg")
MiB = 1024**2
#: Calls faster than this (s) are repeated up to MAX_FAST_REPEATS times: timer noise.
FAST_CALL = 0.2
MAX_FAST_REPEATS = 11


# --------------------------------------------------------------------------- data


def make_pool(n: int, seed: int = SEED, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic float32 pool: 10 Gaussian class centres in 64 dimensions, made chunkwise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (N_CLASSES, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, n)
    X = np.empty((n, N_FEATURES), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        X[start:stop] = rng.standard_normal((stop - start, N_FEATURES), dtype=np.float32)
        X[start:stop] *= 1.5
        X[start:stop] += centres[y[start:stop]]
    return X, y


def split(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """1,000 random labeled indices and the sorted rest as the unlabeled pool."""
    rng = np.random.default_rng(seed + 1)
    labeled = np.sort(rng.choice(n, N_LABELED, replace=False))
    mask = np.ones(n, dtype=bool)
    mask[labeled] = False
    return labeled, np.flatnonzero(mask)


def _logreg(model: str = "logreg") -> BaseEstimator:
    if model == "scaled-logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return LogisticRegression(max_iter=1000)


# --------------------------------------------------------------------------- measuring


def _timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated during ``fn`` beyond those live before it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - base


def _goal(name: str, n: int, seconds: float, ratio: float) -> str:
    if name in UNCERTAINTY:
        ok = ratio <= UNCERTAINTY_RATIO
        return f"{'yes' if ok else 'NO'} (≥{UNCERTAINTY_SPEEDUP}× faster than floor)"
    if name in DIVERSITY and n in DIVERSITY_LIMITS:
        limit = DIVERSITY_LIMITS[n]
        return f"{'yes' if seconds < limit else 'NO'} (<{limit:g} s)"
    if name in DIVERSITY:
        return "— (no time goal at this N)"
    return "—"


def _committee_note(seconds: float, floor: float) -> str:
    return f"— (6 passes: {seconds / (6 * floor):.2f}× of 6·floor)"


def run(
    sizes: list[int],
    names: list[str],
    repeats: int | None,
    memory: bool,
    skip_after: float,
    model: str = "logreg",
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    last_time: dict[str, tuple[int, float]] = {}
    for n in sizes:
        reps = repeats if repeats is not None else (3 if n <= 100_000 else 1)
        rows += run_size(n, names, reps, memory, skip_after, last_time, model)
        gc.collect()
    return {"rows": rows}


def run_size(
    n: int,
    names: list[str],
    reps: int,
    memory: bool,
    skip_after: float,
    last_time: dict[str, tuple[int, float]],
    model_name: str = "logreg",
) -> list[dict[str, Any]]:
    """Rows for one pool size; ``last_time`` carries each strategy's time to the next size."""
    rows: list[dict[str, Any]] = []
    t_data = time.perf_counter()
    X, y = make_pool(n)
    labeled, unlabeled = split(n)
    y_lab = y[labeled]
    single = SklearnAdapter(_logreg(model_name)).fit(X[labeled], y_lab)
    committee = None
    if any("samples" in STRATEGIES[s].requires for s in names):
        committee = CommitteeAdapter(_logreg(model_name), n_members=N_MEMBERS, random_state=SEED)
        committee.fit(X[labeled], y_lab)
    print(
        f"\n## N = {n:,} ({X.nbytes / MiB:.0f} MiB pool; setup "
        f"{time.perf_counter() - t_data:.1f} s; {reps} repeat(s))",
        flush=True,
    )

    estimator = single.model_

    def floor() -> np.ndarray:
        # scikit-learn's own predict_proba, chunked as the adapter called it before.
        proba = np.empty((n, N_CLASSES), dtype=np.float32)
        for start in range(0, n, DEFAULT_CHUNK_SIZE):
            stop = start + DEFAULT_CHUNK_SIZE
            proba[start:stop] = estimator.predict_proba(X[start:stop])
        conf = proba[unlabeled].max(axis=1)
        return unlabeled[np.argpartition(conf, BATCH)[:BATCH]]

    # Warm-up, so that the first row does not pay for first-touch page faults.
    floor()
    times = [_timed(floor) for _ in range(max(reps, MAX_FAST_REPEATS))]
    floors_all = list(times)
    row = _row("floor", n, statistics.median(times), times, times, None)
    row.update(_peak_fields(_peak_bytes(floor) if memory else None, n))
    row["goal"] = "— (reference)"
    rows.append(row)
    _print_row(row)

    for name in names:
        strategy = get_strategy(name)
        model = committee if "samples" in strategy.requires else single
        if name in last_time:
            n_prev, t_prev = last_time[name]
            guess = t_prev * n / n_prev
            if guess > skip_after:
                row = _row(name, n, None, [], [], None)
                row["goal"] = (
                    f"NOT RUN: {t_prev:.1f} s at N={n_prev:,} extrapolates to "
                    f"≥{guess:.0f} s > --skip-after {skip_after:g} s"
                )
                rows.append(row)
                _print_row(row)
                continue

        def call(strategy: Any = strategy, model: Any = model) -> Any:
            return select_batch(
                model, X, strategy, unlabeled, labeled, BATCH, y_labeled=y_lab, random_state=0
            )

        times, floors = [], []
        while len(times) < reps or (
            len(times) < MAX_FAST_REPEATS and statistics.median(times) < FAST_CALL
        ):
            # Alternate which goes first, so neither always follows the other.
            if len(times) % 2:
                times.append(_timed(call))
                floors.append(_timed(floor))
            else:
                floors.append(_timed(floor))
                times.append(_timed(call))
        floors_all += floors
        seconds = statistics.median(times)
        row = _row(name, n, seconds, times, floors, _peak_bytes(call) if memory else None)
        if "samples" in strategy.requires:
            row["goal"] = _committee_note(seconds, row["floor_seconds"])
        else:
            row["goal"] = _goal(name, n, seconds, row["ratio_to_floor"])
        rows.append(row)
        _print_row(row)
        last_time[name] = (n, seconds)
    rows.append(
        {
            "strategy": "floor (all interleaved)",
            "n": n,
            "seconds": statistics.median(floors_all),
            "times": floors_all,
        }
    )
    return rows


def _row(
    name: str,
    n: int,
    seconds: float | None,
    times: list[float],
    floors: list[float],
    peak: int | None,
) -> dict[str, Any]:
    floor_s = statistics.median(floors) if floors else None
    return {
        "strategy": name,
        "n": n,
        "seconds": seconds,
        "times": times,
        "floor_seconds": floor_s,
        "floor_times": floors,
        # Median of the paired ratios: each call against the floor measured beside it.
        "ratio_to_floor": (
            statistics.median(t / f for t, f in zip(times, floors, strict=True))
            if times and floors
            else None
        ),
        **_peak_fields(peak, n),
    }


def _peak_fields(peak: int | None, n: int) -> dict[str, Any]:
    return {
        "peak_extra_bytes": peak,
        "peak_extra_mib": peak / MiB if peak is not None else None,
        "bytes_per_item": peak / n if peak is not None else None,
    }


def _fmt_row(r: dict[str, Any]) -> str:
    def f(v: float | None, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    return (
        f"| {r['strategy']} | {r['n']:,} | {f(r['seconds'], '.3f')} | "
        f"{f(r['ratio_to_floor'], '.2f')} | {f(r['peak_extra_mib'], '.1f')} | "
        f"{f(r['bytes_per_item'], '.0f')} | {r['goal']} |"
    )


def _print_row(r: dict[str, Any]) -> None:
    print(_fmt_row(r), flush=True)


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        (
            f"Synthetic data: float32 pool of N × {N_FEATURES} features from {N_CLASSES} Gaussian "
            f"class centres; LogisticRegression fitted on {N_LABELED:,} labeled items (fit time "
            f"excluded; model `{result['config']['model']}`); batch {BATCH}. Time = one "
            f"`select_batch` call (predict + query), median of the repeats (up to "
            f"{MAX_FAST_REPEATS} for calls under {FAST_CALL:g} s). × floor = median of paired "
            f"ratios to scikit-learn's own chunked `predict_proba` + `np.argpartition`, each "
            f"measured right beside one call of the strategy (below 1: faster than the floor, "
            f"thanks to the adapter's float32 path). Committee strategies "
            f"(vote_entropy, consensus_kl, bald, variation_ratios) use a {N_MEMBERS}-member "
            f"bagging committee: their predict costs {N_MEMBERS + 1} model passes. Peak extra = "
            f"tracemalloc peak during one call beyond the pool itself."
        ),
        "",
        (
            f"Machine: {m['cpu_count']} cores, Python {m['python']}, numpy {m['numpy']}, "
            f"scikit-learn {m['sklearn']}, {m['date']}; load average "
            f"{m['loadavg_start']} at start, {m['loadavg_end']} at end."
        ),
        "",
        "| strategy | N | seconds | × floor | peak extra MiB | bytes/item | goal met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "goal" in r:
            lines.append(_fmt_row(r))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    try:
        from threadpoolctl import threadpool_info

        pools = [
            {k: p.get(k) for k in ("internal_api", "num_threads", "version")}
            for p in threadpool_info()
        ]
    except ImportError:  # pragma: no cover - informational only
        pools = []
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "threadpools": pools,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--strategies", default="all", help="comma list, or 'all'")
    parser.add_argument(
        "--repeats", type=int, default=None, help="default: 3 up to N=10^5, 1 above"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="logreg",
        help="logreg: plain LogisticRegression; scaled-logreg: StandardScaler + LogisticRegression",
    )
    parser.add_argument(
        "--skip-after",
        type=float,
        default=300.0,
        help="do not run a strategy whose time at the previous N, scaled linearly, "
        "exceeds this many seconds (reported as NOT RUN, never dropped)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "selection_scale.json")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    names = list(STRATEGIES) if args.strategies == "all" else args.strategies.split(",")
    for name in names:
        if name not in STRATEGIES:
            sys.exit(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    info = machine()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        result = run(sizes, names, args.repeats, not args.no_memory, args.skip_after, args.model)
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    info["wall_seconds"] = time.perf_counter() - t0
    result = {
        "description": "synthetic data (Gaussian class centres); see bench/selection_scale.py",
        "config": {
            "sizes": sizes,
            "strategies": names,
            "n_features": N_FEATURES,
            "n_classes": N_CLASSES,
            "n_labeled": N_LABELED,
            "model": args.model,
            "batch": BATCH,
            "committee_members": N_MEMBERS,
            "committee_model_passes": N_MEMBERS + 1,
            "repeats": args.repeats or "3 up to 1e5, 1 above",
            "uncertainty_goal_ratio": UNCERTAINTY_RATIO,
            "uncertainty_goal_speedup": UNCERTAINTY_SPEEDUP,
            "floor": "scikit-learn predict_proba, chunked, + np.argpartition",
            "diversity_goal_seconds": DIVERSITY_LIMITS,
        },
        "machine": info,
        **result,
    }
    md = table(result)
    print("\n" + md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwrote {args.out}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(md + "\n")
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
