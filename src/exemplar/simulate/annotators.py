"""Several simulated annotators of different accuracy: relabel an item, or label a new one?

Protocol (paired, like :mod:`exemplar.simulate.runner`):

* one fixed, stratified test split, never queried, scored against the ground truth;
* ``m`` simulated annotators with accuracies ``a_1..a_m``: annotator ``j`` gives an item
  its true class with probability ``a_j``, else one of the other classes at random. For
  a seed, each annotator's answer for each item, and the order in which annotators come
  to an item, are drawn once, so every arm hears the same answers;
* every arm starts from the same initial set, one label per item, and spends
  ``batch_size`` labels (annotations) per cycle;
* arms: ``activelab`` (each label goes to the lowest ActiveLab score, labeled or new:
  :mod:`exemplar.curation.relabel`), ``new_only`` (the least confident new items, one
  label each), ``fixed_k`` (the least confident new items, ``k`` labels each, for
  ``k = 2..m``), ``random`` (random new items, one label each). Every arm trains on the
  same consensus rule (model and annotators weighted by their estimated accuracy: one
  label of an item the model disputes may be outvoted), so arms differ only in where
  their labels go;
* the model's probabilities of labeled items, which the consensus reads, are
  out-of-sample (``cv_folds``-fold cross-validation), as ActiveLab prescribes.

Rows have the columns of the pool simulator (``n_labels`` counts annotations, so curves
compare labeling effort) plus ``n_items`` (items with a label), ``relabels`` (labels
spent on an item already labeled) and ``label_accuracy`` (share of the training labels
that are right).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from exemplar.curation.relabel import NO_LABEL, activelab_scores, majority_vote, plan_batch
from exemplar.data import Dataset
from exemplar.errors import ConfigError
from exemplar.metrics import paired_difference
from exemplar.models import ModelAdapter, get_recipe, make_model
from exemplar.simulate.report import render_html, write_files
from exemplar.simulate.runner import RESULT_COLUMNS, SimulationConfig, SimulationResult
from exemplar.simulate.summary import summarize

__all__ = [
    "ANNOTATOR_COLUMNS",
    "AnnotatorSimulationConfig",
    "annotator_arms",
    "run_annotator_simulation",
    "summarize_annotators",
    "write_annotator_outputs",
]

ANNOTATOR_COLUMNS = (*RESULT_COLUMNS, "n_items", "relabels", "label_accuracy")


@dataclass(frozen=True)
class AnnotatorSimulationConfig:
    """Everything that defines an annotators simulation; recorded in ``summary.json``."""

    dataset: str
    accuracies: tuple[float, ...] = (0.9, 0.75, 0.6)
    model: str = "logreg"
    model_params: dict[str, Any] = field(default_factory=dict)
    arms: tuple[str, ...] = ()
    seeds: int = 5
    initial: int = 20
    batch_size: int = 10
    cycles: int = 20
    test_size: float = 0.25
    split_seed: int = 0
    cv_folds: int = 3
    jobs: int = 1

    def resolved_arms(self) -> tuple[str, ...]:
        """The arms to run (all of :func:`annotator_arms` when none were named)."""
        return self.arms or annotator_arms(len(self.accuracies))


def annotator_arms(n_annotators: int) -> tuple[str, ...]:
    """ActiveLab, one label per new item, ``fixed_k`` for ``k = 2..n``, and random."""
    return ("activelab", "new_only", *(f"fixed_{k}" for k in range(2, n_annotators + 1)), "random")


def validate_annotator_config(config: AnnotatorSimulationConfig, dataset: Dataset) -> None:
    """Raise :class:`ConfigError` for a setting that cannot run on ``dataset``."""
    if not config.accuracies:
        raise ConfigError("give at least one annotator accuracy")
    if dataset.y is None:
        raise ConfigError(f"dataset {dataset.name!r} has no labels to simulate annotators from")
    n_classes = int(np.unique(dataset.y).size)
    for a in config.accuracies:
        if not 0.0 < a <= 1.0:
            raise ConfigError(f"annotator accuracies must be in (0, 1], got {a}")
    if n_classes < 2:
        raise ConfigError("the dataset needs at least two classes")
    known = set(annotator_arms(len(config.accuracies)))
    for arm in config.resolved_arms():
        if arm not in known:
            raise ConfigError(f"unknown arm {arm!r}; choose from {', '.join(sorted(known))}")
    if config.seeds < 1 or config.cycles < 0 or config.batch_size < 1 or config.initial < 2:
        raise ConfigError("seeds >= 1, cycles >= 0, batch_size >= 1 and initial >= 2 needed")
    if config.cv_folds < 2:
        raise ConfigError(f"cv_folds must be at least 2, got {config.cv_folds}")
    if config.jobs == 0 or config.jobs < -1:
        raise ConfigError(f"--jobs must be -1 (all cores) or at least 1, got {config.jobs}")
    if get_recipe(config.model).inputs != "rows":
        raise ConfigError(
            f"the annotators simulator needs a model of feature rows, not {config.model!r}"
        )
    n_pool = round(len(dataset.y) * (1 - config.test_size))
    need = config.initial + config.batch_size * config.cycles
    if need > n_pool:
        raise ConfigError(f"{need} labels asked of a pool of about {n_pool} items")


@dataclass
class _Crowd:
    """The annotators' fixed answers for one seed: ``answers[i, j]`` is annotator ``j``'s
    class for item ``i``, ``order[i]`` the order in which annotators come to item ``i``."""

    answers: np.ndarray
    order: np.ndarray

    @classmethod
    def draw(cls, y: np.ndarray, accuracies: tuple[float, ...], k: int, seed: int) -> _Crowd:
        rng = np.random.default_rng([seed, 0xA77])
        n, m = y.size, len(accuracies)
        right = rng.random((n, m)) < np.asarray(accuracies)[None, :]
        shift = rng.integers(1, k, size=(n, m))  # a wrong answer: any other class
        answers = np.where(right, y[:, None], (y[:, None] + shift) % k)
        order = np.argsort(rng.random((n, m)), axis=1)
        return cls(answers.astype(np.int64), order.astype(np.int64))


class _ArmState:
    """One arm's labels: ``given[i, j]`` is annotator ``j``'s label of item ``i``, or none."""

    def __init__(self, crowd: _Crowd) -> None:
        self.crowd = crowd
        self.given = np.full(crowd.answers.shape, NO_LABEL, dtype=np.int64)
        self.count = np.zeros(crowd.answers.shape[0], dtype=np.int64)
        self.spent = 0
        self.relabels = 0

    def ask(self, item: int) -> None:
        """One more label of ``item``, from the next annotator who has not labeled it."""
        j = int(self.crowd.order[item, self.count[item]])
        self.given[item, j] = self.crowd.answers[item, j]
        if self.count[item] > 0:
            self.relabels += 1
        self.count[item] += 1
        self.spent += 1

    @property
    def labeled(self) -> np.ndarray:
        return np.flatnonzero(self.count > 0)

    @property
    def unlabeled(self) -> np.ndarray:
        return np.flatnonzero(self.count == 0)


def _model(config: AnnotatorSimulationConfig, seed: int) -> ModelAdapter:
    return make_model(config.model, seed, **config.model_params)


def _proba(model: ModelAdapter, X: np.ndarray, k: int) -> np.ndarray:
    """The model's probabilities over all ``k`` classes (a class it never saw gets 0)."""
    proba = model.predict(X).require_proba()
    out = np.zeros((X.shape[0], k))
    out[:, np.asarray(model.classes_, dtype=np.int64)] = proba
    return out


