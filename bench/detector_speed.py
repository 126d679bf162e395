"""Training time and memory-mapped scoring throughput of the built-in CenterNet detector.

    python -m bench.detector_speed [--tiles 200] [--side 256] [--objects 20] [--epochs 0]
        [--threads 2] [--pool 10000] [--chunk-sizes 32,256] [--mc-tiles 200]
        [--stream-sizes 1000,10000] [--trained DIR] [--out bench/results/detector_speed.json]

Protocol (issue #11): synthetic one-channel tiles of ``--side`` pixels, each a dark noisy
background with ``--objects`` bright squares and disks (radius 4 to 16 pixels, seeded).
(1) One training round of ``make_model("centernet", image_side=side)`` (its default epochs
unless ``--epochs`` is given) on ``--tiles`` tiles with ``torch.set_num_threads(--threads)``:
wall and CPU seconds, the loss per epoch, and the recall at IoU 0.5 (boxes scored at least
0.3) on 20 held-out tiles against the same network untrained. (2) ``--pool`` tiles are written
to a float32 ``np.memmap`` on disk chunk by chunk, and the saved detector scores them in a
fresh process per chunk size (``predict(embeddings=True)``: boxes, scores, class
probabilities, expected counts, embeddings), reading ``chunk_size`` rows at a time. Two
peaks are reported. The growth of the resident set: the kernel's high-water mark
(``VmHWM``) is reset just before scoring (``/proc/self/clear_refs``) and read after it,
minus the resident set before; it counts the memmap's pages read so far, which are file
backed and dropped by the kernel when memory is short, so it grows with the pool read.
The growth of the anonymous resident set (``RssAnon``, sampled every 20 ms by a thread):
the memory the process itself allocates (chunks, activations, outputs; the outputs, a few
dozen boxes per tile, grow with the pool).
(3) The throughput of ``predict(samples=True)`` (MC dropout, the recipe's passes) and of
``predict(views=True)`` on ``--mc-tiles`` tiles of the same memmap. Every process sets
``--threads`` torch threads. The load average is recorded: other jobs share the CPUs.
(4) The loop's own scorer, ``exemplar.loop.scoring.score_pool`` with the ``box_entropy``
strategy, on the first ``--stream-sizes`` tiles of the memmap (mode ``stream``): it keeps
only each tile's expected count and the strategy's utility, so its anonymous memory growth
should depend on the chunk size, not on the number of tiles scored.
``--trained DIR`` skips (1) and scores with ``DIR/centernet.pt``, reporting the training
record ``DIR/train.json`` that an earlier run printed (its first output line).
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
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.stochastic_scoring import _status_kib

RESULTS = Path(__file__).parent / "results"
MiB = 1024**2
HELD_OUT = 20


def scene(rng: np.random.Generator, side: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One tile (float32, flat) with ``k`` bright squares or disks, and their boxes (k, 4)."""
    img = rng.normal(0.1, 0.03, (side, side)).astype(np.float32)
    boxes = np.empty((k, 4), np.float32)
    for j in range(k):
        r = int(rng.integers(4, 17))
        cx, cy = (int(v) for v in rng.integers(r, side - r, 2))
        window = img[cy - r : cy + r, cx - r : cx + r]
        if rng.random() < 0.5:
            window[:] = 0.9
        else:
            yy, xx = np.mgrid[-r:r, -r:r] + 0.5
            window[yy**2 + xx**2 <= r * r] = 0.9
        boxes[j] = (cx - r, cy - r, cx + r, cy + r)
    return np.clip(img, 0.0, 1.0).ravel(), boxes


def _threads(n: int) -> int:
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


def recall(truth: list[np.ndarray], found: list[Any]) -> float:
    """Share of true boxes matched at IoU 0.5 by a box scored at least 0.3."""
    from exemplar.objects import box_iou

    hits = total = 0
    for t, f in zip(truth, found, strict=True):
        iou = box_iou(t, f.above(0.3).boxes)
        hits += int((iou.max(axis=1) >= 0.5).sum()) if iou.shape[1] else 0
        total += t.shape[0]
    return round(hits / max(total, 1), 4)


