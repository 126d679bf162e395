"""The simulated curation run: "smaller and better" against plain active learning and random.

Issue #12 asks for iterations against labeled-set size and accuracy. Three arms run on the
same data, paired by seed:

* ``curated``: active learning (the configured strategy) plus curation after every
  labeling: confident learning (Northcutt, Jiang & Chuang 2021, JAIR 70) on out-of-fold
  probabilities of the training set sends its ``review_budget`` most suspect labels to a
  simulated reviewer, who restores the true label (the item becomes a verified exemplar);
  then a prune plan (near duplicates and items the model gets right by a large margin,
  Toneva et al. 2019; Paul et al. 2021) checked by
  :func:`~exemplar.curation.validate_plan` removes items from the training set when the
  held-out accuracy does not drop. Removed items stay counted as labels spent.
* ``active``: the same strategy, no curation.
* ``random``: random sampling, no curation.

Protocol, per seed (identical for the three arms):

* one fixed, stratified test split (``split_seed``), never queried nor injected;
* the pool with ``duplicates`` of its items copied once (jittered by ``jitter`` feature
  standard deviations, clipped to the data's range; the copy keeps its item's label),
  as in ``bench/pruning.py``;
* a :class:`~exemplar.loop.SimulatedOracle` with ``noise_rate=noise`` seeded by the seed:
  the wrong answer of an item depends only on the seed and the item, so the arms get the
  same wrong labels for the same items;
* the same random initial set (:func:`~exemplar.simulate.runner.initial_set`); batches
  are picked by :func:`~exemplar.loop.pick_batch` as in the plain simulator.

Round 0 is the initial set, untouched; each later round is query, label, (curate), train,
test.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from exemplar.curation import (
    PrunePlan,
    find_label_errors,
    out_of_fold_proba,
    prune_plan,
    validate_plan,
)
from exemplar.data import Dataset
from exemplar.errors import ConfigError
from exemplar.loop import LabeledPool, SimulatedOracle, pick_batch, score_pool
from exemplar.metrics import paired_difference
from exemplar.models import ModelAdapter
from exemplar.simulate.report import write_files
from exemplar.simulate.runner import (
    SimulationConfig,
    initial_set,
    make_adapter,
    validate_config,
)
from exemplar.strategies import get_strategy

__all__ = [
    "ARMS",
    "CURATION_COLUMNS",
    "CurationSimulationConfig",
    "CurationSimulationResult",
    "inject_duplicates",
    "render_curation_html",
    "run_curation_simulation",
    "summarize_curation",
    "write_curation_outputs",
]

#: The three arms, in report order.
ARMS = ("curated", "active", "random")

CURATION_COLUMNS = (
    "arm",
    "seed",
    "round",
    "labels_spent",
    "n_train",
    "accuracy",
    "macro_f1",
    "wrong_share",
    "duplicate_pairs",
    "reviews",
    "reviews_total",
    "fixed_total",
    "removed_total",
    "removed_near_duplicate",
    "removed_confident",
    "plans_rejected",
    "curate_seconds",
)


@dataclass(frozen=True)
class CurationSimulationConfig:
    """Everything that defines a curation run; recorded in ``summary.json``.

    ``noise`` is the share of oracle answers that are wrong; ``duplicates`` the share of
    pool items that get a jittered near-duplicate copy; ``review_budget`` the label
    reviews per cycle; ``prune=False`` skips pruning (the review-only ablation);
    ``margin``, ``max_confident_share`` and ``min_per_class`` are
    :func:`~exemplar.curation.prune_plan`'s; a plan is applied when its validation
    accuracy drops by at most ``max_validation_drop``.
    """

    dataset: str
    model: str = "logreg"
    model_params: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    strategy: str = "default"
    seeds: int = 5
    initial: int = 20
    batch_size: int = 10
    cycles: int = 30
    test_size: float = 0.25
    split_seed: int = 0
    noise: float = 0.10
    duplicates: float = 0.30
    jitter: float = 0.1
    review_budget: int = 5
    folds: int = 5
    prune: bool = True
    margin: float = 0.5
    max_confident_share: float = 0.1
    min_per_class: int = 5
    max_validation_drop: float = 0.0
    jobs: int = 1

    def simulation_config(self) -> SimulationConfig:
        """The plain simulator's config with the same data, model and budget."""
        return SimulationConfig(
            dataset=self.dataset,
            model=self.model,
            model_params=self.model_params,
            device=self.device,
            strategies=(self.strategy, "random"),
            seeds=self.seeds,
            initial=self.initial,
            batch_size=self.batch_size,
            cycles=self.cycles,
            test_size=self.test_size,
            split_seed=self.split_seed,
            jobs=self.jobs,
        )