def _out_of_sample(
    config: AnnotatorSimulationConfig, seed: int, X: np.ndarray, y: np.ndarray, k: int
) -> np.ndarray:
    """Cross-validated probabilities of the labeled items (each from a model not fit on it)."""
    counts = np.bincount(y, minlength=k)
    folds = min(config.cv_folds, int(counts[counts > 0].min()))
    if folds < 2:  # a class seen once: fall back to plain folds
        order = np.random.default_rng(seed).permutation(y.size)
        splits = [(np.setdiff1d(order, part), part) for part in np.array_split(order, 2)]
    else:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(X, y))
    out = np.full((y.size, k), 1.0 / k)
    for train, test in splits:
        if np.unique(y[train]).size < 2:
            continue
        out[test] = _proba(_model(config, seed).fit(X[train], y[train]), X[test], k)
    return out


def _train_labels(
    config: AnnotatorSimulationConfig, seed: int, state: _ArmState, X: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labeled items, the label each is trained on (the consensus), and their
    out-of-sample probabilities."""
    items = state.labeled
    given = state.given[items]
    votes = majority_vote(given, k)  # what the cross-validated models are fit on
    proba = _out_of_sample(config, seed, X[items], votes, k)
    return items, activelab_scores(given, proba).consensus, proba


def _curve(
    config: AnnotatorSimulationConfig,
    arm: str,
    seed: int,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    k: int,
) -> Iterator[dict[str, Any]]:
    """One learning curve of one arm under one seed (``cycles + 1`` evaluations)."""
    crowd = _Crowd.draw(y_pool, config.accuracies, k, seed)
    state = _ArmState(crowd)
    initial = np.random.default_rng([seed, 1_000_003]).permutation(y_pool.size)[: config.initial]
    for item in initial:
        state.ask(int(item))
    per_item = int(arm.split("_")[1]) if arm.startswith("fixed_") else 1
    query_seconds = 0.0
    batch_classes = int(np.unique(y_pool[initial]).size)
    for rnd in range(config.cycles + 1):
        items, train_y, proba_labeled = _train_labels(config, seed, state, X_pool, k)
        t0 = time.perf_counter()
        model = _model(config, seed).fit(X_pool[items], train_y)
        fit_seconds = time.perf_counter() - t0
        pred = model.predict_labels(X_test)
        yield {
            "strategy": arm,
            "seed": seed,
            "round": rnd,
            "n_labels": state.spent,
            "accuracy": float(accuracy_score(y_test, pred)),
            "macro_f1": float(f1_score(y_test, pred, average="macro")),
            "query_seconds": query_seconds,
            "fit_seconds": fit_seconds,
            "batch_classes": batch_classes,
            "labeled_classes": int(np.unique(train_y).size),
            "n_items": int(items.size),
            "relabels": state.relabels,
            "label_accuracy": float((train_y == y_pool[items]).mean()),
        }
        if rnd == config.cycles:
            return
        t0 = time.perf_counter()
        unlabeled = state.unlabeled
        rng = np.random.default_rng([seed, rnd, 0xBA7C])
        if arm == "random":
            chosen = rng.choice(
                unlabeled, size=min(config.batch_size, unlabeled.size), replace=False
            )
            asks = [int(i) for i in chosen]
        elif arm == "activelab":
            scores = activelab_scores(
                state.given[items], proba_labeled, _proba(model, X_pool[unlabeled], k)
            )
            plan = plan_batch(scores, state.given[items], config.batch_size)
            asks = [int(items[i] if kind == "relabel" else unlabeled[i]) for kind, i in plan.order]
        else:
            confidence = _proba(model, X_pool[unlabeled], k).max(axis=1)
            n_new = max(1, config.batch_size // per_item)
            chosen = unlabeled[np.argsort(confidence, kind="stable")[:n_new]]
            asks = [int(i) for i in chosen for _ in range(per_item)]
        for item in asks:
            state.ask(item)
        query_seconds = time.perf_counter() - t0
        batch_classes = int(np.unique(y_pool[np.unique(asks)]).size) if asks else 0


def _collect(*args: Any) -> list[dict[str, Any]]:
    with threadpool_limits(limits=1):
        return list(_curve(*args))


def run_annotator_simulation(
    config: AnnotatorSimulationConfig,
    dataset: Dataset,
    on_progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run every (arm, seed) pair; a :class:`SimulationResult` whose strategies are the arms.

    ``on_progress`` is called with the number of finished rounds as work completes.
    """
    validate_annotator_config(config, dataset)
    assert dataset.y is not None
    classes, y_all = np.unique(np.asarray(dataset.y), return_inverse=True)
    k = int(classes.size)
    X_pool, X_test, y_pool, y_test = train_test_split(
        dataset.X, y_all, test_size=config.test_size, stratify=y_all, random_state=config.split_seed
    )
    arms = config.resolved_arms()
    tasks = [(arm, seed) for arm in arms for seed in range(config.seeds)]
    rows: list[dict[str, Any]] = []
    if config.jobs == 1:
        with threadpool_limits(limits=1):
            for arm, seed in tasks:
                for row in _curve(config, arm, seed, X_pool, y_pool, X_test, y_test, k):
                    rows.append(row)
                    if on_progress:
                        on_progress(1)
    else:
        parallel = Parallel(n_jobs=config.jobs, return_as="generator_unordered")
        jobs = (
            delayed(_collect)(config, arm, seed, X_pool, y_pool, X_test, y_test, k)
            for arm, seed in tasks
        )
        for curve in parallel(jobs):
            rows.extend(curve)
            if on_progress:
                on_progress(len(curve))
    order = {arm: i for i, arm in enumerate(arms)}
    rows.sort(key=lambda r: (order[str(r["strategy"])], r["seed"], r["round"]))
    full = _model(config, 0).fit(X_pool, y_pool)
    full_pred = full.predict_labels(X_test)
    base = SimulationConfig(
        dataset=config.dataset,
        model=config.model,
        model_params=config.model_params,
        strategies=arms,
        seeds=config.seeds,
        initial=config.initial,
        batch_size=config.batch_size,
        cycles=config.cycles,
        test_size=config.test_size,
        split_seed=config.split_seed,
        jobs=config.jobs,
    )
    return SimulationResult(
        config=base,
        rows=rows,
        n_pool=int(y_pool.size),
        n_test=int(y_test.size),
        classes=np.arange(k),
        full_data_accuracy=float(accuracy_score(y_test, full_pred)),
        full_data_macro_f1=float(f1_score(y_test, full_pred, average="macro")),
    )


def summarize_annotators(
    result: SimulationResult, config: AnnotatorSimulationConfig
) -> dict[str, Any]:
    """The pool simulator's summary (AULC per arm, paired CIs vs random) plus, per arm, the
    final relabel share and label accuracy, ActiveLab's paired AULC difference against
    every other arm, and a plain verdict."""
    summary = summarize(result)
    arms = list(result.config.strategies)
    final: dict[str, dict[str, float]] = {}
    for arm in arms:
        last = [
            r for r in result.rows if r["strategy"] == arm and r["round"] == result.config.cycles
        ]
        final[arm] = {
            "labels_spent": float(np.mean([r["n_labels"] for r in last])),
            "items": float(np.mean([r["n_items"] for r in last])),
            "relabels": float(np.mean([r["relabels"] for r in last])),
            "label_accuracy": float(np.mean([r["label_accuracy"] for r in last])),
            "accuracy": float(np.mean([r["accuracy"] for r in last])),
        }
    versus: dict[str, Any] = {}
    if "activelab" in arms:
        mine = summary["strategies"]["activelab"]["aulc_per_seed"]
        for arm in arms:
            if arm != "activelab":
                other = summary["strategies"][arm]["aulc_per_seed"]
                versus[arm] = paired_difference(mine, other).to_dict()
    summary["annotators"] = {
        "accuracies": list(config.accuracies),
        "cv_folds": config.cv_folds,
        "final": final,
        "activelab_vs": versus,
        "verdict": _verdict(config, final, versus),
    }
    summary["config"]["accuracies"] = list(config.accuracies)
    return summary


def _verdict(
    config: AnnotatorSimulationConfig, final: dict[str, dict[str, float]], versus: dict[str, Any]
) -> str:
    if not versus:
        return "ActiveLab was not run; no claim about relabeling is made."
    acc = ", ".join(f"{a:.2f}" for a in config.accuracies)
    parts = []
    for arm, d in versus.items():
        if d["ci_low"] is None:
            parts.append(f"vs {arm}: {d['mean']:+.3f} (one seed, no interval)")
            continue
        call = (
            "better" if d["ci_low"] > 0 else "worse" if d["ci_high"] < 0 else "no clear difference"
        )
        parts.append(
            f"vs {arm}: {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] ({call})"
        )
    al = final["activelab"]
    share = al["relabels"] / al["labels_spent"] if al["labels_spent"] else 0.0
    return (
        f"With annotators of accuracy {acc} on {config.dataset}, ActiveLab spent "
        f"{share:.0%} of its labels on relabeling; its training labels were "
        f"{al['label_accuracy']:.1%} right. Paired AULC difference of ActiveLab "
        + "; ".join(parts)
        + "."
    )


def write_annotator_outputs(
    result: SimulationResult, summary: dict[str, Any], out_dir: Any
) -> dict[str, Any]:
    """``results.csv``, ``summary.json`` and ``report.html`` (the pool report plus an
    annotators section)."""
    page = render_html(result, summary)
    page = page.replace(
        "<h1>Active learning vs random", "<h1>Annotators: relabel or new, vs random"
    )
    page = page.replace("</body>", _section(summary) + "</body>", 1)
    return write_files(out_dir, result.rows, ANNOTATOR_COLUMNS, summary, page)


def _section(summary: dict[str, Any]) -> str:
    import html

    info = summary["annotators"]
    rows = "".join(
        f"<tr><td>{html.escape(arm)}</td><td>{f['labels_spent']:.0f}</td><td>{f['items']:.0f}</td>"
        f"<td>{f['relabels']:.0f}</td><td>{f['label_accuracy']:.3f}</td><td>{f['accuracy']:.3f}</td></tr>"
        for arm, f in info["final"].items()
    )
    return (
        '<h2>Annotators</h2><p class="verdict" id="annotators-verdict">'
        f"{html.escape(info['verdict'])}</p>"
        '<table id="annotators"><tr><th>arm</th><th>labels spent</th><th>items labeled</th>'
        "<th>relabels</th><th>training-label accuracy</th><th>test accuracy</th></tr>"
        f"{rows}</table>\n"
    )
