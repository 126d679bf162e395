"""ALBL against today's default: paired simulations on every built-in classification dataset.

Decides whether ``albl`` (Hsu & Lin 2015) replaces ``uncertain_diverse`` as the default:
it must never be significantly worse (paired 95% CI of the AULC difference not wholly
below 0) and be significantly better on at least one dataset.

    python -m bench.albl_compare --datasets wine [--seeds 5] [--jobs 1]

Protocol: the label-efficiency protocol of docs/benchmarks.md (20 random initial labels,
batch 10, 30 rounds; wine 8 rounds), each dataset's usual recipe (logreg; minilm-logreg
for the TREC texts), paired seeds, a fixed stratified 25% test split. The baseline is named
``uncertain_diverse`` (not ``default``), so the figures do not change if the default does.
Each dataset writes ``<out stem>/<dataset>/`` beside ``--out`` (results.csv,
summary.json, report.html: ``bench/results/albl_compare/digits/`` by default);
``--out`` (``bench/results/albl_compare.json``) and its ``.md`` collect every dataset
run so far. ``--batch-size 2 --cycles 150 --out bench/results/albl_batch2.json`` gives
the bandit five times as many rounds for the same labels.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from exemplar.data import load_dataset
from exemplar.metrics.curves import paired_difference
from exemplar.simulate import SimulationConfig, run_simulation, summarize
from exemplar.simulate.report import write_outputs
from exemplar.strategies import ALBL, STRATEGIES

RESULTS = Path(__file__).parent / "results"
ARMS = ("albl", "uncertain_diverse", "random")
TEXT = {"trec", "trec_fine"}


def use_albl_params(params: dict[str, Any]) -> None:
    """Ablation: make ``albl`` in this process default to ``params`` (same name, so the
    runner, the rows and the analysis are unchanged)."""

    class Variant(ALBL):
        __doc__ = ALBL.__doc__

        def __init__(self, **kw: Any) -> None:
            super().__init__(**{**params, **kw})

    STRATEGIES["albl"] = Variant


def run_dataset(
    name: str, seeds: int, jobs: int, cycles: int, root: Path, batch_size: int = 10
) -> dict[str, Any]:
    """Simulate one dataset and return its comparison entry."""
    model = "minilm-logreg" if name in TEXT else "logreg"
    config = SimulationConfig(
        dataset=name,
        model=model,
        strategies=ARMS,
        seeds=seeds,
        initial=20,
        batch_size=batch_size,
        cycles=min(cycles, 8 * 10 // batch_size) if name == "wine" else cycles,
        jobs=jobs,
    )
    t0 = time.perf_counter()
    result = run_simulation(config, load_dataset(name))
    seconds = time.perf_counter() - t0
    summary = summarize(result)
    out = root / name
    write_outputs(result, summary, out)
    per_seed = {k: v["aulc_per_seed"] for k, v in summary["strategies"].items()}
    vs_default = paired_difference(per_seed["albl"], per_seed["uncertain_diverse"])
    vs_random = paired_difference(per_seed["albl"], per_seed["random"])
    default_vs_random = paired_difference(per_seed["uncertain_diverse"], per_seed["random"])
    arms = Counter(str(r["arm"]) for r in result.rows if r["strategy"] == "albl" and r["arm"])
    return {
        "dataset": name,
        "model": model,
        "seeds": seeds,
        "cycles": config.cycles,
        "batch_size": batch_size,
        "seconds": round(seconds, 1),
        "aulc": {k: v["aulc_mean"] for k, v in summary["strategies"].items()},
        "aulc_std": {k: v["aulc_std"] for k, v in summary["strategies"].items()},
        "final_accuracy": {k: v["final_accuracy_mean"] for k, v in summary["strategies"].items()},
        "albl_vs_default": vs_default.to_dict(),
        "albl_vs_random": vs_random.to_dict(),
        "default_vs_random": default_vs_random.to_dict(),
        "verdict_vs_default": _verdict(vs_default.to_dict()),
        "arm_draws": dict(sorted(arms.items())),
        "test_gain_by_arm": arm_gains(out / "results.csv"),
        "out": str(out),
    }


def arm_gains(results_csv: Path) -> dict[str, Any]:
    """Test-accuracy gain of each ALBL round, by the arm that picked its batch.

    What the bandit would need to learn: the mean gain per round of each arm, its spread
    over rounds, and the rounds per arm a paired t-test would need to tell the best arm
    from the next (80% power, alpha 0.05: ``16 sd^2 / d^2``).
    """
    by_seed: dict[str, list[dict[str, str]]] = {}
    with results_csv.open() as f:
        for row in csv.DictReader(f):
            if row["strategy"] == "albl":
                by_seed.setdefault(row["seed"], []).append(row)
    gains: dict[str, list[float]] = {}
    for rows in by_seed.values():
        rows.sort(key=lambda r: int(r["round"]))
        for prev, cur in itertools.pairwise(rows):
            gains.setdefault(cur["arm"], []).append(
                float(cur["accuracy"]) - float(prev["accuracy"])
            )
    arms = {
        arm: {"rounds": len(g), "mean": float(np.mean(g)), "sd": float(np.std(g, ddof=1))}
        for arm, g in sorted(gains.items())
        if len(g) > 1
    }
    means = sorted((v["mean"] for v in arms.values()), reverse=True)
    need = None
    if len(means) > 1 and means[0] > means[1]:
        sd = float(np.mean([v["sd"] for v in arms.values()]))
        need = float(16 * sd**2 / (means[0] - means[1]) ** 2)
    return {"arms": arms, "rounds_to_tell_best_apart": need}


def _verdict(d: dict[str, Any]) -> str:
    if d["ci_low"] > 0:
        return "better"
    if d["ci_high"] < 0:
        return "worse"
    return "tie"


def decide(entries: list[dict[str, Any]]) -> str:
    """The rule of issue #14: never significantly worse, better on at least one."""
    verdicts = [e["verdict_vs_default"] for e in entries]
    if "worse" in verdicts:
        return "keep uncertain_diverse: albl is significantly worse on " + ", ".join(
            e["dataset"] for e in entries if e["verdict_vs_default"] == "worse"
        )
    if "better" not in verdicts:
        return "keep uncertain_diverse: albl is never significantly better"
    return "switch to albl: never significantly worse, better on " + ", ".join(
        e["dataset"] for e in entries if e["verdict_vs_default"] == "better"
    )


