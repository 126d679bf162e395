"""Selection at ten million items: time and peak memory per item, embeddings on disk.

    nice -n 10 python -m bench.selection_10m [--sizes 1000000,10000000]
        [--strategies "margin;coreset;typiclust;probcover;default"] [--data-dir DIR]
        [--out bench/results/selection_10m.json] [--markdown PATH]

Protocol (issue #14). The pool is SYNTHETIC: N items with 64-d float32 embeddings drawn
around 100 Gaussian cluster centres (cluster weights and spreads vary), written chunk by
chunk into a ``.npy`` file, and class probabilities ``(N, 10)`` float32 from a fixed random
linear model on the embeddings (softmax), written the same way. Neither is ever held in
memory whole: both files are opened memory-mapped (:func:`exemplar.data.embeddings.
open_embeddings`, ``np.load(mmap_mode="r")``). 1,000 random items are labeled; the rest
is the unlabeled pool; batch 100; seed 0.

Each (strategy, N) runs in a fresh subprocess (``--worker``), which opens the files,
builds the index arrays, and times one ``Strategy.query`` (the strategy's whole work:
reading the arrays it needs, scoring, picking). It reports

* ``peak_rss``: the process's peak resident set (``VmHWM`` in ``/proc/self/status``),
  which counts the pages of the memory-mapped files the strategy touched;
* ``peak_anon``: the peak of ``RssAnon`` (heap, no file pages), sampled every 10 ms
  during the query: the memory the strategy itself allocates;
* both divided by N (bytes per item), and the ratio of bytes per item at the largest N to
  that at the smallest N (≈ 1 means memory grows linearly: flat per item).

``default`` is whatever ``get_strategy("default")`` resolves to when the bench runs (its
name is recorded). Absolute seconds depend on the machine and its load (2 shared cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import numpy as np

RESULTS = Path(__file__).parent / "results"
N_FEATURES = 64
N_CLUSTERS = 100
N_CLASSES = 10
N_LABELED = 1_000
BATCH = 100
SEED = 0
CHUNK = 1_000_000
STRATEGIES = ("margin", "coreset", "typiclust", "probcover", "default")
#: The machine's memory: the goal is that every strategy finishes within it.
MACHINE_GIB = 24
MiB = 1024**2


# --------------------------------------------------------------------------- data


def data_paths(data_dir: Path, n: int) -> tuple[Path, Path, Path]:
    """Embeddings, probabilities and labeled-index files of the pool of size ``n``."""
    base = data_dir / f"pool_{n}"
    return base / "embeddings.npy", base / "proba.npy", base / "labeled.npy"


def make_data(data_dir: Path, n: int) -> None:
    """Write the synthetic pool of ``n`` items chunk by chunk (skipped if already there)."""
    from exemplar.data.embeddings import create_embeddings

    emb_path, proba_path, lab_path = data_paths(data_dir, n)
    if emb_path.is_file() and proba_path.is_file() and lab_path.is_file():
        return
    emb_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    centres = rng.normal(0.0, 3.0, (N_CLUSTERS, N_FEATURES)).astype(np.float32)
    spread = rng.uniform(0.5, 1.5, N_CLUSTERS).astype(np.float32)
    weights = rng.dirichlet(np.full(N_CLUSTERS, 2.0))
    w = rng.normal(0.0, 0.3, (N_FEATURES, N_CLASSES)).astype(np.float32)
    emb = create_embeddings(emb_path.with_suffix(".tmp.npy"), n, N_FEATURES)
    proba = np.lib.format.open_memmap(
        proba_path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n, N_CLASSES)
    )
    for i, start in enumerate(range(0, n, CHUNK)):
        stop = min(start + CHUNK, n)
        crng = np.random.default_rng([SEED, i])
        c = crng.choice(N_CLUSTERS, stop - start, p=weights)
        block = crng.standard_normal((stop - start, N_FEATURES), dtype=np.float32)
        block *= spread[c, None]
        block += centres[c]
        emb[start:stop] = block
        logits = block @ w
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        proba[start:stop] = logits
    emb.flush()
    proba.flush()
    del emb, proba
    os.replace(emb_path.with_suffix(".tmp.npy"), emb_path)
    os.replace(proba_path.with_suffix(".tmp.npy"), proba_path)
    labeled = np.sort(np.random.default_rng(SEED + 1).choice(n, N_LABELED, replace=False))
    np.save(lab_path, labeled)


# --------------------------------------------------------------------------- worker


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class _AnonPeak:
    """Samples ``RssAnon`` every 10 ms in a thread; ``peak`` is the largest value (bytes)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("RssAnon") * 1024)
            self._stop.wait(0.01)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("RssAnon") * 1024)


