"""MC-dropout scoring throughput of the built-in CNN, with memory flat in the pool size.

    python -m bench.mc_dropout_throughput [--sizes 10000,100000,1000000] [--samples 20]
        [--threads 1] [--chunk-size 8192] [--labeled 500] [--epochs 15] [--repeats 5]
        [--out bench/results/mc_dropout_throughput.json]

Protocol (issue #5): the built-in CNN (``exemplar.models.make_model("cnn")``: conv 16,
pool, conv 32, pool, dropout 0.25, fc 128, dropout 0.5, fc 10) is trained on ``--labeled``
real MNIST images from ``exemplar.data.load_dataset("mnist5k")``, saved, and loaded again
in a fresh process per measurement. Each pool size is scored in its own process through
:func:`exemplar.loop.score_pool` with BALD and ``t`` MC-dropout passes on the CPU. The pools
are synthetic MNIST-sized items (784 float32 pixels): the 5,000 real images tiled, each copy
with fresh Gaussian pixel noise, made chunk by chunk on demand
(``bench.stochastic_scoring.SyntheticPool``), so the pool itself takes no memory, as with the
project's memory-mapped features. Peak memory is the growth of the resident set during
scoring: the kernel's high-water mark (``VmHWM``) is reset just before scoring
(``/proc/self/clear_refs``) and read after it, minus the resident set before. The whole
samples array ``(t, n, c)`` in float32 would take ``t × 10 × 4`` bytes per item; streaming
keeps ``proba`` (10 float32) and the BALD utility (float64), 48 bytes per item.

Two side-by-side measurements come first, in one process each, their variants interleaved
round by round (``--repeats`` rounds, medians reported), so their ratios hold up on a shared
machine: (1) drawing and applying one dropout mask ``(256, 1568)`` at p = 0.25 (the CNN's
first dropout for a batch of 256) with PyTorch's ``F.dropout``, with ``bernoulli_`` into a
preallocated buffer, with ``torch.rand(...) >= p`` into preallocated buffers, with random
``uint8`` from ``torch.randint`` and with exemplar's masks from PCG64 bits
(``exemplar.models.torch_adapter._keep_mask``); (2) ``predict(samples=True)`` on 2,048 real
images: the previous code path (the dropout modules in train mode, one pass at a time) against
the current adapter, each at 1,024 and 256 rows per batch. ``--threads`` sets
``torch.set_num_threads`` in every child (0 keeps PyTorch's default).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.stochastic_scoring import SyntheticPool, _status_kib

RESULTS = Path(__file__).parent / "results"
MiB = 1024**2
COMPARE_ROWS = 2_048


def _threads(n: int) -> int:
    import torch

    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def train(checkpoint: Path, labeled: int, epochs: int, samples: int) -> dict[str, Any]:
    """Fit the built-in CNN on ``labeled`` real MNIST rows and save it to ``checkpoint``."""
    from exemplar.data import load_dataset
    from exemplar.models import make_model

    data = load_dataset("mnist5k")
    X, y = np.asarray(data.X, dtype=np.float32), np.asarray(data.y)
    rows = np.random.default_rng(0).permutation(X.shape[0])
    train_rows, test_rows = rows[:labeled], rows[labeled:]
    model: Any = make_model("cnn", 0, epochs=epochs, n_samples=samples)
    t0 = time.perf_counter()
    model.fit(X[train_rows], y[train_rows])
    seconds = time.perf_counter() - t0
    model.save(checkpoint)
    accuracy = float((model.predict_labels(X[test_rows]) == y[test_rows]).mean())
    return {
        "labeled": labeled,
        "epochs": epochs,
        "fit_seconds": round(seconds, 1),
        "held_out_accuracy": round(accuracy, 4),
        "held_out_rows": int(test_rows.size),
    }


def _load(checkpoint: Path) -> Any:
    from exemplar.models.torch_adapter import TorchAdapter

    return TorchAdapter.load(checkpoint)


def _interleave(
    variants: dict[str, Callable[[], object]], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Run every variant once per round, ``repeats`` rounds; wall and CPU seconds per run."""
    times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in variants}
    for fn in variants.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name]["wall"].append(time.perf_counter() - t0)
            times[name]["cpu"].append(time.process_time() - c0)
    return times


def reference_predict(model: Any, X: np.ndarray, batch: int) -> np.ndarray:
    """The previous MC path: dropout modules in train mode, one pass at a time.

    As ``TorchAdapter.predict(samples=True)`` did before the PCG64 masks: the trunk once per
    batch, the eval probabilities, then ``t`` passes of the top with PyTorch's dropout.
    """
    import torch
    import torch.nn.functional as F

    from exemplar.models.torch_adapter import _DROPOUT

    net = model.nets_[0]
    dropouts = [m for m in net.modules() if isinstance(m, _DROPOUT)]
    t, n = model.n_samples, X.shape[0]
    proba = np.empty((n, model.classes_.size), dtype=np.float32)
    stack = np.empty((t, *proba.shape), dtype=np.float32)
    with torch.inference_mode(), torch.random.fork_rng():
        torch.manual_seed(0)
        for start in range(0, n, batch):
            rows = slice(start, start + batch)
            xb = (torch.from_numpy(X[rows]) - model.scale_mean_) / model.scale_std_
            h = net.forward_trunk(xb)
            proba[rows] = F.softmax(net.forward_top(h), dim=1).numpy()
            for m in dropouts:
                m.train(True)
            for i in range(t):
                stack[i, rows] = F.softmax(net.forward_top(h), dim=1).numpy()
            for m in dropouts:
                m.train(False)
    return stack


