"""Pruning redundancy (issue #12, step 5): labeled-set size against test accuracy.

    nice python bench/pruning.py [--datasets digits mnist5k] [--seeds 5]

For each dataset and seed (paired: the same split and injection before and after):

1. a stratified split into a labeled set (70%) and a test set (30%);
2. 30% near duplicates injected into the labeled set: jittered copies of random labeled
   items (Gaussian noise of 0.1 feature standard deviations, clipped to the data's range),
   with their item's label;
3. a :func:`~exemplar.curation.redundancy.prune_plan` on the raw features (cosine, default
   radius) and 5-fold out-of-fold logreg probabilities (confident items: margin >= 0.5,
   at most 10% of the items);
4. the logreg recipe trained on the labeled set before and after removing the plan's rows,
   scored on the test set; :func:`~exemplar.curation.redundancy.validate_plan` (a held-out
   share of the labeled set, no test data) is reported beside it as the caller's check.

Figures: share of the labeled set removed (goal >= 25%), injected copies caught (grouped
with their item, one of the two kept), and the paired accuracy difference after - before
with a 95% t interval (goal: no significant loss). Writes ``bench/results/pruning.json``
and ``bench/results/pruning.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
from scipy import stats
from sklearn.model_selection import StratifiedKFold, train_test_split

from exemplar.curation.redundancy import prune_plan, validate_plan
from exemplar.data import load_dataset
from exemplar.models import make_model

RESULTS = Path(__file__).resolve().parent / "results"
DUP_SHARE = 0.3
JITTER = 0.1


def _oof_proba(X: np.ndarray, y: np.ndarray, classes: np.ndarray, seed: int) -> np.ndarray:
    proba = np.zeros((len(y), len(classes)))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for train, test in folds.split(X, y):
        model = make_model("logreg", seed).fit(X[train], y[train])
        p = model.predict(X[test]).proba
        proba[np.ix_(test, np.searchsorted(classes, model.classes_))] = p
    return proba


def _accuracy(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, seed: int) -> float:
    model = make_model("logreg", seed).fit(X, y)
    return float(np.mean(model.predict_labels(Xt) == yt))


def run_seed(X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    Xl, Xt, yl, yt = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    n_dup = round(DUP_SHARE * len(yl))
    src = rng.choice(len(yl), n_dup, replace=False)
    noise = rng.normal(size=(n_dup, X.shape[1])) * (JITTER * X.std(axis=0))
    copies = np.clip(Xl[src] + noise, X.min(), X.max())
    Xa = np.vstack([Xl, copies])
    ya = np.concatenate([yl, yl[src]])
    classes = np.unique(ya)

    t0 = time.perf_counter()
    proba = _oof_proba(Xa, ya, classes, seed)
    plan = prune_plan(Xa, ya, proba=proba, classes=classes)
    plan_s = time.perf_counter() - t0
    keep = plan.keep_mask()
    dup = np.zeros(len(ya), dtype=bool)
    dup[[r.index for r in plan.removals if r.reason == "near_duplicate"]] = True
    orig, copy = src, len(yl) + np.arange(n_dup)
    caught = float(np.mean(dup[orig] ^ dup[copy] | (dup[orig] & dup[copy])))
    check = validate_plan(Xa, ya, plan, seed=seed)
    before = _accuracy(Xa, ya, Xt, yt, seed)
    after = _accuracy(Xa[keep], ya[keep], Xt, yt, seed)
    return {
        "seed": seed,
        "n_labeled_clean": len(yl),
        "n_labeled": len(ya),
        "n_after": int(keep.sum()),
        "share_removed": plan.share,
        "removed_near_duplicate": plan.count("near_duplicate"),
        "removed_confident": plan.count("confident"),
        "smaller_than_clean": 1.0 - keep.sum() / len(yl),
        "injected_caught": caught,
        "radius": plan.radius,
        "test_acc_before": before,
        "test_acc_after": after,
        "test_acc_diff": after - before,
        "validate_before": check.accuracy_before,
        "validate_after": check.accuracy_after,
        "plan_seconds": plan_s,
    }


def _ci(diffs: list[float]) -> tuple[float, float, float]:
    d = np.asarray(diffs)
    mean = float(d.mean())
    if d.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="pruning")
    args = parser.parse_args()
    summary: dict[str, dict] = {}
    for name in args.datasets:
        ds = load_dataset(name)
        X, y = np.asarray(ds.X, dtype=np.float64), np.asarray(ds.y)
        runs = []
        for seed in range(args.seeds):
            runs.append(run_seed(X, y, seed))
            print(name, json.dumps(runs[-1]), flush=True)
        mean, lo, hi = _ci([r["test_acc_diff"] for r in runs])
        summary[name] = {
            "runs": runs,
            "share_removed_mean": float(np.mean([r["share_removed"] for r in runs])),
            "injected_caught_mean": float(np.mean([r["injected_caught"] for r in runs])),
            "test_acc_before_mean": float(np.mean([r["test_acc_before"] for r in runs])),
            "test_acc_after_mean": float(np.mean([r["test_acc_after"] for r in runs])),
            "test_acc_diff_mean": mean,
            "test_acc_diff_ci95": [lo, hi],
            "significant_loss": bool(hi < 0),
        }
    out = {
        "benchmark": "pruning",
        "command": "nice .venv/bin/python bench/pruning.py " + " ".join(sys.argv[1:]),
        "setup": {
            "duplicate_share": DUP_SHARE,
            "jitter_feature_std": JITTER,
            "labeled_test_split": [0.7, 0.3],
            "recipe": "logreg",
            "plan": "prune_plan defaults (cosine, radius 0.25 x median 5th-NN distance, "
            "margin 0.5, confident <= 10%, >= 5 per class)",
            "seeds": args.seeds,
        },
        "machine": platform.platform(),
        "results": summary,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Pruning redundancy (issue #12): labeled-set size against test accuracy",
        "",
        (
            f"`{out['command']}`; 30% jittered near duplicates injected, {args.seeds} paired"
            " seeds, logreg; difference = after - before, 95% t interval."
        ),
        "",
        (
            "| dataset | labeled (with copies) | after pruning | removed | copies caught "
            "| test acc before | after | difference [95% CI] |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        r = s["runs"]
        lines.append(
            f"| {name} | {np.mean([x['n_labeled'] for x in r]):.0f} "
            f"| {np.mean([x['n_after'] for x in r]):.0f} | {s['share_removed_mean']:.1%} "
            f"| {s['injected_caught_mean']:.1%} | {s['test_acc_before_mean']:.4f} "
            f"| {s['test_acc_after_mean']:.4f} | {s['test_acc_diff_mean']:+.4f} "
            f"[{s['test_acc_diff_ci95'][0]:+.4f}, {s['test_acc_diff_ci95'][1]:+.4f}] |"
        )
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