def _spec(name: str) -> tuple[str, dict[str, Any]]:
    """``"probcover@max_candidates=200000,backend=faiss"`` → name and parameters."""
    base, _, rest = name.partition("@")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        params[key] = (
            json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
        )
    return base, params


def worker(data_dir: Path, n: int, name: str) -> dict[str, Any]:
    """One timed query in this (fresh) process; returns the measurements."""
    from exemplar.data.embeddings import open_embeddings
    from exemplar.predictions import Predictions
    from exemplar.strategies import get_strategy

    emb_path, proba_path, lab_path = data_paths(data_dir, n)
    emb = open_embeddings(emb_path, dim=N_FEATURES)
    proba = np.load(proba_path, mmap_mode="r")
    labeled = np.load(lab_path)
    mask = np.ones(n, dtype=bool)
    mask[labeled] = False
    unlabeled = np.flatnonzero(mask)
    del mask
    base, params = _spec(name)
    strategy = get_strategy(base, **params)
    preds = Predictions(proba=proba, embeddings=emb, classes=np.arange(N_CLASSES))
    rss_before = _status_kib("VmRSS") * 1024
    anon_before = _status_kib("RssAnon") * 1024
    with _AnonPeak() as anon:
        t0 = time.perf_counter()
        picks = strategy.query(preds, unlabeled, labeled, BATCH, random_state=SEED)
        seconds = time.perf_counter() - t0
    assert picks.shape == (BATCH,) and np.unique(picks).size == BATCH
    assert not np.isin(picks, labeled).any()
    return {
        "strategy": name,
        "resolved": strategy.name,
        "n": n,
        "seconds": seconds,
        "peak_rss": _status_kib("VmHWM") * 1024,
        "peak_anon": anon.peak,
        "rss_before": rss_before,
        "anon_before": anon_before,
        "picks_head": picks[:5].tolist(),
    }


# --------------------------------------------------------------------------- driver


