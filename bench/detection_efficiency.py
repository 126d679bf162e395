"""Label efficiency for detection on real nuclei: boxes the default strategy needs vs random.

    nice python -m bench.detection_efficiency [--seeds 5] [--strategies default,random]
        [--image-side 128] [--epochs 30] [--min-steps 0] [--initial 10] [--batch-size 10]
        [--cycles 5] [--jobs 1] [--device cpu]

Data: the mnfinder nuclei and micronuclei (real DNA-stained fluorescence, two classes),
2 x 2 tiles resized to ``--image-side`` (:func:`exemplar.data.nuclei.nuclei_tiles`): the 132
tiles of the training and validation images are the pool, the 64 tiles of the 16 test
images the fixed test split (no source image on both sides).

Protocol: :func:`exemplar.simulate.objects.run_object_simulation` (paired seeds: the same
random initial tiles for every strategy; the built-in CenterNet retrained from scratch each
round with the same settings for every strategy; the oracle reveals the ground-truth boxes
of picked tiles only; COCO mAP@0.5 and mAP@[.5:.95] on the test tiles).

Goal (issue #11): the default object strategy (``DEFAULT_OBJECT_STRATEGY``) reaches random's
final mAP@0.5 with at most 60% of random's boxes. Per seed, the boxes the strategy had
labeled when its mAP@0.5 first reached random's final mAP@0.5 of the same seed
(interpolated between rounds) divided by random's final boxes; mean and Student t 95% CI
over seeds. Whatever it reaches is written: bench/results/detection_efficiency.json, a
markdown table in bench/results/detection_efficiency.md, and the simulator's results.csv,
summary.json and report.html in bench/results/detection_efficiency/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from exemplar.loop.config import DEFAULT_OBJECT_STRATEGY
from exemplar.simulate.objects import (
    ObjectSimulationConfig,
    ObjectSimulationResult,
    load_object_dataset,
    run_object_simulation,
    summarize_objects,
    write_object_outputs,
)

RESULTS = Path(__file__).parent / "results"
#: Largest share of random's boxes the default may need (issue #11).
GOAL_RATIO = 0.6


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its results; returns the JSON written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", default="default,random")
    parser.add_argument("--image-side", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--min-steps", type=int, default=0)
    parser.add_argument("--detector-batch-size", type=int, default=16)
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default="detection_efficiency")
    parser.add_argument(
        "--resummarize",
        action="store_true",
        help="recompute the statistics of bench/results/NAME.json from its rows (no training)",
    )
    args = parser.parse_args(argv)
    if args.resummarize:
        return resummarize(args.name)

    names = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    t0 = time.perf_counter()
    pool, test = load_object_dataset("nuclei", image_side=args.image_side)
    load_seconds = time.perf_counter() - t0
    config = ObjectSimulationConfig(
        dataset="nuclei",
        model="centernet",
        model_params={"batch_size": args.detector_batch_size},
        device=args.device,
        strategies=names,
        seeds=args.seeds,
        initial=args.initial,
        batch_size=args.batch_size,
        cycles=args.cycles,
        image_side=args.image_side,
        epochs=args.epochs,
        min_steps=args.min_steps,
        jobs=args.jobs,
    )
    total = len(names) * args.seeds * (args.cycles + 1)
    done = 0

    def progress(k: int) -> None:
        nonlocal done
        done += k
        elapsed = time.perf_counter() - t0
        print(f"  {done}/{total} rounds, {elapsed:.0f} s", file=sys.stderr, flush=True)

    t1 = time.perf_counter()
    result = run_object_simulation(config, pool, test, on_progress=progress)
    run_seconds = time.perf_counter() - t1
    meta = {
        "command": "nice python -m bench.detection_efficiency " + " ".join(argv or sys.argv[1:]),
        "seconds": {"load": load_seconds, "run": run_seconds},
        "detector_sources": _sources(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
        },
    }
    return _write(args.name, result, meta)


def _write(name: str, result: ObjectSimulationResult, meta: dict[str, Any]) -> dict[str, Any]:
    """Summarize ``result`` and write the JSON, the markdown table and the simulator outputs."""
    summary = summarize_objects(result)
    write_object_outputs(result, summary, RESULTS / name)
    names = result.config.strategies
    default = next((n for n in names if n == "default"), None) or next(
        (n for n in names if n == DEFAULT_OBJECT_STRATEGY), None
    )
    goal: dict[str, Any] = {"ratio_at_most": GOAL_RATIO, "strategy": default}
    if default is not None and "random" in names:
        reach = summary["strategies"][default]["boxes_to_random_final"]
        all_seeds = reach["seeds_reached"] == result.config.seeds
        goal |= {
            "ratio": reach["ratio"],
            "ci_low": reach["ci_low"],
            "ci_high": reach["ci_high"],
            "seeds_reached": reach["seeds_reached"],
            "met_on_mean": all_seeds and reach["ratio"] <= GOAL_RATIO,
            "met_with_ci": all_seeds
            and reach["ci_high"] is not None
            and reach["ci_high"] <= GOAL_RATIO,
        }
    report = {
        "benchmark": "detection_efficiency",
        "command": meta["command"],
        "default_object_strategy": DEFAULT_OBJECT_STRATEGY,
        "goal": goal,
        "lines": summary["lines"],
        "verdict": summary["verdict"],
        "dataset": summary["dataset"],
        "config": summary["config"],
        "strategies": summary["strategies"],
        "curves": summary["curves"],
        "rows": result.rows,
        **{k: v for k, v in meta.items() if k != "command"},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (RESULTS / f"{name}.md").write_text(table)
    print(table)
    return report


def resummarize(name: str) -> dict[str, Any]:
    """Recompute the statistics of ``bench/results/<name>.json`` from its rows (no training)."""
    old = json.loads((RESULTS / f"{name}.json").read_text())
    fields = set(ObjectSimulationConfig.__dataclass_fields__)
    settings = {k: v for k, v in old["config"].items() if k in fields}
    settings["strategies"] = tuple(settings["strategies"])
    config = ObjectSimulationConfig(**settings)
    data = old["dataset"]
    result = ObjectSimulationResult(
        config=config,
        rows=old["rows"],
        n_pool=data["n_pool"],
        n_test=data["n_test"],
        pool_boxes=data["pool_boxes"],
        test_boxes=data["test_boxes"],
        classes=data["classes"],
        synthetic=data["synthetic"],
        resolved={k: v["resolves_to"] for k, v in old["strategies"].items()},
    )
    keep = ("command", "seconds", "detector_sources", "machine")
    meta = {k: old[k] for k in keep if k in old}
    meta["resummarized"] = True
    return _write(name, result, meta)


def markdown(report: dict[str, Any]) -> str:
    """The results as a markdown table, one row per strategy."""
    cfg, data = report["config"], report["dataset"]
    head = (
        f"**nuclei** (mnfinder, real; pool {data['n_pool']} tiles / {data['pool_boxes']} "
        f"objects, test {data['n_test']} tiles / {data['test_boxes']} objects; classes "
        f"{', '.join(data['classes'])}), {cfg['model']} at {cfg['image_side']} px, "
        f"{cfg['epochs']} epochs (min {cfg['min_steps']} steps), {cfg['seeds']} paired seeds, "
        f"{cfg['initial']} + {cfg['cycles']}×{cfg['batch_size']} tiles; "
        f"run {report['seconds']['run'] / 60:.1f} min\n\n"
    )
    lines = [
        (
            "| strategy | final mAP@0.5 (95% CI) | final mAP@[.5:.95] | final boxes | "
            "boxes to random's final mAP@0.5 (share of random's, 95% CI) | fit s | query s |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in report["strategies"].items():
        f50, fm = s["final_map50"], s["final_map"]
        reach = s.get("boxes_to_random_final")
        if reach is None or reach["ratio"] is None:
            reach_txt = "—" if reach is None else f"not reached (0/{cfg['seeds']})"
        else:
            ci = (
                ""
                if reach["ci_low"] is None
                else f" [{reach['ci_low']:.0%}, {reach['ci_high']:.0%}]"
            )
            reach_txt = f"{reach['ratio']:.0%}{ci} ({reach['seeds_reached']}/{cfg['seeds']})"
        alias = f" ({s['resolves_to']})" if s["resolves_to"] != name else ""
        lines.append(
            f"| {name}{alias} | {_ci(f50)} | {_ci(fm)} | {s['final_boxes']['mean']:.0f} | "
            f"{reach_txt} | {s['fit_seconds_mean']:.1f} | {s['query_seconds_mean']:.1f} |"
        )
    goal = report["goal"]
    tail = ""
    if "ratio" in goal:
        tail = (
            f"\nGoal: {goal['strategy']} reaches random's final mAP@0.5 with at most "
            f"{goal['ratio_at_most']:.0%} of random's boxes: "
            f"{'met' if goal['met_with_ci'] else 'met on the mean only' if goal['met_on_mean'] else 'not met'}.\n"
        )
    return head + "\n".join(lines) + "\n" + tail + f"\n{report['verdict']}\n"


def _sources() -> dict[str, str]:
    """SHA-256 of the detector's source files, to tell which detector gave the figures."""
    from exemplar.models import detector

    folder = Path(detector.__file__).parent
    return {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("detector.py", "detector_net.py")
        if (folder / name).exists()
    }


def _ci(interval: dict[str, Any]) -> str:
    if interval["ci_low"] is None:
        return f"{interval['mean']:.3f}"
    return f"{interval['mean']:.3f} [{interval['ci_low']:.3f}, {interval['ci_high']:.3f}]"


if __name__ == "__main__":
    main()
