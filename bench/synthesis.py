"""Query synthesis against pool-based selection (issue #14), dataset by dataset.

    nice -n 10 .venv/bin/python bench/synthesis.py [--datasets wine breast_cancer digits
        bananas mnist5k] [--seeds 5] [--jobs 1] [--out synthesis]

For each dataset, :func:`exemplar.simulate.synthesis.run_synthesis_simulation` with the arms
``default``, ``random`` and ``synthesis`` (paired seeds, same initial set, same recipe, same
label count per cycle; synthesized points labeled by a random-forest oracle fit on the pool).
``bananas`` is river's 2-D Bananas set (5,300 real rows, shipped inside river; learner
``random_forest`` since the classes are not linearly separable); ``linear2`` is *synthetic*
(2,000 uniform 2-D points labeled by a noise-free linear rule: the textbook case for
synthesis); the others use ``logreg``.
Writes ``bench/results/<out>.json`` and ``.md``, and each dataset's report (``results.csv``,
``summary.json``, ``report.html``) under ``bench/results/<out>/<dataset>/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from exemplar.data import Dataset, load_dataset
from exemplar.simulate import SimulationConfig
from exemplar.simulate.synthesis import (
    ORACLES,
    SynthesisConfig,
    run_synthesis_simulation,
    summarize_synthesis,
    synthesize_batch,
    write_synthesis_outputs,
)

RESULTS = Path(__file__).resolve().parent / "results"

#: Per dataset: learner, initial labels, batch size, cycles (budgets fit the smallest pools).
SETTINGS: dict[str, dict[str, Any]] = {
    "wine": {"model": "logreg", "initial": 10, "batch_size": 5, "cycles": 12},
    "breast_cancer": {"model": "logreg", "initial": 20, "batch_size": 10, "cycles": 20},
    "digits": {"model": "logreg", "initial": 20, "batch_size": 10, "cycles": 20},
    "bananas": {"model": "random_forest", "initial": 20, "batch_size": 10, "cycles": 20},
    "mnist5k": {"model": "logreg", "initial": 20, "batch_size": 10, "cycles": 15},
    "linear2": {"model": "logreg", "initial": 10, "batch_size": 5, "cycles": 16},
}


def load(name: str) -> Dataset:
    """A built-in dataset, or river's Bananas (read offline from the river wheel)."""
    if name == "linear2":  # synthetic: the textbook case for synthesis
        rng = np.random.default_rng(0)
        X = rng.uniform(-1.0, 1.0, (2000, 2))
        y = (X @ np.array([1.0, -0.6]) > 0.2).astype(np.int64)
        return Dataset(
            "linear2",
            X,
            y,
            description="synthetic: 2,000 uniform 2-D points, labels from a noise-free linear rule",
        )
    if name != "bananas":
        return load_dataset(name)
    from river import datasets

    rows = [(list(x.values()), int(y)) for x, y in datasets.Bananas()]
    X = np.asarray([r[0] for r in rows], dtype=np.float64)
    y = np.asarray([r[1] for r in rows], dtype=np.int64)
    return Dataset("bananas", X, y, description="river Bananas: 5,300 × 2, 2 classes")


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One dataset's synthesis run; writes its report and returns its summary."""
    data = load(name)
    config = SynthesisConfig(
        SimulationConfig(
            dataset=name,
            strategies=("default", "random"),
            seeds=args.seeds,
            jobs=args.jobs,
            **SETTINGS[name],
        ),
        oracle=args.oracle,
        explore=args.explore,
    )
    t0 = time.perf_counter()
    sres = run_synthesis_simulation(config, data)
    seconds = time.perf_counter() - t0
    summary = summarize_synthesis(sres)
    write_synthesis_outputs(sres, summary, RESULTS / args.out / name)
    summary["seconds"] = seconds
    print(f"{name} ({seconds:.0f} s): {summary['verdict']}", flush=True)
    return summary