def run_compare(checkpoint: Path, threads: int, repeats: int) -> dict[str, Any]:
    """Masks and predict, old against new, interleaved in this process."""
    import torch
    import torch.nn.functional as F

    from exemplar.data import load_dataset
    from exemplar.models.torch_adapter import _keep_mask

    load_before = os.getloadavg()
    n_threads = _threads(threads)
    p, shape = 0.25, (256, 1568)
    scale = 1.0 / (1.0 - p)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    fbuf, bbuf = torch.empty(shape), torch.empty(shape, dtype=torch.bool)
    u8 = torch.empty(shape, dtype=torch.uint8)
    rng = np.random.Generator(np.random.PCG64(0))

    def bernoulli() -> torch.Tensor:
        return x * fbuf.bernoulli_(1 - p, generator=gen).mul_(scale)

    def rand_ge() -> torch.Tensor:
        torch.ge(torch.rand(shape, generator=gen, out=fbuf), p, out=bbuf)
        return torch.where(bbuf, x, 0.0).mul_(scale)

    def randint_u8() -> torch.Tensor:
        torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8, out=u8)
        return torch.where(u8 >= 64, x, 0.0).mul_(scale)

    def pcg(q: float) -> Callable[[], torch.Tensor]:
        def draw() -> torch.Tensor:
            keep = _keep_mask(rng, q, x.numel()).reshape(shape)
            return torch.where(keep, x, 0.0).mul_(1.0 / (1.0 - q))

        return draw

    def many(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(20):  # one batch's 20 passes
                fn()

        return run

    masks = {
        "F.dropout (train mode)": lambda: F.dropout(x, p, training=True),
        "bernoulli_ into a preallocated buffer": bernoulli,
        "torch.rand >= p into preallocated buffers": rand_ge,
        "torch.randint uint8 >= 64": randint_u8,
        "exemplar: PCG64 8-bit units (p = 0.25)": pcg(0.25),
        "exemplar: PCG64 32-bit units (p = 0.3)": pcg(0.3),
    }
    mask_times = _interleave({k: many(v) for k, v in masks.items()}, repeats)
    units = 20 * x.numel()
    base = float(np.median(mask_times["F.dropout (train mode)"]["wall"]))
    mask_rows = [
        {
            "method": name,
            "ns_per_unit": round(float(np.median(t["wall"])) / units * 1e9, 2),
            "cpu_ns_per_unit": round(float(np.median(t["cpu"])) / units * 1e9, 2),
            "speedup_vs_f_dropout": round(base / float(np.median(t["wall"])), 2),
        }
        for name, t in mask_times.items()
    ]

    model = _load(checkpoint)
    X = np.asarray(load_dataset("mnist5k").X[:COMPARE_ROWS], dtype=np.float32)

    def current(batch: int) -> Callable[[], object]:
        def run() -> object:
            model.predict_batch_size = batch
            return model.predict(X, samples=True)

        return run

    variants = {
        "previous (torch dropout in train mode), batch 1024": lambda: reference_predict(
            model, X, 1024
        ),
        "previous (torch dropout in train mode), batch 256": lambda: reference_predict(
            model, X, 256
        ),
        "current, batch 1024": current(1024),
        "current, batch 256 (default)": current(256),
    }
    predict_times = _interleave(variants, repeats)
    base = float(
        np.median(predict_times["previous (torch dropout in train mode), batch 1024"]["wall"])
    )
    predict_rows = [
        {
            "variant": name,
            "items_per_second": round(COMPARE_ROWS / float(np.median(t["wall"]))),
            "cpu_seconds_per_1000_items": round(
                float(np.median(t["cpu"])) / COMPARE_ROWS * 1000, 3
            ),
            "speedup_vs_previous_1024": round(base / float(np.median(t["wall"])), 2),
            "wall_seconds": [round(s, 3) for s in t["wall"]],
        }
        for name, t in predict_times.items()
    ]
    return {
        "threads": n_threads,
        "repeats": repeats,
        "samples": int(model.n_samples),
        "rows": COMPARE_ROWS,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "masks": mask_rows,
        "predict": predict_rows,
    }


def run_one(checkpoint: Path, n: int, chunk_size: int, threads: int) -> dict[str, Any]:
    """Score a synthetic pool of ``n`` with BALD; runs in its own process."""
    from exemplar.data import load_dataset
    from exemplar.loop import score_pool
    from exemplar.strategies import Bald

    load_before = os.getloadavg()
    n_threads = _threads(threads)
    model = _load(checkpoint)
    images = np.asarray(load_dataset("mnist5k").X, dtype=np.float32)
    pool = SyntheticPool(images, n)
    samples = int(model.n_samples)
    model.predict(images[:64], samples=True)  # warm-up: lazy torch initialisation

    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    c0, t0 = time.process_time(), time.perf_counter()
    scored = score_pool(model, pool, Bald(), chunk_size=chunk_size)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = _status_kib("VmHWM")
    assert scored.reduced is not None and scored.predictions.samples is None
    assert scored.reduced.utility.shape == (n,) and np.isfinite(scored.reduced.utility).all()
    growth = (peak - before) * 1024
    return {
        "n": n,
        "samples": samples,
        "chunk_size": chunk_size,
        "predict_batch_size": int(model.predict_batch_size),
        "threads": n_threads,
        "score_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "items_per_second": round(n / seconds),
        "rss_before_mib": round(before / 1024, 1),
        "peak_growth_mib": round(growth / MiB, 1),
        "peak_growth_bytes_per_item": round(growth / n, 1),
        "whole_samples_mib": round(samples * n * model.classes_.size * 4 / MiB, 1),
        "bald_mean": round(float(scored.reduced.utility.mean()), 4),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def _child(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.mc_dropout_throughput", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def compare_markdown(compare: dict[str, Any]) -> str:
    """The mask and predict comparisons of one thread count, in markdown."""
    lines = [
        (
            f"Dropout masks, (256, 1568) at p = 0.25, {compare['threads']} thread(s), "
            f"median of {compare['repeats']} interleaved rounds:"
        ),
        "",
        "| method | ns per unit | CPU ns per unit | × F.dropout |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['ns_per_unit']} | {r['cpu_ns_per_unit']} | "
        f"{r['speedup_vs_f_dropout']} |"
        for r in compare["masks"]
    ]
    lines += [
        "",
        (
            f"`predict(samples=True)`, {compare['samples']} passes over {compare['rows']:,} real "
            f"images, {compare['threads']} thread(s), median of {compare['repeats']} rounds:"
        ),
        "",
        "| variant | items/s | CPU s per 1,000 items | × previous (batch 1024) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['variant']} | {r['items_per_second']:,} | {r['cpu_seconds_per_1000_items']} | "
        f"{r['speedup_vs_previous_1024']} |"
        for r in compare["predict"]
    ]
    return "\n".join(lines)


def pool_markdown(rows: list[dict[str, Any]]) -> str:
    """The pool-size runs, in markdown."""
    header = (
        "| N | t | threads | scoring s | CPU s | items/s | peak growth MiB | bytes/item "
        "| extra bytes per extra item | whole samples would take MiB |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r['n']:,} | {r['samples']} | {r['threads']} | {r['score_seconds']} | "
        f"{r['cpu_seconds']} | {r['items_per_second']:,} | {r['peak_growth_mib']} | "
        f"{r['peak_growth_bytes_per_item']} | {r.get('marginal_bytes_per_item', '')} | "
        f"{r['whole_samples_mib']:,} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="0: PyTorch's default")
    parser.add_argument("--chunk-size", type=int, default=8192)
    parser.add_argument("--labeled", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare-threads", default="1,2", help="thread counts to compare")
    parser.add_argument("--out", type=Path, default=RESULTS / "mc_dropout_throughput.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: one pool size
    parser.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)  # child
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.checkpoint, args.one, args.chunk_size, args.threads)))
        return
    if args.compare:
        print(json.dumps(run_compare(args.checkpoint, args.threads, args.repeats)))
        return

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "cnn.pt"
        _threads(args.threads)
        model_info = train(checkpoint, args.labeled, args.epochs, args.samples)
        print(json.dumps(model_info), flush=True)
        compares = []
        for threads in (int(s) for s in args.compare_threads.split(",") if s):
            compare = _child(
                [
                    "--compare",
                    "--checkpoint",
                    str(checkpoint),
                    "--threads",
                    str(threads),
                    "--repeats",
                    str(args.repeats),
                ]
            )
            print(json.dumps(compare), flush=True)
            compares.append(compare)
        rows: list[dict[str, Any]] = []
        for n in (int(s) for s in args.sizes.split(",")):
            row = _child(
                [
                    "--one",
                    str(n),
                    "--checkpoint",
                    str(checkpoint),
                    "--threads",
                    str(args.threads),
                    "--chunk-size",
                    str(args.chunk_size),
                ]
            )
            if rows:  # memory added per extra item since the previous size
                prev = rows[-1]
                extra = (row["peak_growth_mib"] - prev["peak_growth_mib"]) * MiB
                row["marginal_bytes_per_item"] = round(extra / (row["n"] - prev["n"]), 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    import torch

    result = {
        "benchmark": "mc_dropout_throughput",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.mc_dropout_throughput " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "protocol": __doc__.split("\n\n", 2)[2].strip() if __doc__ else "",
        "model": model_info,
        "compare": compares[0] if compares else None,
        "compare_by_threads": compares,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for compare in compares:
        print("\n" + compare_markdown(compare))
    print("\n" + pool_markdown(rows))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
