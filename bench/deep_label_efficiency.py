"""Deep active learning on MNIST-5k: labels needed to reach 90% test accuracy (issue #5, #10).

    python -m bench.deep_label_efficiency [--seeds 5] [--jobs 2] [--max-rounds 30]
        [--arms bald,ensemble,random] [--device cpu|cuda|auto]

Protocol, after Gal et al. (2017): the built-in small CNN (``--model cnn``, MC dropout
with 20 passes) is retrained from scratch every round; 20 random labels to start (the same
set for every strategy under a seed: paired seeds), 10 labels per round, accuracy on a
fixed stratified test split of 1,250 images. Strategies: BALD, variation ratios and
entropy on MC-dropout samples, BatchBALD (Kirsch et al. 2019), a deep ensemble (5
independently seeded CNNs, variation ratios over members, Beluch et al. 2018) and random.
A curve stops once it reaches the target (that is all "labels to reach 90%" needs) or
after ``--max-rounds``.

The ``bald-*`` and ``*-gal`` arms change one factor of BALD's protocol at a time, to find
why BALD needs more labels here than the 145 Gal et al. report on full MNIST (issue #10):
the number of MC-dropout passes (``bald-t100``), a random acquisition subset of 2,000
unlabeled items scored per round instead of the whole pool (``bald-subset``), fine-tuning
the previous round's network instead of retraining from scratch (``bald-finetune``), a
fixed 50-epoch schedule on every label instead of early stopping on a 10% hold-out
(``bald-fixed``), a class-balanced initial set (``bald-balanced``), and all of them
together (``bald-gal``, paired with ``random-gal``: balanced start, fixed schedule).

Anchor: on full MNIST (60k pool), Gal et al. report 145 labels for BALD and 255 for random
to reach 90%. Writes bench/results/deep_label_efficiency.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import train_test_split

from exemplar.loop import LabeledPool, SimulatedOracle, select_batch
from exemplar.metrics import paired_difference
from exemplar.models import ModelAdapter, make_model
from exemplar.strategies import get_strategy

RESULTS = Path(__file__).parent / "results"
#: The schedule without early stopping: 50 epochs on every labeled image.
FIXED = {"epochs": 50, "validation_fraction": 0.0}


@dataclass(frozen=True)
class Arm:
    """One arm: a model recipe and a strategy, plus the protocol factors it changes."""

    label: str
    recipe: str
    strategy: str
    params: dict[str, Any] = field(default_factory=dict)
    #: Score a random subset of this many unlabeled items per round (None: the whole pool).
    subset: int | None = None
    #: Fine-tune one network across rounds instead of retraining from scratch.
    finetune: bool = False
    #: Initial set drawn at random ("random") or with the same count per class ("balanced").
    initial: str = "random"


ARMS: tuple[Arm, ...] = (
    Arm("bald", "cnn", "bald"),
    Arm("variation_ratios", "cnn", "variation_ratios"),
    Arm("entropy", "cnn", "entropy"),
    Arm("ensemble", "cnn-ensemble", "variation_ratios"),
    Arm("batchbald", "cnn", "batchbald"),
    Arm("random", "cnn", "random"),
    Arm("bald-t100", "cnn", "bald", {"n_samples": 100}),
    Arm("bald-subset", "cnn", "bald", subset=2000),
    Arm("bald-finetune", "cnn", "bald", finetune=True),
    Arm("bald-fixed", "cnn", "bald", dict(FIXED)),
    Arm("bald-balanced", "cnn", "bald", initial="balanced"),
    Arm("bald-gal", "cnn", "bald", {"n_samples": 100, **FIXED}, 2000, initial="balanced"),
    Arm("random-gal", "cnn", "random", dict(FIXED), initial="balanced"),
    Arm("random-fixed", "cnn", "random", dict(FIXED)),
    Arm("ensemble-fixed", "cnn-ensemble", "variation_ratios", dict(FIXED)),
    Arm("variation_ratios-fixed", "cnn", "variation_ratios", dict(FIXED)),
    Arm("batchbald-fixed", "cnn", "batchbald", dict(FIXED)),
    Arm("bald-fixed-finetune", "cnn", "bald", dict(FIXED), finetune=True),
)


def initial_set(y: np.ndarray, size: int, seed: int, how: str) -> np.ndarray:
    """The first labeled items: the same under a seed for every arm with the same ``how``."""
    order = np.random.default_rng([seed, 1_000_003]).permutation(len(y))
    if how == "random":
        return order[:size]
    classes = np.unique(y)
    per_class = size // classes.size
    picked = [order[y[order] == c][:per_class] for c in classes]
    return np.sort(np.concatenate(picked))


def curve(
    arm: Arm,
    seed: int,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    target: float,
    initial: int,
    batch: int,
    max_rounds: int,
    device: str,
) -> dict[str, Any]:
    """One paired learning curve, stopped at ``target`` accuracy."""
    import torch

    torch.set_num_threads(1)
    X_pool, y_pool, X_test, y_test = data
    strategy = get_strategy(arm.strategy)
    oracle = SimulatedOracle(y_pool, random_state=seed)
    pool = LabeledPool(len(y_pool))
    start = initial_set(y_pool, initial, seed, arm.initial)
    pool.label(start, oracle.query(start))
    points: list[tuple[int, float]] = []
    fit_s = query_s = 0.0
    samples = "samples" in strategy.requires
    model: ModelAdapter | None = None
    for rnd in range(max_rounds + 1):
        if model is None or not arm.finetune:
            params = {**arm.params, "warm_start": arm.finetune}
            model = make_model(
                arm.recipe, seed * 1000 + rnd, samples=samples, device=device, **params
            )
        t0 = time.perf_counter()
        model.fit(X_pool[pool.labeled], pool.y_labeled)
        fit_s += time.perf_counter() - t0
        accuracy = float(np.mean(model.predict_labels(X_test) == y_test))
        points.append((int(pool.labeled.size), accuracy))
        if accuracy >= target or rnd == max_rounds:
            break
        rng = np.random.default_rng([seed, rnd])
        candidates = pool.unlabeled
        if arm.subset is not None and candidates.size > arm.subset:
            candidates = np.sort(rng.choice(candidates, size=arm.subset, replace=False))
        t0 = time.perf_counter()
        chosen = select_batch(
            model,
            X_pool,
            strategy,
            candidates,
            pool.labeled,
            batch,
            y_labeled=pool.y_labeled,
            random_state=rng,
        ).indices
        query_s += time.perf_counter() - t0
        pool.label(chosen, oracle.query(chosen))
    reached = points[-1][0] if points[-1][1] >= target else None
    return {
        "arm": arm.label,
        "seed": seed,
        "points": points,
        "labels_to_target": reached,
        "fit_seconds": fit_s,
        "query_seconds": query_s,
    }


def load_data(path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-5k: from ``path`` (an .npz with X and y) or the built-in dataset."""
    if path is not None:
        with np.load(path) as f:
            return f["X"], f["y"]
    from exemplar.data import load_dataset

    d = load_dataset("mnist5k")
    assert d.y is not None
    return d.X, d.y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--max-rounds", type=int, default=30)
    parser.add_argument("--arms", default="bald,variation_ratios,entropy,ensemble,random")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--data", type=Path, default=None, help="an .npz with X and y")
    parser.add_argument("--out", type=Path, default=RESULTS / "deep_label_efficiency.json")
    args = parser.parse_args()
    X, y = load_data(args.data)
    X_pool, X_test, y_pool, y_test = train_test_split(
        X.astype(np.float32), y, test_size=0.25, stratify=y, random_state=0
    )
    data = (X_pool, y_pool, X_test, y_test)
    wanted = args.arms.split(",")
    unknown = sorted(set(wanted) - {a.label for a in ARMS})
    if unknown:
        parser.error(
            f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(a.label for a in ARMS)}"
        )
    arms = [a for a in ARMS if a.label in wanted]
    t0 = time.perf_counter()
    tasks = [(arm, seed) for seed in range(args.seeds) for arm in arms]
    parallel = Parallel(n_jobs=args.jobs, return_as="generator_unordered")
    runs: list[dict[str, Any]] = []
    for run in parallel(
        delayed(curve)(
            arm, seed, data, args.target, args.initial, args.batch, args.max_rounds, args.device
        )
        for arm, seed in tasks
    ):
        runs.append(run)  # results so far are written after every curve: a cut run keeps them
        out = summarize(args, arms, runs, len(y_pool), len(y_test), time.perf_counter() - t0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    print_table(out["summary"], args.target, out["config"]["cap"])
    print(f"wall {out['wall_seconds']:.0f} s")


def summarize(
    args: argparse.Namespace,
    arms: list[Arm],
    runs: list[dict[str, Any]],
    n_pool: int,
    n_test: int,
    wall: float,
) -> dict[str, Any]:
    """Labels to the target per arm, and the paired savings against the matching random arm."""
    cap = args.initial + args.batch * args.max_rounds
    by_arm = {
        a.label: sorted((r for r in runs if r["arm"] == a.label), key=lambda r: r["seed"])
        for a in arms
    }
    summary: dict[str, Any] = {}
    for arm in arms:
        rs = by_arm[arm.label]
        # A curve that never reached the target counts as the cap (a lower bound).
        need = {r["seed"]: r["labels_to_target"] or cap for r in rs}
        summary[arm.label] = {
            "seeds": sorted(need),
            "labels_to_target": [r["labels_to_target"] for r in rs],
            "mean": float(np.mean(list(need.values()))) if need else None,
            "median": float(np.median(list(need.values()))) if need else None,
            "reached": sum(r["labels_to_target"] is not None for r in rs),
        }
        control = (
            "random-gal"
            if arm.initial == "balanced"
            else "random-fixed"
            if arm.params.get("validation_fraction") == 0.0 and "random-fixed" in by_arm
            else "random"
        )
        if arm.strategy != "random" and control in by_arm:
            rand = {r["seed"]: r["labels_to_target"] or cap for r in by_arm[control]}
            paired = sorted(set(need) & set(rand))
            if len(paired) >= 2:
                summary[arm.label]["control"] = control
                summary[arm.label]["saved_vs_random"] = paired_difference(
                    [rand[s] for s in paired], [need[s] for s in paired]
                ).to_dict()
    return {
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "data": str(args.data) if args.data else "mnist5k",
            "cap": cap,
            "pool": n_pool,
            "test": n_test,
        },
        "summary": summary,
        "runs": runs,
        "wall_seconds": wall,
    }


def print_table(summary: dict[str, Any], target: float, cap: int) -> None:
    """The summary as a markdown table."""
    print(f"| arm | labels to {target:.0%} (per seed) | mean | median | saved vs random [95% CI] |")
    print("|---|---|---|---|---|")
    for label, s in summary.items():
        if s["mean"] is None:
            continue
        per_seed = ", ".join(str(v) if v is not None else f">{cap}" for v in s["labels_to_target"])
        saved = s.get("saved_vs_random")
        gain = (
            f"{saved['mean']:+.0f} [{saved['ci_low']:+.0f}, {saved['ci_high']:+.0f}]"
            f" vs {s['control']}"
            if saved and saved.get("ci_low") is not None
            else "—"
        )
        print(f"| {label} | {per_seed} | {s['mean']:.0f} | {s['median']:.0f} | {gain} |")


if __name__ == "__main__":
    main()