def markdown(entries: list[dict[str, Any]]) -> str:
    header = (
        "| dataset | model | seeds | AULC albl | AULC uncertain_diverse | AULC random "
        "| albl − default [95% CI] | verdict | albl − random [95% CI] | arm draws |"
    )
    lines = [
        header,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        a, d = e["aulc"], e["albl_vs_default"]
        r = e["albl_vs_random"]
        draws = ", ".join(f"{k} {v}" for k, v in e["arm_draws"].items())
        lines.append(
            f"| {e['dataset']} | {e['model']} | {e['seeds']} | {a['albl']:.4f} "
            f"| {a['uncertain_diverse']:.4f} | {a['random']:.4f} "
            f"| {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] "
            f"| {e['verdict_vs_default']} "
            f"| {r['mean']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {draws} |"
        )
    lines += [
        "",
        (
            "Test-accuracy gain per ALBL round, by the arm that picked the batch "
            "(mean ± sd over rounds; rounds per arm a bandit would need to tell the best "
            "arm from the next):"
        ),
        "",
        "| dataset | arm | rounds | mean gain | sd | rounds needed |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        gains = e.get("test_gain_by_arm") or {"arms": {}, "rounds_to_tell_best_apart": None}
        need = gains["rounds_to_tell_best_apart"]
        for k, (arm, g) in enumerate(gains["arms"].items()):
            shown = "" if k else ("—" if need is None else f"{need:,.0f}")
            lines.append(
                f"| {e['dataset']} | {arm} | {g['rounds']} | {g['mean']:+.4f} | {g['sd']:.4f} "
                f"| {shown} |"
            )
    return "\n".join(lines) + f"\n\nDecision: {decide(entries)}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="wine,breast_cancer,digits,mnist5k,trec")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument(
        "--albl-param",
        action="append",
        default=[],
        help="ablation: an ALBL parameter as KEY=VALUE (JSON value), e.g. soft=false",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "albl_compare.json")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the json/md from stored results"
    )
    args = parser.parse_args()
    if args.albl_param:
        params = {}
        for item in args.albl_param:
            key, _, value = item.partition("=")
            params[key] = json.loads(value)
        use_albl_params(params)
    collected: dict[str, Any] = {}
    if args.out.exists():
        collected = {e["dataset"]: e for e in json.loads(args.out.read_text())["datasets"]}
    if args.report_only:
        for entry in collected.values():
            entry["test_gain_by_arm"] = arm_gains(Path(entry["out"]) / "results.csv")
        entries = list(collected.values())
        payload = {"arms": list(ARMS), "datasets": entries, "decision": decide(entries)}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(entries))
        print(markdown(entries))
        return
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        entry = run_dataset(
            name,
            args.seeds,
            args.jobs,
            args.cycles,
            args.out.parent / args.out.stem,
            args.batch_size,
        )
        collected[name] = entry
        entries = list(collected.values())
        payload = {
            "arms": list(ARMS),
            "albl_params": args.albl_param,
            "datasets": entries,
            "decision": decide(entries),
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(entries))
        print(markdown([entry]), flush=True)


if __name__ == "__main__":
    main()
