"""Replay a fully labeled dataset through the active-learning loop, strategy by strategy.

Protocol (paired, so differences between strategies are not luck of the draw):

* one fixed, stratified test split (``split_seed``), never queried;
* for each seed, the same initial labeled set for every strategy, drawn at random from
  the pool (extended one random item at a time until it holds two classes);
* the same model recipe for every strategy, random included, retrained from scratch
  each round;
* each cycle scores the pool with :func:`~exemplar.loop.score_pool` and picks its batch with
  :func:`~exemplar.loop.pick_batch`, the selection rule of a project's ``select`` state;
* labels come from the :class:`~exemplar.loop.SimulatedOracle` a project with oracle kind
  ``simulated`` uses, which reveals a label only when an item is selected.

Vocabulary as in projects: ``batch_size`` labels per cycle, ``cycles`` query cycles (the
``round`` column of ``results.csv`` counts them: round 0 is the initial set).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from exemplar.data import Dataset
from exemplar.errors import ConfigError
from exemplar.loop import LabeledPool, SimulatedOracle, pick_batch, score_pool
from exemplar.models import ModelAdapter, family_of, get_recipe, make_model
from exemplar.strategies import ALBL, get_strategy

__all__ = ["SimulationConfig", "SimulationResult", "run_simulation", "validate_config"]

RESULT_COLUMNS = (
    "strategy",
    "seed",
    "round",
    "n_labels",
    "accuracy",
    "macro_f1",
    "query_seconds",
    "fit_seconds",
    "batch_classes",
    "labeled_classes",
    "arm",
)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulation; recorded in ``summary.json``."""

    dataset: str
    model: str = "logreg"
    model_params: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    strategies: tuple[str, ...] = ("default", "random")
    seeds: int = 5
    initial: int = 20
    batch_size: int = 10
    cycles: int = 30
    test_size: float = 0.25
    split_seed: int = 0
    committee_size: int = 5
    noise_rate: float = 0.0
    label_cost: float = 1.0
    engineering_cost: float = 0.0
    jobs: int = 1


@dataclass
class SimulationResult:
    """Per-round rows plus the context the summary needs."""

    config: SimulationConfig
    rows: list[dict[str, Any]]
    n_pool: int
    n_test: int
    classes: np.ndarray
    full_data_accuracy: float
    full_data_macro_f1: float
    resolved: dict[str, str] = field(default_factory=dict)