def run_one(data_dir: Path, n: int, name: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, "-m", "bench.selection_10m", "--worker", name, "--n", str(n)]
    cmd += ["--data-dir", str(data_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {
            "strategy": name,
            "n": n,
            "error": proc.stderr[-2000:],
            "returncode": proc.returncode,
        }
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_seconds"] = wall
    row["peak_rss_per_item"] = row["peak_rss"] / n
    row["peak_anon_per_item"] = row["peak_anon"] / n
    # What the query itself added: peak less the process before it (imports, index arrays).
    row["extra_rss_per_item"] = (row["peak_rss"] - row["rss_before"]) / n
    row["extra_anon_per_item"] = (row["peak_anon"] - row["anon_before"]) / n
    return row


def _flatness(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per strategy: bytes/item at the largest N over bytes/item at the smallest N."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["strategy"] for r in rows):
        ok = sorted(
            (r for r in rows if r["strategy"] == name and "error" not in r), key=lambda r: r["n"]
        )
        if len(ok) >= 2:
            lo, hi = ok[0], ok[-1]
            out[name] = {
                "n_small": lo["n"],
                "n_large": hi["n"],
                "rss_ratio": hi["peak_rss_per_item"] / lo["peak_rss_per_item"],
                "anon_ratio": hi["peak_anon_per_item"] / lo["peak_anon_per_item"],
                "extra_rss_ratio": hi["extra_rss_per_item"] / lo["extra_rss_per_item"],
                "extra_anon_ratio": hi["extra_anon_per_item"] / lo["extra_anon_per_item"],
            }
    return out


def markdown(result: dict[str, Any]) -> str:
    """The results as a markdown table (plus the flatness ratios)."""
    lines = [
        (
            "Synthetic pool: N × 64 float32 embeddings (100 Gaussian clusters) and N × 10 "
            "float32 probabilities, both in `.npy` files opened memory-mapped; 1,000 labeled, "
            "batch 100, one `query` per fresh process. Peak RSS (VmHWM) counts the mapped "
            "file pages the strategy touched; peak anon is the heap alone (RssAnon, sampled "
            "every 10 ms)."
        ),
        "",
        (
            f"Machine: {result['machine']}, {result['date']}; load average at start "
            f"{result['load_start']}, at end {result['load_end']}."
        ),
        "",
        (
            "| strategy | N | seconds | peak RSS MiB | bytes/item (RSS) | peak anon MiB "
            "| bytes/item (anon) | extra B/item (RSS) | extra B/item (anon) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        label = (
            r["strategy"]
            if r.get("resolved", r["strategy"]) == r["strategy"]
            else (f"{r['strategy']} ({r['resolved']})")
        )
        if "error" in r:
            lines.append(f"| {label} | {r['n']:,} | FAILED (rc {r['returncode']}) | | | | | | |")
            continue
        lines.append(
            f"| {label} | {r['n']:,} | {r['seconds']:.1f} | {r['peak_rss'] / MiB:,.0f} | "
            f"{r['peak_rss_per_item']:.0f} | {r['peak_anon'] / MiB:,.0f} | "
            f"{r['peak_anon_per_item']:.0f} | {r['extra_rss_per_item']:.0f} | "
            f"{r['extra_anon_per_item']:.0f} |"
        )
    if result["flatness"]:
        lines += [
            "",
            (
                "Bytes per item at the largest N over bytes per item at the smallest N (1 = "
                "memory linear in N, flat per item). Extra = peak less the process just before "
                "the query (interpreter, imports, index arrays)."
            ),
            "",
            "| strategy | RSS | anon | extra RSS | extra anon |",
            "|---|---|---|---|---|",
        ]
        for name, f in result["flatness"].items():
            lines.append(
                f"| {name} | {f['rss_ratio']:.2f} | {f['anon_ratio']:.2f} | "
                f"{f['extra_rss_ratio']:.2f} | {f['extra_anon_ratio']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument(
        "--strategies",
        default=";".join(STRATEGIES),
        help="';'-separated; parameters after '@', e.g. probcover@max_candidates=200000",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/exemplar_selection_10m"))
    parser.add_argument("--out", type=Path, default=RESULTS / "selection_10m.json")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--make-data-only", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.data_dir, args.n, args.worker)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s]
    names = [s for s in args.strategies.split(";") if s]
    for n in sizes:
        t0 = time.perf_counter()
        make_data(args.data_dir, n)
        print(f"data N={n:,}: {time.perf_counter() - t0:.1f} s", flush=True)
    if args.make_data_only:
        return 0
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    # One strategy at a time, each size in its own fresh process.
    for name in names:
        for n in sizes:
            row = run_one(args.data_dir, n, name)
            rows.append(row)
            if "error" in row:
                print(f"{name} N={n:,}: FAILED\n{row['error']}", flush=True)
            else:
                print(
                    f"{name} N={n:,}: {row['seconds']:.1f} s, peak RSS "
                    f"{row['peak_rss'] / MiB:,.0f} MiB ({row['peak_rss_per_item']:.0f} B/item), "
                    f"peak anon {row['peak_anon'] / MiB:,.0f} MiB "
                    f"({row['peak_anon_per_item']:.0f} B/item)",
                    flush=True,
                )
    result = {
        "bench": "selection_10m",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {MACHINE_GIB} GiB, Python "
        f"{platform.python_version()}, numpy {np.__version__}",
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "protocol": {
            "features": N_FEATURES,
            "clusters": N_CLUSTERS,
            "classes": N_CLASSES,
            "labeled": N_LABELED,
            "batch": BATCH,
            "seed": SEED,
            "synthetic": True,
        },
        "rows": rows,
        "flatness": _flatness(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = args.markdown or args.out.with_suffix(".md")
    md.write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