def train(args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    """One training round on ``--tiles`` tiles; recall on held-out tiles; save the model."""
    from exemplar.models import make_model
    from exemplar.objects import Objects

    rng = np.random.default_rng(0)
    pairs = [scene(rng, args.side, args.objects) for _ in range(args.tiles + HELD_OUT)]
    X = np.stack([p[0] for p in pairs])
    y = [Objects(p[1], np.zeros(len(p[1]), np.int64)) for p in pairs]
    params: dict[str, Any] = {"image_side": args.side}
    if args.epochs:
        params["epochs"] = args.epochs
    model: Any = make_model("centernet", 0, **params)
    untrained: Any = make_model("centernet", 0, **{**params, "epochs": 1, "lr": 1e-12})
    untrained.fit(X[:8], y[:8])
    load = os.getloadavg()
    c0, t0 = time.process_time(), time.perf_counter()
    model.fit(X[: args.tiles], y[: args.tiles])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    model.save(checkpoint)
    truth = [p[1] for p in pairs[args.tiles :]]
    held = X[args.tiles :]
    return {
        "tiles": args.tiles,
        "side": args.side,
        "objects_per_tile": args.objects,
        "epochs": model.config.epochs,
        "batch_size": model.config.batch_size,
        "threads": _threads(args.threads),
        "fit_seconds": round(wall, 1),
        "fit_cpu_seconds": round(cpu, 1),
        "load_average_before_fit": load,
        "load_average_after_fit": os.getloadavg(),
        "loss_per_epoch": [round(v, 4) for v in model.history_[0]],
        "held_out_tiles": HELD_OUT,
        "recall_at_iou_0.5": recall(truth, model.predict_objects(held)),
        "untrained_recall_at_iou_0.5": recall(truth, untrained.predict_objects(held)),
    }


def write_pool(path: Path, n: int, side: int, k: int, chunk: int = 256) -> float:
    """Write ``n`` tiles to a float32 memmap at ``path``, ``chunk`` tiles at a time."""
    t0 = time.perf_counter()
    pool = np.memmap(path, np.float32, "w+", shape=(n, side * side))
    rng = np.random.default_rng(1)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        pool[start:stop] = np.stack([scene(rng, side, k)[0] for _ in range(stop - start)])
    pool.flush()
    del pool
    return time.perf_counter() - t0


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """Child: score the memmapped pool with the saved detector (mode: plain, samples, views)."""
    from exemplar.models.detector import DetectorAdapter

    threads = _threads(args.threads)
    model = DetectorAdapter.load(args.checkpoint, chunk_size=args.chunk_size)
    n = {"plain": args.pool, "stream": args.stream_tiles}.get(args.mode, args.mc_tiles)
    pool = np.memmap(args.pool_path, np.float32, "r", shape=(args.pool, args.side**2))[:n]
    load = os.getloadavg()
    before = _status_kib("VmRSS")
    anon_before = _status_kib("RssAnon")
    anon_peak = [anon_before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            anon_peak[0] = max(anon_peak[0], _status_kib("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    c0, t0 = time.process_time(), time.perf_counter()
    objects = None
    if args.mode == "stream":  # the loop's scorer: keeps counts and the strategy's utility
        from exemplar.loop.scoring import score_pool
        from exemplar.strategies import get_strategy

        scored = score_pool(
            model, pool, get_strategy("box_entropy"), chunk_size=args.chunk_size, objects=True
        )
        assert scored.predictions.counts is not None and scored.reduced is not None
    elif args.mode == "plain":
        pred = model.predict(pool, embeddings=True)
        objects = pred.require_objects()
    else:
        pred = model.predict(pool, samples=args.mode == "samples", views=args.mode == "views")
        objects = pred.require_objects()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kib("VmHWM")
    done.set()
    sampler.join()
    anon_peak[0] = max(anon_peak[0], _status_kib("RssAnon"))
    growth = (peak - before) / 1024
    return {
        "mode": args.mode,
        "tiles": n,
        "chunk_size": args.chunk_size,
        "rows_per_chunk": model._rows_per_chunk(),
        "passes": model.config.mc_passes if args.mode == "samples" else 0,
        "threads": threads,
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "tiles_per_second": round(n / wall, 1),
        "peak_growth_mib": round(growth, 1),
        "peak_anon_growth_mib": round((anon_peak[0] - anon_before) / 1024, 1),
        "pool_mib": round(n * args.side**2 * 4 / MiB, 1),
        "mean_boxes_per_tile": None
        if objects is None
        else round(float(np.mean([len(o) for o in objects.images])), 1),
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
    }


def _child(
    args: argparse.Namespace, mode: str, chunk_size: int, pool_path: Path, stream_tiles: int = 0
) -> Any:
    cmd = [
        sys.executable,
        "-m",
        "bench.detector_speed",
        "--one",
        "--mode",
        mode,
        "--checkpoint",
        str(args.checkpoint),
        "--pool-path",
        str(pool_path),
        "--pool",
        str(args.pool),
        "--side",
        str(args.side),
        "--threads",
        str(args.threads),
        "--chunk-size",
        str(chunk_size),
        "--mc-tiles",
        str(args.mc_tiles),
        "--stream-tiles",
        str(stream_tiles),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(model: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The training round and the scoring runs, in markdown."""
    lines = [
        "| training round | tiles | epochs | threads | wall s | CPU s | recall@0.5 | untrained |",
        "|---|---|---|---|---|---|---|---|",
        (
            f"| centernet {model['side']}² | {model['tiles']} | {model['epochs']} | "
            f"{model['threads']} | {model['fit_seconds']} | {model['fit_cpu_seconds']} | "
            f"{model['recall_at_iou_0.5']} | {model['untrained_recall_at_iou_0.5']} |"
        ),
        "",
        (
            "| scoring | tiles | chunk rows | passes | wall s | CPU s | tiles/s "
            "| peak RSS growth MiB | peak anon growth MiB | pool MiB | load before |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['mode']} | {r['tiles']:,} | {r['rows_per_chunk']} | {r['passes']} | "
        f"{r['seconds']} | {r['cpu_seconds']} | {r['tiles_per_second']} | "
        f"{r['peak_growth_mib']} | {r['peak_anon_growth_mib']} | {r['pool_mib']:,} | "
        f"{' / '.join(f'{v:.1f}' for v in r['load_average_before'])} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=0, help="0: the recipe's default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--chunk-sizes", default="32,256")
    parser.add_argument("--mc-tiles", type=int, default=200)
    parser.add_argument(
        "--stream-sizes",
        default="1000,10000",
        help="pool sizes scored through loop.scoring.score_pool (the loop's streaming scorer)",
    )
    parser.add_argument("--stream-tiles", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--trained", type=Path, help="reuse DIR/centernet.pt and DIR/train.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "detector_speed.json")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child
    parser.add_argument("--mode", default="plain", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pool-path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=256, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return

    load_start = os.getloadavg()
    _threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        args.checkpoint = Path(tmp) / "centernet.pt"
        if args.trained is not None:
            args.checkpoint = args.trained / "centernet.pt"
            model_info = json.loads((args.trained / "train.json").read_text())
            model_info["reused_from"] = str(args.trained)
        else:
            model_info = train(args, args.checkpoint)
        print(json.dumps(model_info), flush=True)
        pool_path = Path(tmp) / "pool.f32"
        model_info["pool_write_seconds"] = round(
            write_pool(pool_path, args.pool, args.side, args.objects), 1
        )
        rows: list[dict[str, Any]] = []
        chunks = [int(s) for s in args.chunk_sizes.split(",") if s]
        streams = [min(int(s), args.pool) for s in args.stream_sizes.split(",") if s]
        for mode, chunk, tiles in (
            [("plain", c, 0) for c in chunks]
            + [("samples", chunks[-1], 0), ("views", chunks[-1], 0)]
            + [("stream", c, t) for c in chunks for t in streams]
        ):
            row = _child(args, mode, chunk, pool_path, tiles)
            print(json.dumps(row), flush=True)
            rows.append(row)
    import torch

    result = {
        "benchmark": "detector_speed",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.detector_speed " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "protocol": __doc__.split("\n\n", 2)[2].strip() if __doc__ else "",
        "model": model_info,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + markdown(model_info, rows))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
