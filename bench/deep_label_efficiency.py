"""Deep active learning on MNIST-5k: labels needed to reach 90% test accuracy (issue #5).

    python -m bench.deep_label_efficiency [--seeds 5] [--jobs 2] [--max-rounds 30]

Protocol, after Gal et al. (2017): the built-in small CNN (``--model cnn``, MC dropout
with 20 passes) is retrained from scratch every round; 20 random labels to start (the same
set for every strategy under a seed: paired seeds), 10 labels per round, accuracy on a
fixed stratified test split of 1,250 images. Strategies: BALD, variation ratios and
entropy on MC-dropout samples, BatchBALD (Kirsch et al. 2019), a deep ensemble (5 independently seeded CNNs, variation
ratios over members, Beluch et al. 2018) and random. A curve stops once it reaches the
target (that is all "labels to reach 90%" needs) or after ``--max-rounds``.

Anchor: on full MNIST (60k pool), Gal et al. report 145 labels for BALD and 255 for random
to reach 90%. Writes bench/results/deep_label_efficiency.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import train_test_split

from exemplar.data import load_dataset
from exemplar.loop import LabeledPool, SimulatedOracle, select_batch
from exemplar.metrics import paired_difference
from exemplar.models import make_model
from exemplar.strategies import get_strategy

RESULTS = Path(__file__).parent / "results"
#: (label, model recipe, strategy)
ARMS: tuple[tuple[str, str, str], ...] = (
    ("bald", "cnn", "bald"),
    ("variation_ratios", "cnn", "variation_ratios"),
    ("entropy", "cnn", "entropy"),
    ("ensemble", "cnn-ensemble", "variation_ratios"),
    ("batchbald", "cnn", "batchbald"),
    ("random", "cnn", "random"),
)


def curve(
    arm: tuple[str, str, str],
    seed: int,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    target: float,
    initial: int,
    batch: int,
    max_rounds: int,
) -> dict[str, Any]:
    """One paired learning curve, stopped at ``target`` accuracy."""
    import torch

    torch.set_num_threads(1)
    label, recipe, strategy_name = arm
    X_pool, y_pool, X_test, y_test = data
    strategy = get_strategy(strategy_name)
    oracle = SimulatedOracle(y_pool, random_state=seed)
    pool = LabeledPool(len(y_pool))
    start = np.random.default_rng([seed, 1_000_003]).permutation(len(y_pool))[:initial]
    pool.label(start, oracle.query(start))
    points: list[tuple[int, float]] = []
    fit_s = query_s = 0.0
    for rnd in range(max_rounds + 1):
        model = make_model(recipe, seed * 1000 + rnd, samples="samples" in strategy.requires)
        t0 = time.perf_counter()
        model.fit(X_pool[pool.labeled], pool.y_labeled)
        fit_s += time.perf_counter() - t0
        accuracy = float(np.mean(model.predict_labels(X_test) == y_test))
        points.append((int(pool.labeled.size), accuracy))
        if accuracy >= target or rnd == max_rounds:
            break
        t0 = time.perf_counter()
        chosen = select_batch(
            model,
            X_pool,
            strategy,
            pool.unlabeled,
            pool.labeled,
            batch,
            y_labeled=pool.y_labeled,
            random_state=np.random.default_rng([seed, rnd]),
        ).indices
        query_s += time.perf_counter() - t0
        pool.label(chosen, oracle.query(chosen))
    reached = points[-1][0] if points[-1][1] >= target else None
    return {
        "arm": label,
        "seed": seed,
        "points": points,
        "labels_to_target": reached,
        "fit_seconds": fit_s,
        "query_seconds": query_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--max-rounds", type=int, default=30)
    parser.add_argument("--arms", default=",".join(a[0] for a in ARMS))
    parser.add_argument("--out", type=Path, default=RESULTS / "deep_label_efficiency.json")
    args = parser.parse_args()
    d = load_dataset("mnist5k")
    X_pool, X_test, y_pool, y_test = train_test_split(
        d.X.astype(np.float32), d.y, test_size=0.25, stratify=d.y, random_state=0
    )
    data = (X_pool, y_pool, X_test, y_test)
    arms = [a for a in ARMS if a[0] in args.arms.split(",")]
    t0 = time.perf_counter()
    tasks = [(arm, seed) for seed in range(args.seeds) for arm in arms]
    runs = Parallel(n_jobs=args.jobs)(
        delayed(curve)(arm, seed, data, args.target, args.initial, args.batch, args.max_rounds)
        for arm, seed in tasks
    )
    cap = args.initial + args.batch * args.max_rounds
    summary: dict[str, Any] = {}
    by_arm = {
        a[0]: sorted((r for r in runs if r["arm"] == a[0]), key=lambda r: r["seed"]) for a in arms
    }
    for label, rs in by_arm.items():
        # A curve that never reached the target counts as the cap (a lower bound).
        need = [r["labels_to_target"] or cap for r in rs]
        summary[label] = {
            "labels_to_target": [r["labels_to_target"] for r in rs],
            "mean": float(np.mean(need)),
            "median": float(np.median(need)),
            "reached": sum(r["labels_to_target"] is not None for r in rs),
        }
        if label != "random" and "random" in by_arm:
            rand = [r["labels_to_target"] or cap for r in by_arm["random"]]
            summary[label]["saved_vs_random"] = paired_difference(rand, need).to_dict()
    out = {
        "config": {
            **vars(args),
            "out": str(args.out),
            "cap": cap,
            "pool": len(y_pool),
            "test": len(y_test),
        },
        "summary": summary,
        "runs": runs,
        "wall_seconds": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(
        f"| arm | labels to {args.target:.0%} (per seed) | mean | median | saved vs random [95% CI] |"
    )
    print("|---|---|---|---|---|")
    for label, s in summary.items():
        per_seed = ", ".join(str(v) if v is not None else f">{cap}" for v in s["labels_to_target"])
        saved = s.get("saved_vs_random")
        gain = (
            f"{saved['mean']:+.0f} [{saved['ci_low']:+.0f}, {saved['ci_high']:+.0f}]"
            if saved and saved.get("ci_low") is not None
            else "—"
        )
        print(f"| {label} | {per_seed} | {s['mean']:.0f} | {s['median']:.0f} | {gain} |")
    print(f"wall {out['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