def markdown(summaries: dict[str, dict[str, Any]], seeds: int) -> str:
    """The table of docs/synthesis.md."""
    head = (
        f"| dataset | features | learner | labels | AULC default | AULC random | AULC synthesis "
        f"| synthesis − default [95% CI] | synthesis − random [95% CI] "
        f"| query distance ratio: boundary / exploration "
        f"| oracle confidence: boundary / exploration / test items | oracle test acc "
        f"| call |\n|{'---|' * 13}\n"
    )

    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    lines = []
    for name, s in summaries.items():
        syn = s["synthesis"]
        cfg = s["config"]
        st = s["strategies"]

        def ci(arm: str, syn: dict[str, Any] = syn) -> str:
            d = syn["versus"][arm]
            if d["ci_low"] is None:
                return f"{d['mean']:+.3f}"
            return f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"

        calls = set(syn["calls"].values())
        call = (
            "helps"
            if "better" in calls and "worse" not in calls
            else "hurts"
            if "worse" in calls and "better" not in calls
            else "no difference"
            if calls == {"tie"}
            else "mixed"
        )
        lines.append(
            f"| {name} | {syn['n_features']} | {cfg['model']} "
            f"| {cfg['initial']}+{cfg['cycles']}×{cfg['batch_size']} "
            f"| {st['default']['aulc_mean']:.3f} | {st['random']['aulc_mean']:.3f} "
            f"| {st['synthesis']['aulc_mean']:.3f} | {ci('default')} | {ci('random')} "
            f"| {num(syn['offmanifold_ratio_boundary_median'])} / "
            f"{num(syn['offmanifold_ratio_explore_median'])} "
            f"| {num(syn['oracle_query_confidence_boundary'])} / "
            f"{num(syn['oracle_query_confidence_explore'])} / "
            f"{syn['oracle_test_confidence']:.2f} | {syn['oracle_test_accuracy']:.3f} "
            f"| {call} |"
        )
    return head + "\n".join(lines) + f"\n\n{seeds} paired seeds; AULC normalized.\n"


def figure_digits(path: Path) -> None:
    """What synthesized digit queries look like: one round of the synthesis arm on digits
    (20 real labels, logreg learner), local queries and exploration queries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from exemplar.models import make_model

    data = load_dataset("digits")
    assert data.y is not None
    X = np.asarray(data.X, dtype=np.float64)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(X), 20, replace=False)
    model = make_model("logreg", 0).fit(X[chosen], data.y[chosen])
    std = X.std(axis=0)
    kw: dict[str, Any] = {
        "center": X.mean(axis=0),
        "scale": np.where(std > 0, std, 1.0),
        "low": X.min(axis=0),
        "high": X.max(axis=0),
    }
    rows = {
        "real items": X[chosen[:8]],
        "between labeled": synthesize_batch(
            model, X[chosen], data.y[chosen], 8, rng=rng, explore=0.0, **kw
        ),
        "exploration": synthesize_batch(
            model, X[chosen], data.y[chosen], 8, rng=rng, explore=1.0, **kw
        ),
    }
    fig, axes = plt.subplots(3, 8, figsize=(8, 3.4), dpi=100)
    for r, (title, images) in enumerate(rows.items()):
        for c in range(8):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    """Run the chosen datasets one after the other and write the JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=[n for n in SETTINGS if n != "mnist5k"],
        choices=list(SETTINGS),
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="synthesis")
    parser.add_argument("--oracle", default="random_forest", choices=list(ORACLES))
    parser.add_argument("--explore", type=float, default=0.5)
    parser.add_argument("--figure", type=Path, help="only draw synthesized digits to this PNG")
    args = parser.parse_args()
    if args.figure:
        figure_digits(args.figure)
        return
    summaries = {name: run_dataset(name, args) for name in args.datasets}
    record = {
        "command": "bench/synthesis.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "datasets": {
            name: {
                "seconds": s["seconds"],
                "config": s["config"],
                "aulc": {k: v["aulc_mean"] for k, v in s["strategies"].items()},
                "final_accuracy": {k: v["final_accuracy_mean"] for k, v in s["strategies"].items()},
                "synthesis": s["synthesis"],
                "verdict": s["verdict"],
            }
            for name, s in summaries.items()
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(summaries, args.seeds))
    print(markdown(summaries, args.seeds))


if __name__ == "__main__":
    main()
