"""Import speed: rows per second and peak memory of ``exemplar import``.

    python -m bench.import_speed [--rows 100000] [--images 10000]
        [--rows-per-transaction 2000] [--large-px 12000] [--out bench/results/import_speed.json]

Protocol (issue: import/export). All data is synthetic, made in a temporary folder:

* ``features_csv``: a CSV of ``--rows`` rows, 64 float columns (``%.9g``, exact in float32)
  and a ``label`` column naming one of 10 classes, imported with its labels (each label is
  one verified label row written through ``exemplar.store.labels.add_label``);
* ``features_csv_unlabeled``: the same kind of file without the label column, which
  separates the cost of reading and storing rows from the cost of writing labels;
* ``images``: ``--images`` 28x28 RGB PNG files (noise plus a class-dependent bright square)
  in 10 class subfolders, imported with their folder labels (resized to the default
  ``[data] image_size`` = 16, grayscale);
* ``images_reimport``: the same folder imported again: every file is hashed and found to be
  a duplicate, nothing is decoded or written;
* ``large_png``: one ``--large-px`` squared RGB PNG (12000 x 12000 = 144 megapixels by
  default; smooth gradients plus noise, written strip by strip so the benchmark itself never
  holds it), imported as it is: decoded strip by strip, never whole. The benchmark fails
  (exit 1) if the import's memory (peak minus baseline) reaches ``LARGE_PNG_LIMIT_MIB``;
* ``large_png_full_decode``: the same file with the reduced decode turned off, i.e. decoded
  whole as before, for comparison (skipped with ``--large-px 0``).

Each case runs in a fresh subprocess on a fresh SQLite project. ``peak_rss_mib`` is that
process's peak resident memory (``ru_maxrss``), ``baseline_rss_mib`` its resident memory
after importing exemplar and before the import, so ``peak - baseline`` is what the import
itself needed; it should depend on ``--rows-per-transaction``, not on the number of rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
N_FEATURES = 64
N_CLASSES = 10
CLASSES = [f"c{k}" for k in range(N_CLASSES)]
IMAGE_PX = 28
SEED = 0
MiB = 1024**2
#: The large PNG's import must need less memory than this (its pixels alone are 412 MiB).
LARGE_PNG_LIMIT_MIB = 150


# --------------------------------------------------------------------------- data


def make_csv(path: Path, n: int, *, labeled: bool, seed: int = SEED) -> None:
    """``n`` rows of 64 float32 features (+ a class label), written in chunks."""
    rng = np.random.default_rng(seed)
    header = [f"f{j}" for j in range(N_FEATURES)] + (["label"] if labeled else [])
    with path.open("w", encoding="utf-8") as fh:
        fh.write(",".join(header) + "\n")
        for start in range(0, n, 10_000):
            m = min(10_000, n - start)
            X = rng.standard_normal((m, N_FEATURES), dtype=np.float32)
            y = rng.integers(0, N_CLASSES, m)
            lines = []
            for row, label in zip(X.tolist(), y.tolist(), strict=True):
                cells = [f"{v:.9g}" for v in row]
                if labeled:
                    cells.append(CLASSES[label])
                lines.append(",".join(cells))
            fh.write("\n".join(lines) + "\n")


def make_images(root: Path, n: int, seed: int = SEED) -> None:
    """``n`` 28x28 RGB PNGs: noise plus a bright square whose place depends on the class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in CLASSES:
        (root / k).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = i % N_CLASSES
        pixels = rng.integers(0, 96, (IMAGE_PX, IMAGE_PX, 3), dtype=np.uint8)
        r, c = divmod(label, 4)
        pixels[2 + 6 * r : 8 + 6 * r, 2 + 6 * c : 8 + 6 * c] = 255
        Image.fromarray(pixels, "RGB").save(root / CLASSES[label] / f"{i:06d}.png")