def run_simulation(
    config: SimulationConfig,
    dataset: Dataset,
    on_progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run every (strategy, seed) pair and return all learning-curve rows.

    ``on_progress`` is called with the number of finished rounds as work completes
    (``len(strategies) * seeds * (cycles + 1)`` in total).
    """
    validate_config(config, dataset)
    X_pool, X_test, y_pool, y_test = train_test_split(
        dataset.X,
        dataset.y,
        test_size=config.test_size,
        stratify=dataset.y,
        random_state=config.split_seed,
    )
    resolved = {name: get_strategy(name).name for name in config.strategies}
    full = make_adapter(config, "random", seed=0).fit(X_pool, y_pool)
    full_pred = full.predict_labels(X_test)
    tasks = [(name, seed) for name in config.strategies for seed in range(config.seeds)]
    rows: list[dict[str, Any]] = []
    if config.jobs == 1:
        with threadpool_limits(limits=1):
            for name, seed in tasks:
                for row in _run_curve(config, name, seed, X_pool, y_pool, X_test, y_test):
                    rows.append(row)
                    if on_progress:
                        on_progress(1)
    else:
        parallel = Parallel(n_jobs=config.jobs, return_as="generator_unordered")
        jobs = (
            delayed(_collect)(config, name, seed, X_pool, y_pool, X_test, y_test)
            for name, seed in tasks
        )
        for curve in parallel(jobs):
            rows.extend(curve)
            if on_progress:
                on_progress(len(curve))
    order = {name: i for i, name in enumerate(config.strategies)}
    rows.sort(key=lambda r: (order[str(r["strategy"])], r["seed"], r["round"]))
    return SimulationResult(
        config=config,
        rows=rows,
        n_pool=len(y_pool),
        n_test=len(y_test),
        classes=np.unique(y_pool),
        full_data_accuracy=float(accuracy_score(y_test, full_pred)),
        full_data_macro_f1=float(f1_score(y_test, full_pred, average="macro")),
        resolved=resolved,
    )


def _collect(
    config: SimulationConfig,
    name: str,
    seed: int,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
) -> list[dict[str, Any]]:
    with threadpool_limits(limits=1):
        if family_of(config.model).uses_torch:
            import torch  # one intra-op thread per worker: curves run side by side

            torch.set_num_threads(1)
        return list(_run_curve(config, name, seed, X_pool, y_pool, X_test, y_test))


def _run_curve(
    config: SimulationConfig,
    name: str,
    seed: int,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
) -> Iterator[dict[str, Any]]:
    """One learning curve: ``cycles + 1`` evaluations of one strategy under one seed.

    Callers run it under one BLAS thread: the matrices are small, so a second thread
    only adds contention (measured 10x slower logistic-regression fits on 2 cores), and
    parallelism comes from running curves side by side instead.
    """
    strategy = get_strategy(name)
    oracle = SimulatedOracle(y_pool, noise_rate=config.noise_rate, random_state=seed)
    pool = LabeledPool(len(y_pool))
    initial, initial_labels = initial_set(seed, config.initial, oracle, len(y_pool))
    pool.label(initial, initial_labels)
    query_seconds = 0.0
    batch_classes = len(np.unique(pool.y_labeled))
    arm = ""  # the ALBL arm that picked the batch this round added
    for rnd in range(config.cycles + 1):
        labeled = pool.labeled
        model = make_adapter(config, name, seed)
        t0 = time.perf_counter()
        model.fit(X_pool[labeled], pool.y_labeled)
        fit_seconds = time.perf_counter() - t0
        if isinstance(strategy, ALBL):  # the bandit's reward hook, after retraining
            strategy.observe(labeled, pool.y_labeled)
        pred = model.predict_labels(X_test)
        yield {
            "strategy": name,
            "seed": seed,
            "round": rnd,
            "n_labels": int(labeled.size),
            "accuracy": float(accuracy_score(y_test, pred)),
            "macro_f1": float(f1_score(y_test, pred, average="macro")),
            "query_seconds": query_seconds,
            "fit_seconds": fit_seconds,
            "batch_classes": batch_classes,
            "labeled_classes": int(np.unique(pool.y_labeled).size),
            "arm": arm,
        }
        if rnd == config.cycles:
            return
        t0 = time.perf_counter()
        unlabeled = pool.unlabeled
        predictions, reduced = None, None
        if strategy.requires:
            scored = score_pool(model, X_pool, strategy, unlabeled=unlabeled)
            predictions, reduced = scored.predictions, scored.reduced
        picks = pick_batch(
            predictions,
            strategy,
            unlabeled,
            labeled,
            pool.y_labeled,
            batch_size=config.batch_size,
            seed=[seed, rnd],
            reduced=reduced,
        )
        query_seconds = time.perf_counter() - t0
        arm = (strategy.last_arm or "") if isinstance(strategy, ALBL) else ""
        picked = np.fromiter((p.row for p in picks), dtype=np.int64, count=len(picks))
        labels = oracle.query(picked)
        pool.label(picked, labels)
        batch_classes = len(np.unique(labels))


def initial_set(
    seed: int, size: int, oracle: SimulatedOracle, n_pool: int
) -> tuple[np.ndarray, np.ndarray]:
    """A random initial set, labeled by the oracle, grown one random item at a time until
    it covers two classes (what a user would do before any model can be trained).

    The draw depends only on the seed, so every strategy starts from the same set.
    """
    order = np.random.default_rng([seed, 1_000_003]).permutation(n_pool)
    chosen = order[:size]
    labels = oracle.query(chosen)
    for extra in order[size:]:
        if np.unique(labels).size >= 2:
            break
        chosen = np.append(chosen, extra)
        labels = np.append(labels, oracle.query(np.asarray([extra])))
    return chosen.astype(np.int64), labels


def make_adapter(config: SimulationConfig, name: str, seed: int) -> ModelAdapter:
    """A fresh model of ``config``'s recipe, with the outputs strategy ``name`` reads."""
    return make_model(
        config.model,
        seed,
        samples="samples" in get_strategy(name).requires,
        committee_size=config.committee_size,
        device=config.device,
        **config.model_params,
    )


def validate_config(config: SimulationConfig, dataset: Dataset) -> None:
    """Raise :class:`ConfigError` for any setting that cannot run on ``dataset``."""
    if dataset.y is None:
        raise ConfigError(
            f"dataset {dataset.name!r} has no labels; a simulation needs ground truth "
            "(give --label-column for CSV/npy files)"
        )
    if not config.strategies:
        raise ConfigError("give at least one strategy")
    for key in ("seeds", "initial", "batch_size"):
        if getattr(config, key) < 1:
            flag = key.replace("_", "-")
            raise ConfigError(f"--{flag} must be at least 1, got {getattr(config, key)}")
    if config.cycles < 0:
        raise ConfigError(f"--cycles must be >= 0, got {config.cycles}")
    if not 0.0 < config.test_size < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {config.test_size}")
    if config.jobs == 0 or config.jobs < -1:
        raise ConfigError(f"--jobs must be -1 (all cores) or at least 1, got {config.jobs}")
    for name in config.strategies:
        get_strategy(name)
    recipe = get_recipe(config.model)
    make_model(config.model, device=config.device, **config.model_params)  # checks params
    holds_text = dataset.is_text
    if recipe.reads_text != holds_text:
        held = "texts" if holds_text else "feature rows"
        raise ConfigError(
            f"dataset {dataset.name!r} holds {held} but model {config.model!r} reads "
            + (
                "texts (use minilm-logreg or minilm-mlp only on text data)"
                if recipe.reads_text
                else "feature rows; use --model minilm-logreg or minilm-mlp"
            )
        )
    _, counts = np.unique(dataset.y, return_counts=True)
    if counts.size < 2:
        raise ConfigError(f"dataset {dataset.name!r} has a single class; nothing to learn")
    if counts.min() < 2:
        raise ConfigError(
            f"dataset {dataset.name!r} has a class with a single item; a stratified test "
            "split needs at least two items per class"
        )
    n_pool = dataset.n_items - math.ceil(config.test_size * dataset.n_items)
    budget = config.initial + config.batch_size * config.cycles
    if budget > n_pool:
        raise ConfigError(
            f"budget of {budget} labels (initial {config.initial} + {config.cycles} cycles × "
            f"batch size {config.batch_size}) exceeds the pool of {n_pool} items; "
            "lower --cycles or --batch-size"
        )
