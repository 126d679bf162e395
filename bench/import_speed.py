"""Import speed: rows per second and peak memory of ``exemplar import``.

    python -m bench.import_speed [--rows 100000] [--images 10000] [--batch-size 2000]
        [--out bench/results/import_speed.json]

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
  a duplicate, nothing is decoded or written.

Each case runs in a fresh subprocess on a fresh SQLite project. ``peak_rss_mib`` is that
process's peak resident memory (``ru_maxrss``), ``baseline_rss_mib`` its resident memory
after importing exemplar and before the import, so ``peak - baseline`` is what the import
itself needed; it should depend on the batch size, not on the number of rows.
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


# --------------------------------------------------------------------------- worker


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def worker(project_dir: Path, source: Path, batch_size: int, repeat: bool) -> dict[str, Any]:
    """Import ``source`` into a new project (twice with ``repeat``: the second is timed)."""
    from exemplar.project.importing import import_path
    from exemplar.project.project import Project

    project = (
        Project.open(project_dir)
        if (project_dir / "exemplar.toml").exists()
        else Project.init(project_dir, CLASSES)
    )
    if repeat:
        import_path(project, source, batch_size=batch_size)
    baseline = _rss_mib()
    start = time.perf_counter()
    report = import_path(project, source, batch_size=batch_size)
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
    name: str, source: Path, work: Path, batch_size: int, *, repeat: bool = False
) -> dict[str, Any]:
    project_dir = work / f"project_{name}"
    cmd = [
        sys.executable,
        "-m",
        "bench.import_speed",
        "--worker",
        str(project_dir),
        str(source),
        str(batch_size),
        "1" if repeat else "0",
    ]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=root)
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
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS / "import_speed.json")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        project_dir, source, batch_size, repeat = args.worker
        result = worker(Path(project_dir), Path(source), int(batch_size), repeat == "1")
        print(json.dumps(result))
        return 0

    cases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="exemplar-import-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        make_csv(work / "features.csv", args.rows, labeled=True)
        make_csv(work / "features_unlabeled.csv", args.rows, labeled=False)
        make_images(work / "images", args.images)
        print(f"synthetic data made in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        plan = [
            ("features_csv", work / "features.csv", False),
            ("features_csv_unlabeled", work / "features_unlabeled.csv", False),
            ("images", work / "images", False),
            ("images_reimport", work / "images", True),
        ]
        for name, source, repeat in plan:
            result = run_case(name, source, work, args.batch_size, repeat=repeat)
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
            "batch_size": args.batch_size,
            "database": "sqlite",
            "data": "synthetic",
        },
        "cases": cases,
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
