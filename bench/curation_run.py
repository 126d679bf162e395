"""The simulated curation run (issue #12): training-set size and accuracy per cycle.

    nice .venv/bin/python bench/curation_run.py [--datasets digits mnist5k] [--seeds 5]
        [--cycles 30] [--batch-size 10] [--review-budget 5] [--no-prune] [--jobs 2]
        [--out curation_run]

For each dataset, :func:`exemplar.simulate.curation.run_curation_simulation` with 10% wrong
oracle answers and 30% of the pool copied as jittered near duplicates, three paired arms:
active learning with curation (label-error review, validated pruning), plain active
learning (the default strategy) and random sampling. Writes
``bench/results/<out>.json`` and ``.md``, and each dataset's report (``results.csv``,
``summary.json``, ``report.html``) under ``bench/results/<out>/<dataset>/``.
``--review-budget 0`` is the pruning-only ablation, ``--no-prune`` the review-only one.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from exemplar.data import load_dataset
from exemplar.simulate.curation import (
    ARMS,
    CurationSimulationConfig,
    run_curation_simulation,
    summarize_curation,
    write_curation_outputs,
)

RESULTS = Path(__file__).resolve().parent / "results"


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One dataset's curation run; writes its report and returns its summary."""
    data = load_dataset(name)
    config = CurationSimulationConfig(
        dataset=name,
        seeds=args.seeds,
        cycles=args.cycles,
        batch_size=args.batch_size,
        review_budget=args.review_budget,
        prune=not args.no_prune,
        noise=args.noise,
        duplicates=args.duplicates,
        jobs=args.jobs,
    )
    t0 = time.perf_counter()
    result = run_curation_simulation(config, data)
    seconds = time.perf_counter() - t0
    summary = summarize_curation(result)
    write_curation_outputs(result, summary, RESULTS / args.out / name)
    summary["seconds"] = seconds
    print(f"{name} ({seconds:.0f} s): {summary['verdict']}", flush=True)
    return summary


def _ci(d: dict[str, Any]) -> str:
    if d["ci_low"] is None:
        return f"{d['mean']:+.4f}"
    return f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"


def markdown(out: dict[str, Any]) -> str:
    """The figures as a markdown table per dataset."""
    cfg = out["setup"]
    lines = [
        "# Simulated curation run (issue #12): training-set size and accuracy per cycle",
        "",
        (
            f"`{out['command']}`; {cfg['noise']:.0%} wrong oracle answers, "
            f"{cfg['duplicates']:.0%} of the pool copied (jittered near duplicates), "
            f"{cfg['seeds']} paired seeds, {cfg['cycles']} cycles of {cfg['batch_size']} labels "
            f"after 20 random ones, logreg, strategy `default`; review budget "
            f"{cfg['review_budget']} per cycle, pruning {'on' if cfg['prune'] else 'off'}. "
            "Mean after the last cycle; differences paired, "
            f"95% t interval. Reports: `bench/results/{out['name']}/<dataset>/report.html`."
        ),
        "",
        (
            "| dataset | arm | labels spent | training set | test accuracy | wrong labels "
            "| duplicate pairs | reviews (fixed) | pruned dup / confident |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in out["results"].items():
        for arm in ARMS:
            f = s["arms"][arm]["final"]
            lines.append(
                f"| {name} | {arm} | {f['labels_spent']:.0f} | {f['n_train']:.1f} "
                f"| {f['accuracy']:.4f} | {f['wrong_share']:.1%} | {f['duplicate_pairs']:.1f} "
                f"| {f['reviews_total']:.0f} ({f['fixed_total']:.0f}) "
                f"| {f['removed_near_duplicate']:.0f} / {f['removed_confident']:.0f} |"
            )
    lines += [
        "",
        (
            "| dataset | size curated / active | accuracy curated − active | curated − random "
            "| active − random | mean accuracy over cycles, curated − active | seconds |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in out["results"].items():
        p = s["paired"]
        lines.append(
            f"| {name} | {s['size_ratio_curated_active']['mean']:.1%} "
            f"| {_ci(p['curated_minus_active']['accuracy'])} "
            f"| {_ci(p['curated_minus_random']['accuracy'])} "
            f"| {_ci(p['active_minus_random']['accuracy'])} "
            f"| {_ci(p['curated_minus_active']['mean_accuracy'])} | {s['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--review-budget", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.10)
    parser.add_argument("--duplicates", type=float, default=0.30)
    parser.add_argument("--no-prune", action="store_true", help="review-only ablation")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="curation_run", help="results name under bench/results")
    args = parser.parse_args()
    results = {name: run_dataset(name, args) for name in args.datasets}
    out = {
        "benchmark": "curation_run",
        "name": args.out,
        "command": "nice .venv/bin/python bench/curation_run.py " + " ".join(sys.argv[1:]),
        "setup": {
            "noise": args.noise,
            "duplicates": args.duplicates,
            "seeds": args.seeds,
            "cycles": args.cycles,
            "batch_size": args.batch_size,
            "review_budget": args.review_budget,
            "prune": not args.no_prune,
        },
        "machine": platform.platform(),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(out))
    print(markdown(out))


if __name__ == "__main__":
    main()
