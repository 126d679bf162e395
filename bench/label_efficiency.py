"""Label efficiency: paired simulations of every strategy against random on built-in data.

Writes bench/results/label_efficiency.json and label_efficiency.md.

    python -m bench.label_efficiency [--datasets digits,breast_cancer,mnist5k,wine]
        [--strategies ...] [--seeds 5] [--jobs 2] [--model logreg]

Text (issue #5): TREC questions through frozen MiniLM embeddings and a logistic head,

    python -m bench.label_efficiency --datasets trec --model minilm-logreg \
        --strategies default,random,margin,entropy,badge,coreset \
        --out bench/results/text_label_efficiency.json \
        --markdown bench/results/text_label_efficiency.md

Protocol (issue #2): logistic regression, 20 initial labels, batch 10, 30 rounds, paired
seeds. Writes bench/results/label_efficiency.json and prints a markdown table of normalized
AULC per strategy with the paired gain over random and its 95% confidence interval.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from exemplar.data import load_dataset
from exemplar.simulate import SimulationConfig, run_simulation, summarize

RESULTS = Path(__file__).parent / "results"
DEFAULT_STRATEGIES = (
    "random,margin,entropy,least_confidence,ratio,uncertain_diverse,badge,coreset,"
    "information_density,cluster_margin,typiclust,class_balanced,bald"
)


def run(
    datasets: list[str],
    strategies: list[str],
    seeds: int,
    jobs: int,
    rounds: int,
    model: str = "logreg",
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in datasets:
        data = load_dataset(name)
        # wine's pool (133 items) cannot hold 20 + 30 x 10 labels: fewer rounds there.
        n_rounds = rounds if name != "wine" else 8
        config = SimulationConfig(
            dataset=name,
            model=model,
            strategies=tuple(strategies),
            seeds=seeds,
            initial=20,
            batch_size=10,
            cycles=n_rounds,
            jobs=jobs,
        )
        t0 = time.perf_counter()
        summary = summarize(run_simulation(config, data))
        summary.pop("curves")
        summary["wall_seconds"] = time.perf_counter() - t0
        out[name] = summary
        print(table(name, summary), flush=True)
    return out


def table(name: str, summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    lines = [
        (
            f"\n**{name}** (pool {summary['dataset']['n_pool']}, {cfg['seeds']} seeds, "
            f"{cfg['initial']} + {cfg['cycles']}×{cfg['batch_size']} labels, full-data accuracy "
            f"{summary['full_data_accuracy']:.3f})\n"
        ),
        "| strategy | AULC | gain vs random [95% CI] | W/T/L vs random | final acc | labels to 95% | query ms |",
        "|---|---|---|---|---|---|---|",
    ]
    ranked = sorted(summary["strategies"].items(), key=lambda kv: -kv[1]["aulc_mean"])
    for strat, s in ranked:
        d = s.get("diff_vs_random") or {}
        gain = (
            "—"
            if strat == "random"
            else (
                f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
                if d.get("ci_low") is not None
                else f"{d.get('mean', 0):+.4f}"
            )
        )
        wtl = "—" if strat == "random" else summary["win_tie_loss"][strat]["random"]
        reach = s["labels_to_target"]
        reach_txt = (
            f"{reach['mean']:.0f} ({reach['seeds_reached']}/{cfg['seeds']})"
            if reach["mean"]
            else "—"
        )
        lines.append(
            f"| {strat} | {s['aulc_mean']:.4f} ± {s['aulc_std']:.4f} | {gain} | {wtl} | "
            f"{s['final_accuracy_mean']:.3f} | {reach_txt} | {s['query_seconds_mean'] * 1000:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="digits,breast_cancer,wine,mnist5k")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model", default="logreg", help="model recipe (exemplar models)")
    parser.add_argument("--out", type=Path, default=RESULTS / "label_efficiency.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "label_efficiency.md")
    args = parser.parse_args()
    result = run(
        args.datasets.split(","),
        args.strategies.split(","),
        args.seeds,
        args.jobs,
        args.rounds,
        args.model,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.markdown.write_text("\n".join(table(name, s) for name, s in result.items()) + "\n")
    print(f"\nwrote {args.out} and {args.markdown}")


if __name__ == "__main__":
    main()