@dataclass
class CurationSimulationResult:
    """Per-round rows of every (arm, seed) plus the context the summary needs."""

    config: CurationSimulationConfig
    rows: list[dict[str, Any]]
    n_pool: int
    n_injected: int
    n_test: int
    full_data_accuracy: float
    resolved_strategy: str


def validate_curation_config(config: CurationSimulationConfig, dataset: Dataset) -> None:
    """Raise :class:`ConfigError` for any setting a curation run cannot use."""
    validate_config(config.simulation_config(), dataset)
    if dataset.is_text:
        raise ConfigError("a curation run needs feature rows (near duplicates are found on them)")
    if get_strategy(config.strategy).name == "random":
        raise ConfigError("give an active-learning strategy; random sampling is its own arm")
    checks = (
        (0.0 <= config.noise < 1.0, f"--noise must be in [0, 1), got {config.noise}"),
        (
            0.0 <= config.duplicates <= 1.0,
            f"--duplicates must be in [0, 1], got {config.duplicates}",
        ),
        (config.jitter >= 0, f"jitter must be >= 0, got {config.jitter}"),
        (config.review_budget >= 0, f"review_budget must be >= 0, got {config.review_budget}"),
        (config.folds >= 2, f"folds must be at least 2, got {config.folds}"),
        (0 < config.margin <= 1, f"margin must be in (0, 1], got {config.margin}"),
        (
            0 <= config.max_confident_share <= 1,
            f"max_confident_share must be in [0, 1], got {config.max_confident_share}",
        ),
        (config.min_per_class >= 0, f"min_per_class must be >= 0, got {config.min_per_class}"),
        (
            config.max_validation_drop >= 0,
            f"max_validation_drop must be >= 0, got {config.max_validation_drop}",
        ),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def inject_duplicates(
    X: np.ndarray, y: np.ndarray, share: float, seed: int, jitter: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Append a jittered copy of ``round(share * n)`` random items (``bench/pruning.py``).

    Gaussian noise of ``jitter`` feature standard deviations, clipped to the data's
    range; a copy keeps its item's label. Returns the grown ``X`` and ``y`` and, for each
    copy (rows ``n, n+1, ...``), the row it copies.
    """
    rng = np.random.default_rng([seed, 30_011])
    n_dup = round(share * len(y))
    src = np.sort(rng.choice(len(y), n_dup, replace=False)).astype(np.int64)
    noise = rng.normal(size=(n_dup, X.shape[1])) * (jitter * X.std(axis=0))
    copies = np.clip(X[src] + noise, X.min(), X.max()).astype(X.dtype)
    return np.vstack([X, copies]), np.concatenate([y, y[src]]), src


def run_curation_simulation(
    config: CurationSimulationConfig,
    dataset: Dataset,
    on_progress: Callable[[int], None] | None = None,
) -> CurationSimulationResult:
    """Run every (arm, seed) pair; ``on_progress`` gets finished rounds as they complete."""
    validate_curation_config(config, dataset)
    X = np.asarray(dataset.X, dtype=np.float64)
    X_pool, X_test, y_pool, y_test = train_test_split(
        X, dataset.y, test_size=config.test_size, stratify=dataset.y, random_state=config.split_seed
    )
    base = config.simulation_config()
    full = make_adapter(base, "random", seed=0).fit(X_pool, y_pool)
    full_acc = float(accuracy_score(y_test, full.predict_labels(X_test)))
    data = (X_pool, y_pool, X_test, y_test)
    tasks = [(arm, seed) for arm in ARMS for seed in range(config.seeds)]
    rows: list[dict[str, Any]] = []
    if config.jobs == 1:
        with threadpool_limits(limits=1):
            for arm, seed in tasks:
                for row in _run_arm(config, arm, seed, data):
                    rows.append(row)
                    if on_progress:
                        on_progress(1)
    else:
        parallel = Parallel(n_jobs=config.jobs, return_as="generator_unordered")
        for curve in parallel(delayed(_collect)(config, arm, seed, data) for arm, seed in tasks):
            rows.extend(curve)
            if on_progress:
                on_progress(len(curve))
    rows.sort(key=lambda r: (ARMS.index(str(r["arm"])), r["seed"], r["round"]))
    return CurationSimulationResult(
        config=config,
        rows=rows,
        n_pool=len(y_pool),
        n_injected=round(config.duplicates * len(y_pool)),
        n_test=len(y_test),
        full_data_accuracy=full_acc,
        resolved_strategy=get_strategy(config.strategy).name,
    )


_Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _collect(
    config: CurationSimulationConfig, arm: str, seed: int, data: _Data
) -> list[dict[str, Any]]:
    with threadpool_limits(limits=1):
        return list(_run_arm(config, arm, seed, data))


_COUNTS = (
    "reviews",
    "reviews_total",
    "fixed_total",
    "near_duplicate",
    "confident",
    "plans_rejected",
    "curate_seconds",
)


@dataclass
class _ArmState:
    """One arm's pool under one seed: what is labeled, removed, verified and counted."""

    X: np.ndarray
    truth: np.ndarray
    sources: np.ndarray
    pool: LabeledPool
    removed: np.ndarray
    verified: np.ndarray
    counts: dict[str, float]

    def train_rows(self) -> np.ndarray:
        """Labeled rows not pruned, in labeling order."""
        labeled = self.pool.labeled
        return labeled[~self.removed[labeled]]


def _run_arm(
    config: CurationSimulationConfig, arm: str, seed: int, data: _Data
) -> Iterator[dict[str, Any]]:
    """One curve: ``cycles + 1`` evaluations of one arm under one seed."""
    X_pool, y_pool, X_test, y_test = data
    X, truth, sources = inject_duplicates(X_pool, y_pool, config.duplicates, seed, config.jitter)
    oracle = SimulatedOracle(truth, noise_rate=config.noise, random_state=seed)
    state = _ArmState(
        X=X,
        truth=truth,
        sources=sources,
        pool=LabeledPool(len(truth)),
        removed=np.zeros(len(truth), dtype=bool),
        verified=np.zeros(len(truth), dtype=bool),
        counts=dict.fromkeys(_COUNTS, 0.0),
    )
    state.pool.label(*initial_set(seed, config.initial, oracle, len(truth)))
    strategy_name = "random" if arm == "random" else config.strategy
    base = config.simulation_config()
    for rnd in range(config.cycles + 1):
        rows = state.train_rows()
        model = make_adapter(base, strategy_name, seed)
        model.fit(X[rows], state.pool.labels_of(rows))
        yield _row(arm, seed, rnd, state, rows, model.predict_labels(X_test), y_test)
        if rnd == config.cycles:
            return
        _query(config, state, oracle, strategy_name, seed, rnd + 1, model)
        if arm == "curated":
            _curate(config, state, seed, rnd + 1)


def _query(
    config: CurationSimulationConfig,
    state: _ArmState,
    oracle: SimulatedOracle,
    name: str,
    seed: int,
    rnd: int,
    model: ModelAdapter,
) -> None:
    """Pick one batch with the arm's strategy (as the plain simulator does) and label it."""
    strategy = get_strategy(name)
    unlabeled, labeled = state.pool.unlabeled, state.pool.labeled
    predictions, reduced = None, None
    if strategy.requires:
        scored = score_pool(model, state.X, strategy, unlabeled=unlabeled)
        predictions, reduced = scored.predictions, scored.reduced
    picks = pick_batch(
        predictions,
        strategy,
        unlabeled,
        labeled,
        state.pool.y_labeled,
        batch_size=config.batch_size,
        seed=[seed, rnd],
        reduced=reduced,
    )
    picked = np.fromiter((p.row for p in picks), dtype=np.int64, count=len(picks))
    state.pool.label(picked, oracle.query(picked))


def _curate(config: CurationSimulationConfig, state: _ArmState, seed: int, rnd: int) -> None:
    """Review the top suspects of confident learning, then apply a validated prune plan."""
    t0 = time.perf_counter()
    state.counts["reviews"] = 0
    rows = _cross_validatable(state)
    if rows.size:
        run_seed = seed * 10_007 + rnd
        labels = state.pool.labels_of(rows)
        proba, classes = out_of_fold_proba(
            state.X[rows],
            labels,
            recipe=config.model,
            folds=config.folds,
            seed=run_seed,
            **config.model_params,
        )
        _review(config, state, rows, find_label_errors(proba, labels, classes).indices)
        if config.prune:
            _prune(config, state, rows, proba, classes, run_seed)
    state.counts["curate_seconds"] = time.perf_counter() - t0


def _cross_validatable(state: _ArmState) -> np.ndarray:
    """Training rows of the classes with at least two items (empty if under two classes)."""
    rows = state.train_rows()
    labels = state.pool.labels_of(rows)
    values, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, values[counts >= 2])
    return rows[keep] if (counts >= 2).sum() >= 2 else rows[:0]


def _review(
    config: CurationSimulationConfig, state: _ArmState, rows: np.ndarray, suspects: np.ndarray
) -> None:
    """The reviewer checks the first ``review_budget`` unverified suspects: true label back."""
    candidates = rows[suspects]
    chosen = candidates[~state.verified[candidates]][: config.review_budget]
    if not chosen.size:
        return
    before = state.pool.labels_of(chosen)
    state.pool.relabel(chosen, state.truth[chosen])
    state.verified[chosen] = True
    state.counts["reviews"] = int(chosen.size)
    state.counts["reviews_total"] += int(chosen.size)
    state.counts["fixed_total"] += int((before != state.truth[chosen]).sum())


def _prune(
    config: CurationSimulationConfig,
    state: _ArmState,
    rows: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    seed: int,
) -> None:
    """Propose a prune plan (verified exemplars are kept), validate it, apply it if it holds."""
    labels = state.pool.labels_of(rows)
    known = np.isin(labels, classes)  # a reviewed label may name a class left out of the folds
    rows, labels, proba = rows[known], labels[known], proba[known]
    plan = prune_plan(
        state.X[rows],
        labels,
        proba=proba,
        classes=classes,
        margin=config.margin,
        max_confident_share=config.max_confident_share,
        min_per_class=config.min_per_class,
    )
    kept = tuple(r for r in plan.removals if not state.verified[rows[r.index]])
    plan = PrunePlan(kept, plan.n_items, plan.radius)
    if not len(plan):
        return
    check = validate_plan(state.X[rows], labels, plan, recipe=config.model, seed=seed)
    if check.accuracy_after < check.accuracy_before - config.max_validation_drop:
        state.counts["plans_rejected"] += 1
        return
    state.removed[rows[plan.indices]] = True
    state.counts["near_duplicate"] += plan.count("near_duplicate")
    state.counts["confident"] += plan.count("confident")


def _row(
    arm: str,
    seed: int,
    rnd: int,
    state: _ArmState,
    rows: np.ndarray,
    pred: np.ndarray,
    y_test: np.ndarray,
) -> dict[str, Any]:
    """One line of ``results.csv``."""
    n_pool = len(state.truth) - len(state.sources)
    in_train = np.zeros(len(state.truth), dtype=bool)
    in_train[rows] = True
    pairs = int((in_train[state.sources] & in_train[n_pool + np.arange(len(state.sources))]).sum())
    c = state.counts
    return {
        "arm": arm,
        "seed": seed,
        "round": rnd,
        "labels_spent": int(state.pool.labeled.size),
        "n_train": int(rows.size),
        "accuracy": float(accuracy_score(y_test, pred)),
        "macro_f1": float(f1_score(y_test, pred, average="macro")),
        "wrong_share": float(np.mean(state.pool.labels_of(rows) != state.truth[rows])),
        "duplicate_pairs": pairs,
        "reviews": int(c["reviews"]),
        "reviews_total": int(c["reviews_total"]),
        "fixed_total": int(c["fixed_total"]),
        "removed_total": int(state.removed.sum()),
        "removed_near_duplicate": int(c["near_duplicate"]),
        "removed_confident": int(c["confident"]),
        "plans_rejected": int(c["plans_rejected"]),
        "curate_seconds": float(c["curate_seconds"]),
    }


# ---------------------------------------------------------------------------- summary


def curation_grid(result: CurationSimulationResult, arm: str, column: str) -> np.ndarray:
    """Rows of one arm as a (seeds, cycles + 1) array of ``column``."""
    cfg = result.config
    out = np.full((cfg.seeds, cfg.cycles + 1), np.nan)
    for row in result.rows:
        if row["arm"] == arm:
            out[int(row["seed"]), int(row["round"])] = float(row[column])
    return out


def _band(grid: np.ndarray) -> dict[str, list[float]]:
    std = grid.std(axis=0, ddof=1) if grid.shape[0] > 1 else np.zeros(grid.shape[1])
    return {"mean": grid.mean(axis=0).tolist(), "std": std.tolist()}


def summarize_curation(result: CurationSimulationResult) -> dict[str, Any]:
    """``summary.json``: per-arm final figures, curves, paired differences and a verdict."""
    arms: dict[str, dict[str, Any]] = {}
    final: dict[str, dict[str, np.ndarray]] = {}
    for arm in ARMS:
        grids = {c: curation_grid(result, arm, c) for c in CURATION_COLUMNS[3:]}
        final[arm] = {c: g[:, -1] for c, g in grids.items()}
        final[arm]["mean_accuracy"] = grids["accuracy"][:, 1:].mean(axis=1)
        arms[arm] = {
            "final": {c: float(v.mean()) for c, v in final[arm].items()},
            "final_accuracy_std": float(np.std(final[arm]["accuracy"], ddof=1))
            if result.config.seeds > 1
            else 0.0,
            "curves": {c: _band(grids[c]) for c in ("n_train", "accuracy", "wrong_share")},
        }
    ratio = final["curated"]["n_train"] / final["active"]["n_train"]
    pairs = (("curated", "active"), ("curated", "random"), ("active", "random"))
    diffs = {
        f"{a}_minus_{b}": {
            metric: paired_difference(
                final[a][metric].tolist(), final[b][metric].tolist()
            ).to_dict()
            for metric in ("accuracy", "mean_accuracy", "n_train", "wrong_share")
        }
        for a, b in pairs
    }
    summary: dict[str, Any] = {
        "config": asdict(result.config),
        "dataset": {
            "name": result.config.dataset,
            "n_pool": result.n_pool,
            "n_injected_copies": result.n_injected,
            "n_test": result.n_test,
        },
        "strategy": result.resolved_strategy,
        "full_data_accuracy": result.full_data_accuracy,
        "size_ratio_curated_active": {
            "mean": float(ratio.mean()),
            "per_seed": ratio.tolist(),
        },
        "arms": arms,
        "paired": diffs,
    }
    summary["verdict"] = _curation_verdict(result, summary)
    return summary


def _ci_text(d: dict[str, Any]) -> str:
    if d["ci_low"] is None:
        return f"{d['mean']:+.3f} (one seed, no interval)"
    return f"{d['mean']:+.3f} [95% CI {d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def _curation_verdict(result: CurationSimulationResult, summary: dict[str, Any]) -> str:
    cfg = result.config
    cur, act = summary["arms"]["curated"]["final"], summary["arms"]["active"]["final"]
    diff = summary["paired"]["curated_minus_active"]["accuracy"]
    vs_random = summary["paired"]["curated_minus_random"]["accuracy"]
    ratio = summary["size_ratio_curated_active"]["mean"]
    if diff["ci_low"] is not None and diff["ci_low"] > 0:
        call = "smaller and better"
    elif diff["ci_high"] is not None and diff["ci_high"] < 0:
        call = "smaller but worse"
    else:
        call = "smaller, with no significant accuracy difference"
    if ratio >= 1:
        call = "not smaller"
    return (
        f"On {cfg.dataset} ({cfg.noise:.0%} wrong oracle answers, {cfg.duplicates:.0%} of the "
        f"pool copied), after {cfg.cycles} cycles and {act['labels_spent']:.0f} labels, the "
        f"curated training set holds {cur['n_train']:.0f} items against {act['n_train']:.0f} "
        f"for plain active learning ({ratio:.0%}), {cur['wrong_share']:.1%} wrong labels "
        f"against {act['wrong_share']:.1%}, after {cur['reviews_total']:.0f} reviews. Test "
        f"accuracy curated - active: {_ci_text(diff)}; curated - random: "
        f"{_ci_text(vs_random)} ({cfg.seeds} paired seeds): {call}."
    )


# ---------------------------------------------------------------------------- report


PLOTS = (
    ("n_train", "Training set size", "labeled items trained on"),
    ("accuracy", "Test accuracy", "test accuracy"),
    ("wrong_share", "Wrong labels in training", "share of training labels that are wrong"),
)


#: Line style and width per arm: active is drawn wide so random's dashes over it stay readable
#: where the two coincide (both train on every label they spend).
_STYLE = {"curated": ("-", 1.6), "active": ("-", 3.0), "random": ("--", 1.6)}


def _plot_arms(summary: dict[str, Any], column: str, ylabel: str) -> str:
    """Mean ± 1 std over seeds of ``column`` against the cycle, one line per arm (base64 PNG)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for arm in ARMS:
        band = summary["arms"][arm]["curves"][column]
        mean, std = np.asarray(band["mean"]), np.asarray(band["std"])
        x = np.arange(mean.size)
        style, width = _STYLE[arm]
        (line,) = ax.plot(x, mean, style, label=arm, linewidth=width)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    if column == "accuracy":
        ax.axhline(
            summary["full_data_accuracy"],
            color="grey",
            linestyle=":",
            linewidth=1,
            label="all clean labels",
        )
    ax.set_xlabel("cycle")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_curation_html(result: CurationSimulationResult, summary: dict[str, Any]) -> str:
    """One self-contained page: verdict, the three curves, the per-arm and paired tables."""
    esc = html.escape
    cfg = result.config
    seeds = cfg.seeds
    plots = "".join(
        f'<figure id="plot-{column}"><img alt="{esc(title)} by cycle" '
        f'src="data:image/png;base64,{_plot_arms(summary, column, ylabel)}">'
        f"<figcaption>{esc(title)}: mean ± 1 std over {seeds} seeds; cycle k spends "
        f"{cfg.initial} + {cfg.batch_size}·k labels</figcaption></figure>"
        for column, title, ylabel in PLOTS
    )
    arm_rows = "".join(
        f"<tr><td>{arm}</td><td>{f['labels_spent']:.0f}</td><td>{f['n_train']:.0f}</td>"
        f"<td>{f['accuracy']:.3f} ± {s['final_accuracy_std']:.3f}</td>"
        f"<td>{f['wrong_share']:.1%}</td><td>{f['duplicate_pairs']:.1f}</td>"
        f"<td>{f['reviews_total']:.0f} ({f['fixed_total']:.0f} fixed)</td>"
        f"<td>{f['removed_near_duplicate']:.0f} / {f['removed_confident']:.0f}</td></tr>"
        for arm, s in summary["arms"].items()
        for f in (s["final"],)
    )
    paired_rows = "".join(
        f"<tr><td>{esc(name.replace('_minus_', ' − '))}</td>"
        f"<td>{esc(_ci_text(d['accuracy']))}</td><td>{esc(_ci_text(d['mean_accuracy']))}</td>"
        f"<td>{d['n_train']['mean']:+.1f}</td></tr>"
        for name, d in summary["paired"].items()
    )
    config_txt = esc(json.dumps(summary["config"], indent=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>exemplar curation run: {esc(result.config.dataset)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}figure{{display:inline-block;margin:0 1em 1em 0}}
img{{max-width:520px}}.verdict{{background:#f3f6ff;border-left:4px solid #3557c4;padding:.8em 1em}}
.small{{color:#666;font-size:.9em}}
</style></head><body>
<h1>Curation run on {esc(result.config.dataset)}: smaller and better?</h1>
<p class="verdict" id="verdict">{esc(summary["verdict"])}</p>
{plots}
<h2>After the last cycle (mean over seeds)</h2>
<table id="arms"><tr><th>arm</th><th>labels spent</th><th>training set</th>
<th>test accuracy</th><th>wrong labels</th><th>duplicate pairs</th><th>reviews</th>
<th>pruned (duplicates / confident)</th></tr>{arm_rows}</table>
<h2>Paired differences</h2>
<table id="paired"><tr><th>arms</th><th>final accuracy</th><th>mean accuracy over cycles</th>
<th>training set size</th></tr>{paired_rows}</table>
<p class=small>Strategy {esc(result.resolved_strategy)}; pool {result.n_pool} items plus
{result.n_injected} injected copies, test {result.n_test}; accuracy with all clean pool labels
{result.full_data_accuracy:.3f}. Intervals are paired Student t over seeds.</p>
<h2>Configuration</h2><pre>{config_txt}</pre>
</body></html>
"""


def write_curation_outputs(
    result: CurationSimulationResult, summary: dict[str, Any], out_dir: Path
) -> dict[str, Path]:
    """``results.csv``, ``summary.json`` and ``report.html`` in ``out_dir`` (atomic writes)."""
    page = render_curation_html(result, summary)
    return write_files(out_dir, result.rows, CURATION_COLUMNS, summary, page)