def make_large_png(path: Path, side: int, seed: int = SEED) -> None:
    """A ``side`` x ``side`` RGB PNG written strip by strip (filter 0, zlib level 1)."""
    import struct
    import zlib

    rng = np.random.default_rng(seed)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    deflate = zlib.compressobj(1)
    x = np.arange(side, dtype=np.float32)
    noise = rng.integers(0, 8, (256, side, 3)).astype(np.float32)  # reused: cheap to make
    with path.open("wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
        for y0 in range(0, side, 256):
            y = np.arange(y0, min(y0 + 256, side), dtype=np.float32)[:, None]
            r = 127 + 120 * np.sin(x / 311.0) * np.cos(y / 173.0)
            g = 127 + 120 * np.cos((x + y) / 257.0)
            b = (x[None, :] + y) % 256
            rgb = np.stack(np.broadcast_arrays(r, g, b), axis=-1)
            rgb = rgb + noise[: len(y)]
            rows = np.clip(rgb, 0, 255).astype(np.uint8).reshape(len(y), side * 3)
            raw = np.concatenate([np.zeros((len(y), 1), np.uint8), rows], axis=1).tobytes()
            fh.write(chunk(b"IDAT", deflate.compress(raw)))
        fh.write(chunk(b"IDAT", deflate.flush()))
        fh.write(chunk(b"IEND", b""))


# --------------------------------------------------------------------------- worker


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def worker(
    project_dir: Path, source: Path, rows_per_transaction: int, repeat: bool
) -> dict[str, Any]:
    """Import ``source`` into a new project (twice with ``repeat``: the second is timed)."""
    from exemplar.project.importing import import_path
    from exemplar.project.project import Project

    if os.environ.get("EXEMPLAR_BENCH_FULL_DECODE"):
        from exemplar.sources import features

        features.REDUCE_ABOVE_PIXELS = 1 << 62  # decode every image whole, as before

    project = (
        Project.open(project_dir)
        if (project_dir / "exemplar.toml").exists()
        else Project.init(project_dir, CLASSES)
    )
    if repeat:
        import_path(project, source, rows_per_transaction=rows_per_transaction)
    baseline = _rss_mib()
    start = time.perf_counter()
    report = import_path(project, source, rows_per_transaction=rows_per_transaction)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    project.close()
    inputs = report.added + report.duplicates + len(report.skipped)
    return {
        "inputs": inputs,
        "added": report.added,
        "duplicates": report.duplicates,
        "skipped": len(report.skipped),
        "labeled": report.labeled,
        "seconds": round(seconds, 3),
        "inputs_per_s": round(inputs / seconds, 1),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
    }


def run_case(
    name: str,
    source: Path,
    work: Path,
    rows_per_transaction: int,
    *,
    repeat: bool = False,
    full_decode: bool = False,
) -> dict[str, Any]:
    project_dir = work / f"project_{name}"
    cmd = [
        sys.executable,
        "-m",
        "bench.import_speed",
        "--worker",
        str(project_dir),
        str(source),
        str(rows_per_transaction),
        "1" if repeat else "0",
    ]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "EXEMPLAR_BENCH_FULL_DECODE": "1" if full_decode else ""}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=root, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"case {name} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["case"] = name
    return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument(
        "--rows-per-transaction", type=int, default=2000, help="items per transaction"
    )
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)  # former name
    parser.add_argument(
        "--large-px", type=int, default=12_000, help="side of the large PNG (0: skip it)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "import_speed.json")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size is not None:
        args.rows_per_transaction = args.batch_size
    if args.worker:
        project_dir, source, rows, repeat = args.worker
        result = worker(Path(project_dir), Path(source), int(rows), repeat == "1")
        print(json.dumps(result))
        return 0

    cases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="exemplar-import-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        make_csv(work / "features.csv", args.rows, labeled=True)
        make_csv(work / "features_unlabeled.csv", args.rows, labeled=False)
        make_images(work / "images", args.images)
        plan = [
            ("features_csv", work / "features.csv", False, False),
            ("features_csv_unlabeled", work / "features_unlabeled.csv", False, False),
            ("images", work / "images", False, False),
            ("images_reimport", work / "images", True, False),
        ]
        if args.large_px:
            (work / "large").mkdir()
            make_large_png(work / "large" / "large.png", args.large_px)
            plan.append(("large_png", work / "large", False, False))
            plan.append(("large_png_full_decode", work / "large", False, True))
        print(f"synthetic data made in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        for name, source, repeat, full in plan:
            result = run_case(
                name, source, work, args.rows_per_transaction, repeat=repeat, full_decode=full
            )
            cases.append(result)
            print(
                f"{name}: {result['inputs']} inputs in {result['seconds']} s "
                f"({result['inputs_per_s']:.0f}/s), peak RSS {result['peak_rss_mib']} MiB",
                file=sys.stderr,
            )
    payload = {
        "benchmark": "import_speed",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "params": {
            "rows": args.rows,
            "images": args.images,
            "image_px": IMAGE_PX,
            "features": N_FEATURES,
            "rows_per_transaction": args.rows_per_transaction,
            "large_png_px": args.large_px,
            "large_png_limit_mib": LARGE_PNG_LIMIT_MIB,
            "database": "sqlite",
            "data": "synthetic",
        },
        "cases": cases,
        "checks": checks(cases),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print("| case | inputs | seconds | inputs/s | peak RSS (MiB) | baseline RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in cases:
        print(
            f"| {c['case']} | {c['inputs']} | {c['seconds']} | {c['inputs_per_s']:.0f} "
            f"| {c['peak_rss_mib']} | {c['baseline_rss_mib']} |"
        )
    failed = [name for name, ok in payload["checks"].items() if not ok]
    for name in failed:
        print(f"check failed: {name}", file=sys.stderr)
    return 1 if failed else 0


def checks(cases: list[dict[str, Any]]) -> dict[str, bool]:
    """The large PNG is imported (one item) without decoding it whole."""
    out: dict[str, bool] = {}
    for c in cases:
        if c["case"] == "large_png":
            need = c["peak_rss_mib"] - c["baseline_rss_mib"]
            out["large_png_imported"] = c["added"] == 1
            out[f"large_png_import_memory_below_{LARGE_PNG_LIMIT_MIB}_mib"] = (
                need < LARGE_PNG_LIMIT_MIB
            )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
