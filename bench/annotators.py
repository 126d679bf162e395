"""Relabel or label new? ActiveLab against fixed policies with simulated annotators.

Runs the annotators scenario (``exemplar simulate --scenario annotators``, the same code)
on built-in datasets with three annotators of accuracy 0.9, 0.75 and 0.6, and writes
``bench/results/annotators.json`` and a markdown table (docs/costs.md quotes it).

    nice -n 10 .venv/bin/python -m bench.annotators            # about 10 minutes on 1 core
    nice -n 10 .venv/bin/python -m bench.annotators --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from exemplar.data import load_dataset
from exemplar.simulate.annotators import (
    AnnotatorSimulationConfig,
    run_annotator_simulation,
    summarize_annotators,
)

RESULTS = Path(__file__).parent / "results"
#: Dataset → cycles (wine's pool of 133 items allows 20 + 10 x 10 labels).
DATASETS = {"wine": 10, "breast_cancer": 20, "digits": 20}


def run(quick: bool = False, seeds: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {"accuracies": [0.9, 0.75, 0.6], "seeds": seeds, "datasets": {}}
    for name, cycles in DATASETS.items():
        config = AnnotatorSimulationConfig(
            dataset=name,
            accuracies=(0.9, 0.75, 0.6),
            seeds=2 if quick else seeds,
            cycles=2 if quick else cycles,
            batch_size=10,
            initial=20,
        )
        t0 = time.perf_counter()
        result = run_annotator_simulation(config, load_dataset(name))
        summary = summarize_annotators(result, config)
        out["datasets"][name] = {
            "cycles": config.cycles,
            "seconds": round(time.perf_counter() - t0, 1),
            "aulc": {a: s["aulc_mean"] for a, s in summary["strategies"].items()},
            "final": summary["annotators"]["final"],
            "activelab_vs": summary["annotators"]["activelab_vs"],
            "verdict": summary["annotators"]["verdict"],
        }
        print(name, out["datasets"][name]["verdict"], flush=True)
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        (
            "| dataset | arm | AULC | ActiveLab − arm [95% CI] | relabels "
            "| training labels right | final accuracy |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in results["datasets"].items():
        for arm, aulc in d["aulc"].items():
            f = d["final"][arm]
            vs = d["activelab_vs"].get(arm)
            diff = (
                "—"
                if vs is None
                else f"{vs['mean']:+.3f} [{vs['ci_low']:+.3f}, {vs['ci_high']:+.3f}]"
            )
            lines.append(
                f"| {name} | {arm} | {aulc:.3f} | {diff} | {f['relabels']:.0f} of "
                f"{f['labels_spent']:.0f} | {f['label_accuracy']:.1%} | {f['accuracy']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    results = run(args.quick, args.seeds)
    results["table"] = table(results)
    name = "annotators_quick.json" if args.quick else "annotators.json"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])


if __name__ == "__main__":
    main()
