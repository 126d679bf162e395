"""Replay a labeled dataset as a stream: budget managers against random, at the same budget.

Protocol (paired, as in :mod:`exemplar.simulate.runner`):

* one fixed, stratified test split (``split_seed``), never streamed;
* for each seed, one arrival order of the remaining items, the same for every manager; the
  first ``initial`` arrivals (grown until they hold two classes) are labeled as a warm
  start, and the rest arrive one at a time;
* for each arrival the current model gives its normalized uncertainty
  (:func:`exemplar.stream.uncertainty`) and the manager decides at once, with ``budget``
  as the share of arrivals it may label; an asked item's label is revealed immediately and
  the model (the same recipe for every manager) is retrained from scratch every
  ``retrain_every`` labels (:class:`~exemplar.loop.stream.StreamLearner`);
* at ``evaluations + 1`` evenly spaced points of the stream the model's test accuracy and
  macro-F1 are recorded, with the labels spent so far, and the prequential accuracy
  (each arrival predicted before its decision, Gama et al. 2013) over the stream so far.

A manager's curve is summarized by its normalized area under test accuracy against
arrivals (every manager spends the same budget per arrival, so the x axis is shared), and
compared with random by a paired t-interval over seeds. Built-in datasets and the two
river datasets that ship with river (``bananas``: 5,300 × 2, ``phishing``: 1,250 × 9) are
available offline.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from exemplar.data import Dataset, load_dataset
from exemplar.errors import ConfigError, DatasetError
from exemplar.loop.stream import StreamLearner
from exemplar.metrics import normalized_aulc, win_tie_loss
from exemplar.models import get_recipe, make_model
from exemplar.simulate.report import PAGE_STYLE, png_base64, win_tie_loss_rows, write_files
from exemplar.simulate.summary import diff_text, diffs_vs_random, json_safe
from exemplar.stream import MANAGERS, make_manager, uncertainty

__all__ = [
    "RIVER_DATASETS",
    "STREAM_COLUMNS",
    "StreamSimulationConfig",
    "StreamSimulationResult",
    "load_stream_dataset",
    "parse_managers",
    "render_stream_html",
    "run_stream_simulation",
    "summarize_stream",
    "write_stream_outputs",
]

STREAM_COLUMNS = (
    "manager",
    "seed",
    "round",
    "arrivals",
    "n_labels",
    "asked",
    "spent",
    "accuracy",
    "macro_f1",
    "prequential_accuracy",
    "decide_ms",
    "fits",
)

#: River datasets that ship inside the river package (no download): name -> class name.
RIVER_DATASETS = {"bananas": "Bananas", "phishing": "Phishing"}

#: Arrivals whose probabilities are computed in one call while the model stays the same.
_LOOKAHEAD = 64


@dataclass(frozen=True)
class StreamSimulationConfig:
    """Everything that defines a stream simulation; recorded in ``summary.json``."""

    dataset: str
    model: str = "logreg"
    model_params: dict[str, Any] = field(default_factory=dict)
    managers: tuple[str, ...] = (
        "fixed_uncertainty",
        "variable_uncertainty",
        "split",
        "balanced_incremental",
        "random",
    )
    manager_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: float = 0.1
    seeds: int = 5
    initial: int = 20
    retrain_every: int = 10
    evaluations: int = 20
    test_size: float = 0.25
    split_seed: int = 0
    jobs: int = 1


@dataclass
class StreamSimulationResult:
    """Per-checkpoint rows plus the context the summary needs."""

    config: StreamSimulationConfig
    rows: list[dict[str, Any]]
    n_stream: int
    n_test: int
    classes: np.ndarray
    full_data_accuracy: float


def parse_managers(text: str) -> tuple[str, ...]:
    """``"a,b"`` as a tuple of known manager names, with ``random`` added last if absent."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MANAGERS]
    if unknown:
        raise ConfigError(
            f"unknown budget manager {unknown[0]!r}; choose from {', '.join(sorted(MANAGERS))}"
        )
    if "random" not in names:
        names.append("random")
    return tuple(dict.fromkeys(names))


