"""Label errors: how many injected wrong labels confident learning finds (issue #12, step 6).

    nice python -m bench.label_errors [--datasets digits mnist5k] [--seeds 0 1 2 3 4]
        [--noise 0.1] [--recipes logreg random_forest] [--folds 5]
        [--out bench/results/label_errors.json]

Protocol. For each dataset (``exemplar.data`` built-ins, raw features) and each seed:

* inject uniform label noise: ``round(noise * n)`` items, drawn with the seed, get another
  class drawn uniformly from the others;
* out-of-fold probabilities (:func:`exemplar.curation.out_of_fold_proba`, each recipe with
  ``folds`` stratified folds, same seed) on the noisy labels; ``oof_seconds`` times it, and
  ``oof_accuracy`` is their argmax's accuracy against the true (unflipped) labels;
* ``found_top2x``: share of the injected errors among the first ``2 * m`` items of the
  self-confidence ranking (``m`` injected errors: a review budget twice the error count;
  issue #12's goal is at least 0.70);
* for each method of :func:`exemplar.curation.find_label_errors`: ``n_estimated`` (the
  calibrated confident joint's off-diagonal count) against ``m``, ``precision_at_estimate``
  (share of injected errors among the first ``n_estimated`` items of the ranking), and the
  flagged set's ``precision`` and ``recall`` against the injected errors; ``find_seconds``.

Seeds are paired: seed ``s`` draws the same flips and folds for every recipe and method. Summaries give the
mean over seeds and a 95% Student t interval. "Precision" counts an item as an error only if we
flipped it, so label errors already in the source data count against it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats

RESULTS = Path(__file__).parent / "results"
METHODS: tuple[Literal["prune_by_noise_rate", "confident_joint_off_diagonal"], ...] = (
    "prune_by_noise_rate",
    "confident_joint_off_diagonal",
)


def inject_noise(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``round(share * n)`` of them moved uniformly to another class; their indices."""
    rng = np.random.default_rng(seed)
    classes, codes = np.unique(y, return_inverse=True)
    flipped = rng.choice(y.size, round(share * y.size), replace=False)
    moved = (codes[flipped] + rng.integers(1, classes.size, flipped.size)) % classes.size
    noisy = y.copy()
    noisy[flipped] = classes[moved]
    return noisy, np.sort(flipped)


def run_one(
    X: np.ndarray, y: np.ndarray, seed: int, noise: float, recipe: str, folds: int
) -> dict[str, Any]:
    """One dataset, one seed: every figure of the protocol."""
    from exemplar.curation import find_label_errors, out_of_fold_proba, rank_by_self_confidence

    noisy, flipped = inject_noise(y, noise, seed)
    is_flipped = np.zeros(y.size, dtype=bool)
    is_flipped[flipped] = True
    m = int(flipped.size)
    t0 = time.perf_counter()
    proba, classes = out_of_fold_proba(X, noisy, recipe=recipe, folds=folds, seed=seed)
    oof_s = time.perf_counter() - t0
    order = rank_by_self_confidence(proba, noisy, classes)
    row: dict[str, Any] = {
        "seed": seed,
        "n": int(y.size),
        "injected": m,
        "oof_seconds": oof_s,
        "oof_accuracy": float((classes[proba.argmax(axis=1)] == y).mean()),
        "found_top2x": float(is_flipped[order[: 2 * m]].sum() / m),
    }
    for method in METHODS:
        t0 = time.perf_counter()
        errors = find_label_errors(proba, noisy, classes, method=method)
        find_s = time.perf_counter() - t0
        k = errors.n_estimated_errors
        flagged = is_flipped[errors.indices]
        row[method] = {
            "n_estimated": k,
            "precision_at_estimate": float(is_flipped[order[:k]].mean()) if k else float("nan"),
            "n_flagged": len(errors),
            "precision": float(flagged.mean()) if len(errors) else float("nan"),
            "recall": float(flagged.sum() / m),
            "find_seconds": find_s,
        }
    return row


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% Student t interval over seeds."""
    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    if a.size < 2:
        return {"mean": mean, "ci_low": mean, "ci_high": mean}
    half = float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def markdown(result: dict[str, Any]) -> str:
    """The results as a markdown table (mean [95% CI] over seeds)."""

    def cell(s: dict[str, float], digits: int = 3) -> str:
        return f"{s['mean']:.{digits}f} [{s['ci_low']:.{digits}f}, {s['ci_high']:.{digits}f}]"

    cfg = result["config"]
    lines = [
        "# Label errors: confident learning on injected label noise",
        "",
        f"Command: `{result['command']}`",
        "",
        (
            f"{cfg['noise']:.0%} uniform label flips, out-of-fold probabilities "
            f"({cfg['folds']} folds), seeds {cfg['seeds']}; mean [95% t CI] over seeds."
        ),
        "",
        (
            "| dataset | recipe | n | injected | oof accuracy (true labels) | found in top 2x budget "
            "| method | estimated errors | precision at estimate | flagged precision "
            "| flagged recall | oof s | find s |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, ds in result["datasets"].items():
        name, recipe = key.split("/")
        s = ds["summary"]
        for method in METHODS:
            ms = s[method]
            lines.append(
                f"| {name} | {recipe} | {ds['runs'][0]['n']} | {ds['runs'][0]['injected']} | "
                f"{cell(s['oof_accuracy'])} | {cell(s['found_top2x'])} | {method} | {cell(ms['n_estimated'], 1)} | "
                f"{cell(ms['precision_at_estimate'])} | {cell(ms['precision'])} | "
                f"{cell(ms['recall'])} | {s['oof_seconds']['mean']:.2f} | "
                f"{ms['find_seconds']['mean']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--noise", type=float, default=0.10)
    parser.add_argument("--recipes", nargs="+", default=["logreg", "random_forest"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "label_errors.json")
    args = parser.parse_args(argv)

    from exemplar.data import load_dataset

    result: dict[str, Any] = {
        "benchmark": "label_errors",
        "command": "nice python -m bench.label_errors "
        + " ".join(
            [
                "--datasets",
                *args.datasets,
                "--seeds",
                *map(str, args.seeds),
                "--noise",
                str(args.noise),
                "--recipes",
                *args.recipes,
                "--folds",
                str(args.folds),
            ]
        ),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "config": {
            "noise": args.noise,
            "recipes": args.recipes,
            "folds": args.folds,
            "seeds": args.seeds,
        },
        "datasets": {},
    }
    for name, recipe in itertools.product(args.datasets, args.recipes):
        ds = load_dataset(name)
        runs = []
        for seed in args.seeds:
            row = run_one(ds.X, np.asarray(ds.y), seed, args.noise, recipe, args.folds)
            runs.append(row)
            print(
                f"{name}/{recipe} seed {seed}: found_top2x={row['found_top2x']:.3f} "
                f"est={row['prune_by_noise_rate']['n_estimated']}/{row['injected']} "
                f"oof={row['oof_seconds']:.1f}s",
                flush=True,
            )
        summary: dict[str, Any] = {
            key: summarize([r[key] for r in runs])
            for key in ("found_top2x", "oof_seconds", "oof_accuracy")
        }
        for method in METHODS:
            summary[method] = {
                key: summarize([r[method][key] for r in runs]) for key in runs[0][method]
            }
        result["datasets"][f"{name}/{recipe}"] = {"runs": runs, "summary": summary}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