def load_stream_dataset(name: str, *, label_column: str | int | None = None) -> Dataset:
    """A built-in dataset or file (:func:`exemplar.data.load_dataset`), or one of the river
    datasets that ship with river: ``bananas`` or ``phishing`` (needs ``exemplar[stream]``).
    """
    key = name.lower().removeprefix("river:")
    if key not in RIVER_DATASETS:
        return load_dataset(name, label_column=label_column)
    try:
        from river import datasets as river_datasets
    except ImportError as exc:
        raise DatasetError(
            f"dataset {name!r} comes from river, which is not installed: "
            "pip install 'exemplar[stream]'"
        ) from exc
    source = getattr(river_datasets, RIVER_DATASETS[key])()
    rows, labels = [], []
    names: list[str] | None = None
    for x, y in source:
        if names is None:
            names = list(x)
        rows.append([float(x[k]) for k in names])
        labels.append(str(y))
    return Dataset(
        name=key,
        X=np.asarray(rows, dtype=np.float64),
        y=np.asarray(labels),
        description=f"river.datasets.{RIVER_DATASETS[key]} (ships with river)",
        source=f"river.datasets.{RIVER_DATASETS[key]}",
        feature_names=tuple(names or ()),
    )


def validate_stream_config(config: StreamSimulationConfig, dataset: Dataset) -> None:
    """Raise :class:`ConfigError` for a setting that cannot run on ``dataset``."""
    if dataset.y is None:
        raise ConfigError(f"dataset {dataset.name!r} has no labels; a simulation needs them")
    if dataset.is_text:
        raise ConfigError("stream simulation runs on feature rows, not texts")
    if not config.managers:
        raise ConfigError("give at least one budget manager")
    if not 0.0 < config.budget <= 1.0:
        raise ConfigError(f"--budget must be in (0, 1], got {config.budget}")
    for key in ("seeds", "initial", "retrain_every", "evaluations"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{key} must be at least 1, got {getattr(config, key)}")
    if not 0.0 < config.test_size < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {config.test_size}")
    if config.jobs == 0 or config.jobs < -1:
        raise ConfigError(f"--jobs must be -1 (all cores) or at least 1, got {config.jobs}")
    if get_recipe(config.model).reads_text:
        raise ConfigError(f"model {config.model!r} reads texts; streams here are feature rows")
    make_model(config.model, **config.model_params)  # checks the parameters
    for name in config.managers:
        make_manager(name, config.budget, config.manager_params.get(name))
    _, counts = np.unique(dataset.y, return_counts=True)
    if counts.size < 2 or counts.min() < 2:
        raise ConfigError(
            f"dataset {dataset.name!r} needs two classes with at least two items each"
        )
    n_stream = dataset.n_items - int(np.ceil(config.test_size * dataset.n_items))
    if config.initial >= n_stream:
        raise ConfigError(
            f"--initial {config.initial} leaves no stream: the pool holds {n_stream} items"
        )


def run_stream_simulation(
    config: StreamSimulationConfig,
    dataset: Dataset,
    on_progress: Callable[[int], None] | None = None,
) -> StreamSimulationResult:
    """Run every (manager, seed) pair; ``on_progress`` gets finished runs (1 each)."""
    validate_stream_config(config, dataset)
    X_pool, X_test, y_pool, y_test = train_test_split(
        dataset.X,
        dataset.y,
        test_size=config.test_size,
        stratify=dataset.y,
        random_state=config.split_seed,
    )
    X_pool = np.asarray(X_pool, dtype=np.float64)
    full = make_model(config.model, 0, **config.model_params)
    with threadpool_limits(limits=1):
        full.fit(X_pool, y_pool)
    full_acc = float(accuracy_score(y_test, full.predict_labels(X_test)))
    tasks = [(m, s) for m in config.managers for s in range(config.seeds)]
    rows: list[dict[str, Any]] = []
    args = (X_pool, y_pool, X_test, y_test)
    if config.jobs == 1:
        for name, seed in tasks:
            rows.extend(_run(config, name, seed, *args))
            if on_progress:
                on_progress(1)
    else:
        parallel = Parallel(n_jobs=config.jobs, return_as="generator_unordered")
        for curve in parallel(delayed(_run)(config, n, s, *args) for n, s in tasks):
            rows.extend(curve)
            if on_progress:
                on_progress(1)
    order = {name: i for i, name in enumerate(config.managers)}
    rows.sort(key=lambda r: (order[str(r["manager"])], r["seed"], r["round"]))
    return StreamSimulationResult(
        config=config,
        rows=rows,
        n_stream=len(y_pool),
        n_test=len(y_test),
        classes=np.unique(y_pool),
        full_data_accuracy=full_acc,
    )


def _run(
    config: StreamSimulationConfig,
    name: str,
    seed: int,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
) -> list[dict[str, Any]]:
    with threadpool_limits(limits=1):
        return list(_curve(config, name, seed, X_pool, y_pool, X_test, y_test))


def _curve(
    config: StreamSimulationConfig,
    name: str,
    seed: int,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
) -> Iterator[dict[str, Any]]:
    """One manager under one seed: the stream, with test evaluations at checkpoints."""
    order = np.random.default_rng([seed, 0x5EA]).permutation(len(y_pool))
    n_init = config.initial
    while n_init < len(order) and np.unique(y_pool[order[:n_init]]).size < 2:
        n_init += 1
    warm, stream = order[:n_init], order[n_init:]
    manager = make_manager(name, config.budget, config.manager_params.get(name), random_state=seed)
    learner = StreamLearner(
        lambda: make_model(config.model, seed, **config.model_params),
        manager,
        retrain_every=config.retrain_every,
    )
    learner.fit(X_pool[warm], y_pool[warm])
    checkpoints = set(
        np.unique(np.linspace(0, stream.size, config.evaluations + 1).round().astype(int))
    )
    correct = 0
    decide_seconds = 0.0
    cache: np.ndarray | None = None
    cache_start = 0
    fits_seen = learner.fits
    rnd = 0
    for t in range(stream.size + 1):
        if t in checkpoints:
            model = learner.model
            assert model is not None
            pred = model.predict_labels(X_test)
            yield {
                "manager": name,
                "seed": seed,
                "round": rnd,
                "arrivals": t,
                "n_labels": learner.n_labels,
                "asked": manager.state()["asked"],
                "spent": manager.state()["spent"],
                "accuracy": float(accuracy_score(y_test, pred)),
                "macro_f1": float(f1_score(y_test, pred, average="macro")),
                "prequential_accuracy": correct / t if t else float("nan"),
                "decide_ms": 1000.0 * decide_seconds / t if t else 0.0,
                "fits": learner.fits,
            }
            rnd += 1
        if t == stream.size:
            return
        i = int(stream[t])
        t0 = time.perf_counter()
        if cache is None or learner.fits != fits_seen or t - cache_start >= cache.shape[0]:
            # One predict call for the next arrivals while the model stays the same: the
            # same probabilities as one call per arrival, at a fraction of the overhead.
            model = learner.model
            assert model is not None
            proba = model.predict(X_pool[stream[t : t + _LOOKAHEAD]]).proba
            assert proba is not None
            cache, cache_start, fits_seen = np.asarray(proba), t, learner.fits
        p = cache[t - cache_start]
        decision = manager.decide(float(uncertainty(p)[0]), confidence=float(p.max()))
        decide_seconds += time.perf_counter() - t0
        model = learner.model
        assert model is not None
        correct += int(model.classes_[int(p.argmax())] == y_pool[i])
        if decision.asked:
            learner.learn(X_pool[i], y_pool[i])


# --------------------------------------------------------------------------- summary


def _grid(result: StreamSimulationResult, name: str, column: str) -> np.ndarray:
    rounds = 1 + max(int(r["round"]) for r in result.rows)
    out = np.full((result.config.seeds, rounds), np.nan)
    for row in result.rows:
        if row["manager"] == name:
            out[int(row["seed"]), int(row["round"])] = float(row[column])
    return out


def summarize_stream(result: StreamSimulationResult) -> dict[str, Any]:
    """Per-manager statistics, paired differences against random, pairwise tests, verdict."""
    cfg = result.config
    aulc: dict[str, list[float]] = {}
    managers: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for name in cfg.managers:
        acc = _grid(result, name, "accuracy")
        arr = _grid(result, name, "arrivals")
        labels = _grid(result, name, "n_labels")
        per_seed = [normalized_aulc(arr[s], acc[s]) for s in range(acc.shape[0])]
        aulc[name] = per_seed
        preq = _grid(result, name, "prequential_accuracy")[:, -1]
        managers[name] = {
            "aulc_mean": float(np.mean(per_seed)),
            "aulc_std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
            "aulc_per_seed": per_seed,
            "final_accuracy_mean": float(acc[:, -1].mean()),
            "final_labels_mean": float(labels[:, -1].mean()),
            "spent_mean": float(_grid(result, name, "spent")[:, -1].mean()),
            "prequential_accuracy_mean": float(np.nanmean(preq)),
            "decide_ms_mean": float(_grid(result, name, "decide_ms")[:, -1].mean()),
        }
        curves[name] = {
            "arrivals": arr.mean(axis=0).tolist(),
            "n_labels": labels.mean(axis=0).tolist(),
            "mean": acc.mean(axis=0).tolist(),
            "std": (acc.std(axis=0, ddof=1) if acc.shape[0] > 1 else 0 * acc[0]).tolist(),
        }
    for name, d in diffs_vs_random(aulc).items():
        managers[name]["diff_vs_random"] = d
    summary: dict[str, Any] = {
        "scenario": "stream",
        "config": {
            **{k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "managers": list(cfg.managers),
        },
        "dataset": {
            "name": cfg.dataset,
            "n_stream": result.n_stream,
            "n_test": result.n_test,
            "n_classes": int(result.classes.size),
        },
        "full_data_accuracy": result.full_data_accuracy,
        "managers": managers,
        "win_tie_loss": win_tie_loss(aulc),
        "curves": curves,
    }
    summary["verdict"] = _verdict(summary)
    return json_safe(summary)


def _verdict(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    managers = summary["managers"]
    others = {k: v for k, v in managers.items() if k != "random"}
    head = (
        f"On {cfg['dataset']} streamed with {cfg['model']}, budget {cfg['budget']:.0%} of "
        f"arrivals and {cfg['seeds']} paired seeds"
    )
    if not others:
        return head + ", only random ran; add a manager to compare against it."
    best = max(others, key=lambda k: others[k]["aulc_mean"])
    stats = others[best]
    text = f"{head}, the best manager was {best} (normalized AULC {stats['aulc_mean']:.3f})"
    if "random" not in managers:
        return text + "; random was not run, so no claim is made against it."
    rand = managers["random"]["aulc_mean"]
    d = stats["diff_vs_random"]
    if d["ci_low"] is None:
        return text + f"; gain over random {d['mean']:+.3f} (one seed, no interval)."
    ci = f"paired gain {d['mean']:+.3f}, 95% CI [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
    if d["ci_low"] > 0:
        call = f"; it beats random at the same budget (AULC {rand:.3f}; {ci})."
    elif d["ci_high"] < 0:
        call = f"; even it is worse than random at the same budget (AULC {rand:.3f}; {ci})."
    else:
        call = f"; it is not distinguishable from random (AULC {rand:.3f}; {ci})."
    better = [
        k
        for k, v in others.items()
        if v["diff_vs_random"]["ci_low"] is not None and v["diff_vs_random"]["ci_low"] > 0
    ]
    worse = [
        k
        for k, v in others.items()
        if v["diff_vs_random"]["ci_high"] is not None and v["diff_vs_random"]["ci_high"] < 0
    ]
    tail = ""
    if better:
        tail += f" Better than random: {', '.join(better)}."
    if worse:
        tail += f" Worse than random: {', '.join(worse)}."
    return text + call + tail


# --------------------------------------------------------------------------- report


def _plot(summary: Mapping[str, Any], x: str, xlabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, c in summary["curves"].items():
        style = "--" if name == "random" else "-"
        (line,) = ax.plot(c[x], c["mean"], style, label=name, linewidth=1.6)
        lo = [m - s for m, s in zip(c["mean"], c["std"], strict=True)]
        hi = [m + s for m, s in zip(c["mean"], c["std"], strict=True)]
        ax.fill_between(c[x], lo, hi, color=line.get_color(), alpha=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return png_base64(fig)


def render_stream_html(summary: Mapping[str, Any]) -> str:
    """One self-contained HTML page: verdict, learning curves, the managers' table."""
    esc = html.escape
    cfg = summary["config"]
    plots = "".join(
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{_plot(summary, x, label)}">'
        f"<figcaption>{esc(caption)}: mean ± 1 std over {cfg['seeds']} seeds</figcaption></figure>"
        for x, label, caption in (
            ("arrivals", "arrivals", "Test accuracy along the stream"),
            ("n_labels", "labels", "Test accuracy against labels spent"),
        )
    )
    rows = []
    for name, m in summary["managers"].items():
        gain = diff_text(m.get("diff_vs_random") if name != "random" else None)
        rows.append(
            f"<tr><td>{esc(name)}</td><td>{m['aulc_mean']:.3f} ± {m['aulc_std']:.3f}</td>"
            f"<td>{esc(gain)}</td><td>{m['final_accuracy_mean']:.3f}</td>"
            f"<td>{m['prequential_accuracy_mean']:.3f}</td><td>{m['final_labels_mean']:.1f}</td>"
            f"<td>{m['spent_mean']:.3f}</td><td>{m['decide_ms_mean']:.3f}</td></tr>"
        )
    names = list(summary["win_tie_loss"])
    wtl = win_tie_loss_rows(summary["win_tie_loss"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>exemplar stream simulation: {esc(cfg["dataset"])}</title>
{PAGE_STYLE}</head><body>
<h1>Stream budget managers vs random on {esc(cfg["dataset"])}</h1>
<p class="verdict" id="verdict">{esc(summary["verdict"])}</p>
{plots}
<h2>Managers</h2>
<table id="managers"><tr><th>manager</th><th>normalized AULC (accuracy vs arrivals)</th>
<th>gain vs random [95% CI]</th><th>final accuracy</th><th>prequential accuracy</th>
<th>labels</th><th>spent share</th><th>decide ms</th></tr>
{"".join(rows)}</table>
<p class=small>Stream of {summary["dataset"]["n_stream"]} arrivals, test split of
{summary["dataset"]["n_test"]}; full-data accuracy {summary["full_data_accuracy"]:.3f}.
Budget {cfg["budget"]} of arrivals; warm start of {cfg["initial"]} labels.</p>
<h2>Pairwise (paired t-test on AULC, α = 0.05)</h2>
<table id="wtl"><tr><th>row vs column</th>{"".join(f"<th>{esc(n)}</th>" for n in names)}</tr>{wtl}</table>
<h2>Configuration</h2><pre>{esc(json.dumps(cfg, indent=1))}</pre>
</body></html>
"""


def write_stream_outputs(
    result: StreamSimulationResult, summary: dict[str, Any], out_dir: Path
) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.json`` and ``report.html`` under ``out_dir``."""
    return write_files(out_dir, result.rows, STREAM_COLUMNS, summary, render_stream_html(summary))
