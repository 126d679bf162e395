"""Membership-query synthesis (the first scenario of active learning), in the simulator only.

In query synthesis the learner does not pick items from a pool: it *constructs* the point it
wants labeled (Angluin 1988, "Queries and concept learning"; Settles 2009, "Active learning
literature survey", §2.1). Here the construction follows the decision boundary: for a pair of
nearest labeled neighbours with different labels, bisect the segment between them with the
current model until its predicted class flips, which yields a point on the model's current
decision boundary (the line-search queries of Baum & Lang 1991, "Constructing hidden units
using examples and queries"). Half of each batch (``explore``) pairs uniform random points of
the data's range with labeled points instead, so queries can leave the convex hull of the
labeled set. A batch spreads its queries along the boundary by farthest-first traversal.

Nobody can label a synthesized point from a dataset's ground truth, so an **oracle model**
answers for the annotator: a model fit on the ground truth of the whole *pool* (never on the
test split), by default a random forest, a different family from the default learner so that
the learner cannot copy the oracle's own function. The oracle is no perfect annotator: it
labels any point, even a blend of two digits that a person would refuse or mislabel (Lang &
Baum 1992, "Query learning can work poorly when a human oracle is used"), and it errs on real
points it was not fit on (its held-out test accuracy is reported). The report measures, for
boundary and exploration queries separately, how far they lie from real items and how sure
the oracle is on them. Label noise (``noise_rate``) is refused: the oracle's answers carry none.

Protocol, paired with the pool-based simulator (:mod:`exemplar.simulate.runner`): the same
fixed test split, the same initial labeled set per seed, the same model recipe retrained from
scratch each cycle, the same label count per cycle. The pool-based arms run with
:func:`~exemplar.simulate.run_simulation` (true labels from the pool); the ``synthesis`` arm
starts from the same real initial labels and then adds ``batch_size`` synthesized points per
cycle, labeled by the oracle model.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, pairwise_distances_argmin_min
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from exemplar.data import Dataset
from exemplar.errors import ConfigError
from exemplar.loop import SimulatedOracle
from exemplar.metrics import paired_difference
from exemplar.models import ModelAdapter, family_of, get_recipe
from exemplar.simulate.report import render_html, write_files
from exemplar.simulate.runner import (
    RESULT_COLUMNS,
    SimulationConfig,
    SimulationResult,
    initial_set,
    make_adapter,
    run_simulation,
    validate_config,
)
from exemplar.simulate.summary import json_safe, summarize

__all__ = [
    "ORACLES",
    "SYNTHESIS_ARM",
    "SYNTHESIS_COLUMNS",
    "SynthesisConfig",
    "SynthesisResult",
    "make_oracle",
    "run_synthesis_simulation",
    "summarize_synthesis",
    "synthesize_batch",
    "validate_synthesis_config",
    "write_synthesis_outputs",
]

#: Name of the synthesis arm in ``results.csv`` and ``summary.json``.
SYNTHESIS_ARM = "synthesis"

#: Oracle models that label synthesized points (fit on the pool's full ground truth).
ORACLES = ("random_forest", "knn", "recipe")

#: Extra columns of the synthesis arm's rows (empty for the pool-based arms): the query
#: distance ratio and the oracle's mean confidence over the whole batch, then separately over
#: its boundary queries (between labeled points) and its exploration queries.
SYNTHESIS_COLUMNS = (
    "n_synthesized",
    "offmanifold_ratio",
    "oracle_confidence",
    "offmanifold_ratio_boundary",
    "offmanifold_ratio_explore",
    "oracle_confidence_boundary",
    "oracle_confidence_explore",
)


@dataclass(frozen=True)
class SynthesisConfig:
    """A synthesis simulation: the pool-based protocol plus the synthesis settings.

    Parameters
    ----------
    simulation : SimulationConfig
        The shared protocol (dataset, model, seeds, initial, batch_size, cycles, test_size,
        jobs) and the pool-based strategies compared with synthesis (``"synthesis"`` in that
        list is ignored: the arm always runs).
    oracle : {"random_forest", "knn", "recipe"}, default="random_forest"
        The model that labels synthesized points, fit on the whole pool's ground truth:
        a 300-tree random forest, a 5-nearest-neighbour vote on standardized features, or
        the learner's own recipe (optimistic: the learner can then recover the oracle).
    neighbours : int, default=3
        Differently labeled nearest neighbours paired with each labeled point.
    bisection_steps : int, default=12
        Halvings of each segment: the query lies within ``2**-steps`` of the segment length
        from the model's decision boundary.
    explore : float, default=0.5
        Share of each batch found from uniform random points of the data's range instead
        of between labeled points (see :func:`synthesize_batch`).
    """

    simulation: SimulationConfig
    oracle: str = "random_forest"
    neighbours: int = 3
    bisection_steps: int = 12
    explore: float = 0.5

    @property
    def pool_strategies(self) -> tuple[str, ...]:
        """The pool-based arms, in the given order, without the synthesis arm."""
        return tuple(s for s in self.simulation.strategies if s != SYNTHESIS_ARM)


@dataclass
class SynthesisResult:
    """All arms' rows (as a :class:`SimulationResult` with the ``synthesis`` arm last) plus
    what the synthesis report adds: the oracle's test accuracy and the off-manifold reference."""

    config: SynthesisConfig
    result: SimulationResult
    oracle_accuracy: float
    oracle_test_confidence: float
    n_features: int
    extra: dict[str, Any] = field(default_factory=dict)


def make_oracle(name: str, seed: int = 0) -> ClassifierMixin:
    """An unfitted oracle model ``name`` (one of :data:`ORACLES` except ``"recipe"``)."""
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=300, n_jobs=1, random_state=seed)
    if name == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))
    raise ConfigError(f"unknown oracle {name!r}; choose one of {', '.join(ORACLES)}")


def validate_synthesis_config(config: SynthesisConfig, dataset: Dataset) -> None:
    """Raise :class:`ConfigError` for any setting a synthesis simulation cannot run."""
    if dataset.is_text or dataset.kind != "features":
        raise ConfigError(
            f"query synthesis constructs feature rows; dataset {dataset.name!r} holds texts "
            "(use a feature dataset such as wine, breast_cancer or digits)"
        )
    recipe = get_recipe(config.simulation.model)
    if recipe.reads_text or recipe.reads_files:
        raise ConfigError(
            f"query synthesis needs a model that reads feature rows; {recipe.name!r} does not"
        )
    if not config.pool_strategies:
        raise ConfigError(
            "give at least one pool-based strategy to compare synthesis with "
            "(for example --strategies default,random)"
        )
    if config.oracle not in ORACLES:
        raise ConfigError(f"unknown oracle {config.oracle!r}; choose one of {', '.join(ORACLES)}")
    if config.neighbours < 1:
        raise ConfigError(f"neighbours must be at least 1, got {config.neighbours}")
    if not 1 <= config.bisection_steps <= 50:
        raise ConfigError(f"bisection_steps must be in [1, 50], got {config.bisection_steps}")
    if not 0.0 <= config.explore <= 1.0:
        raise ConfigError(f"explore must be in [0, 1], got {config.explore}")
    if config.simulation.noise_rate != 0.0:
        raise ConfigError(
            f"noise_rate={config.simulation.noise_rate} is not supported with query synthesis: "
            "the oracle model answers synthesized points without label noise, so the pool "
            "arms' noisy labels would not be paired with it (use noise_rate 0)"
        )
    validate_config(replace(config.simulation, strategies=config.pool_strategies), dataset)


def synthesize_batch(
    model: ModelAdapter,
    X_labeled: np.ndarray,
    y_labeled: np.ndarray,
    batch_size: int,
    *,
    center: np.ndarray,
    scale: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
    neighbours: int = 3,
    steps: int = 12,
    explore: float = 0.5,
) -> np.ndarray:
    """Synthesize ``batch_size`` query points on the current model's decision boundary.

    For each labeled point, its ``neighbours`` nearest labeled points of another class
    (Euclidean, on features standardized by ``center`` and ``scale``) form candidate pairs.
    Each pair whose endpoints the model predicts as different classes is bisected ``steps``
    times: the midpoint replaces the endpoint whose predicted class it shares, so the final
    midpoint lies on the boundary between the two predicted classes (Baum & Lang 1991).

    Segments between labeled points never leave the convex hull of the labeled set, so a
    share ``explore`` of the batch comes from *exploration* pairs instead: uniform random
    points of the data's box ``[low, high]``, each paired with the nearest labeled point the
    model predicts as another class, bisected the same way. Each part of the batch is chosen
    by farthest-first traversal (Gonzalez 1985) in the standardized space, starting from the
    labeled points, so queries spread along the boundary instead of piling up where it is
    already known. Points are clipped to ``[low, high]``. When too few nearest pairs straddle
    the boundary, every differently labeled pair is tried (the ``50 * batch_size`` shortest),
    then exploration pairs fill the rest (even with ``explore=0``: a model that predicts one
    class on every labeled point has no boundary between them); when even those are missing
    (a model that predicts one class everywhere), random points on segments between
    differently labeled points fill the batch.

    Parameters
    ----------
    model : ModelAdapter
        The current learner, already fit on ``X_labeled``; only ``predict_labels`` is used.
    X_labeled, y_labeled : ndarray
        The labeled set (real items and earlier synthesized points) and its labels; at
        least two classes.
    batch_size : int
        Points to return.
    center, scale : ndarray of shape (n_features,)
        Standardization used for distances (the pool's mean and standard deviation).
    low, high : ndarray of shape (n_features,)
        The data's range; every returned point lies inside it.
    rng : numpy.random.Generator
        Seeded generator for the exploration and fallback points.
    neighbours, steps : int
        Pairs per labeled point; halvings per segment.
    explore : float, default=0.5
        Share of the batch found from random points of the data's box (0: only between
        labeled points; 1: only exploration).

    Returns
    -------
    ndarray of shape (batch_size, n_features)
        The query points, float64: first those found between labeled points, then the
        exploration points.
    """
    points, _ = _synthesize(
        model,
        X_labeled,
        y_labeled,
        batch_size,
        center=center,
        scale=scale,
        low=low,
        high=high,
        rng=rng,
        neighbours=neighbours,
        steps=steps,
        explore=explore,
    )
    return points


def _synthesize(
    model: ModelAdapter,
    X_labeled: np.ndarray,
    y_labeled: np.ndarray,
    batch_size: int,
    *,
    center: np.ndarray,
    scale: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
    neighbours: int,
    steps: int,
    explore: float,
) -> tuple[np.ndarray, int]:
    """:func:`synthesize_batch`, plus how many of the points (the first ones) were found
    between labeled points rather than by exploration."""
    X = np.asarray(X_labeled, dtype=np.float64)
    y = np.asarray(y_labeled)
    if X.shape[0] != y.shape[0] or X.ndim != 2:
        raise ConfigError("X_labeled must be (n, d) and y_labeled (n,) with the same n")
    if np.unique(y).size < 2:
        raise ConfigError("synthesis needs labeled points of at least two classes")
    if not 0.0 <= explore <= 1.0:
        raise ConfigError(f"explore must be in [0, 1], got {explore}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    Z = (X - center) / scale
    pred = np.asarray(model.predict_labels(X))
    local = _local_candidates(model, X, y, Z, pred, neighbours, steps)
    far = _explore_candidates(
        model, X, Z, pred, 8 * batch_size, low, high, center, scale, rng, steps
    )
    n_far = min(round(explore * batch_size), far.shape[0])
    if local.shape[0] < batch_size - n_far and neighbours < X.shape[0] - 1:
        # Too few nearest pairs straddle the boundary: try every differently labeled pair.
        local = _local_candidates(
            model, X, y, Z, pred, X.shape[0] - 1, steps, max_pairs=50 * batch_size
        )
    n_local = min(batch_size - n_far, local.shape[0])
    n_far = min(batch_size - n_local, far.shape[0])  # still too few: explore more
    short = batch_size - n_local - n_far
    if short:  # no boundary to bisect (a model that predicts one class everywhere)
        local = np.vstack([local, _fallback(X, y, short, rng)])
        n_local += short
    local = np.clip(local, low, high)
    anchors = Z
    chosen = []
    if n_local:
        picks = local[_farthest_first((local - center) / scale, anchors, n_local)]
        chosen.append(picks)
        anchors = np.vstack([anchors, (picks - center) / scale])
    if n_far:
        far = np.clip(far, low, high)
        chosen.append(far[_farthest_first((far - center) / scale, anchors, n_far)])
    return np.vstack(chosen), n_local


def _local_candidates(
    model: ModelAdapter,
    X: np.ndarray,
    y: np.ndarray,
    Z: np.ndarray,
    pred: np.ndarray,
    neighbours: int,
    steps: int,
    max_pairs: int | None = None,
) -> np.ndarray:
    """Boundary points between each labeled point and its nearest differently labeled
    neighbours (only pairs the model predicts as different classes; the ``max_pairs``
    shortest pairs when given)."""
    sq = np.einsum("ij,ij->i", Z, Z)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * Z @ Z.T, 0.0)
    dist[y[:, None] == y[None, :]] = np.inf
    k = min(neighbours, X.shape[0] - 1)
    near = np.argpartition(dist, k - 1, axis=1)[:, :k]
    pairs = sorted(
        {
            (min(i, int(j)), max(i, int(j)))
            for i in range(X.shape[0])
            for j in near[i]
            if np.isfinite(dist[i, j]) and pred[i] != pred[int(j)]
        }
    )
    if not pairs:
        return np.empty((0, X.shape[1]))
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = sorted(pairs, key=lambda p: dist[p[0], p[1]])[:max_pairs]
    ia = np.fromiter((p[0] for p in pairs), dtype=np.int64)
    ib = np.fromiter((p[1] for p in pairs), dtype=np.int64)
    return _bisect(model, X[ia], X[ib], pred[ia], steps)


def _explore_candidates(
    model: ModelAdapter,
    X: np.ndarray,
    Z: np.ndarray,
    pred: np.ndarray,
    count: int,
    low: np.ndarray,
    high: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    rng: np.random.Generator,
    steps: int,
) -> np.ndarray:
    """Boundary points between uniform random points of the data's box and the nearest
    labeled point the model predicts as another class: they reach regions outside the
    convex hull of the labeled set, which segments between labeled points never leave."""
    U = rng.uniform(low, high, size=(count, X.shape[1]))
    pu = np.asarray(model.predict_labels(U))
    Zu = (U - center) / scale
    dist = (
        np.einsum("ij,ij->i", Zu, Zu)[:, None]
        + np.einsum("ij,ij->i", Z, Z)[None, :]
        - 2.0 * Zu @ Z.T
    )
    dist[pu[:, None] == pred[None, :]] = np.inf
    j = dist.argmin(axis=1)
    ok = np.isfinite(dist[np.arange(count), j])
    if not ok.any():
        return np.empty((0, X.shape[1]))
    return _bisect(model, U[ok], X[j[ok]], pu[ok], steps)


def _bisect(
    model: ModelAdapter, a: np.ndarray, b: np.ndarray, class_a: np.ndarray, steps: int
) -> np.ndarray:
    """Halve every segment ``a[i]``–``b[i]`` ``steps`` times, keeping ``a`` on ``class_a``'s
    side and ``b`` on the other, and return the final midpoints."""
    a, b = a.copy(), b.copy()
    for _ in range(steps):
        mid = (a + b) / 2.0
        same = np.asarray(model.predict_labels(mid)) == class_a
        a[same] = mid[same]
        b[~same] = mid[~same]
    return (a + b) / 2.0


def _fallback(X: np.ndarray, y: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random points on segments between random differently labeled points."""
    out = np.empty((count, X.shape[1]))
    for n in range(count):
        i = int(rng.integers(X.shape[0]))
        others = np.flatnonzero(y != y[i])
        j = int(others[rng.integers(others.size)])
        t = float(rng.uniform(0.25, 0.75))
        out[n] = (1.0 - t) * X[i] + t * X[j]
    return out


def _farthest_first(candidates: np.ndarray, anchors: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` candidates chosen greedily by largest distance to the anchors
    and the candidates already chosen (incremental k-center, one distance pass per pick).

    The distances to the anchors come from :func:`sklearn.metrics.pairwise_distances_argmin_min`
    (chunked), never a candidates × anchors × features array (1.9 GB on MNIST at 320 labels).
    """
    _, min_d = pairwise_distances_argmin_min(candidates, anchors)
    min_d = np.asarray(min_d, dtype=np.float64).copy()
    chosen: list[int] = []
    for _ in range(min(count, candidates.shape[0])):
        i = int(np.argmax(min_d))
        chosen.append(i)
        d = np.sqrt(((candidates - candidates[i]) ** 2).sum(axis=1))
        min_d = np.minimum(min_d, d)
        min_d[i] = -1.0
    return np.asarray(chosen, dtype=np.int64)


def run_synthesis_simulation(
    config: SynthesisConfig,
    dataset: Dataset,
    on_progress: Callable[[int], None] | None = None,
) -> SynthesisResult:
    """Run the pool-based arms and the synthesis arm with paired seeds.

    ``on_progress`` is called with the number of finished rounds
    (``(len(pool_strategies) + 1) * seeds * (cycles + 1)`` in total).
    """
    validate_synthesis_config(config, dataset)
    sim = config.simulation
    pool_config = replace(sim, strategies=config.pool_strategies)
    pool_result = run_simulation(pool_config, dataset, on_progress=on_progress)
    X_pool, X_test, y_pool, y_test = train_test_split(
        dataset.X,
        dataset.y,
        test_size=sim.test_size,
        stratify=dataset.y,
        random_state=sim.split_seed,
    )
    # The learner sees the data in its own dtype (as the pool arms do: float32 MNIST stays
    # float32, so round 0 is the same model); float64 is only for the geometry.
    X_pool, X_test = np.asarray(X_pool), np.asarray(X_test)
    oracle = _fit_oracle(config, X_pool, y_pool)
    oracle_proba = oracle.predict_proba(X_test)
    oracle_accuracy = float(accuracy_score(y_test, oracle.classes_[oracle_proba.argmax(axis=1)]))
    ref = _Reference.of(np.asarray(X_pool, dtype=np.float64))
    seeds = range(sim.seeds)
    rows: list[dict[str, Any]] = []
    if sim.jobs == 1:
        with threadpool_limits(limits=1):
            for seed in seeds:
                for row in _synthesis_curve(
                    config, seed, X_pool, y_pool, X_test, y_test, oracle, ref
                ):
                    rows.append(row)
                    if on_progress:
                        on_progress(1)
    else:
        parallel = Parallel(n_jobs=sim.jobs, return_as="generator_unordered")
        jobs = (
            delayed(_collect)(config, seed, X_pool, y_pool, X_test, y_test, oracle, ref)
            for seed in seeds
        )
        for curve in parallel(jobs):
            rows.extend(curve)
            if on_progress:
                on_progress(len(curve))
    rows.sort(key=lambda r: (r["seed"], r["round"]))
    merged = replace(
        pool_result,
        config=replace(pool_config, strategies=(*config.pool_strategies, SYNTHESIS_ARM)),
        rows=[*pool_result.rows, *rows],
        resolved={**pool_result.resolved, SYNTHESIS_ARM: SYNTHESIS_ARM},
    )
    return SynthesisResult(
        config=config,
        result=merged,
        oracle_accuracy=oracle_accuracy,
        oracle_test_confidence=float(oracle_proba.max(axis=1).mean()),
        n_features=int(X_pool.shape[1]),
        extra={"nn_distance_median": ref.nn_median},
    )


def _fit_oracle(config: SynthesisConfig, X_pool: np.ndarray, y_pool: np.ndarray) -> Any:
    """The oracle model, fit on the whole pool's ground truth (never on the test split)."""
    sim = config.simulation
    with threadpool_limits(limits=1):
        if config.oracle == "recipe":
            return _RecipeOracle(make_adapter(sim, "random", sim.split_seed).fit(X_pool, y_pool))
        return make_oracle(config.oracle, sim.split_seed).fit(X_pool, y_pool)


class _RecipeOracle:
    """The learner's recipe as an oracle: ``predict``/``predict_proba``/``classes_``."""

    def __init__(self, model: ModelAdapter) -> None:
        self.model = model
        self.classes_ = model.classes_

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_labels(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(X).proba)


@dataclass(frozen=True)
class _Reference:
    """The pool's standardization, range and typical nearest-neighbour distance."""

    center: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray
    index: NearestNeighbors
    nn_median: float

    @classmethod
    def of(cls, X_pool: np.ndarray) -> _Reference:
        center = X_pool.mean(axis=0)
        std = X_pool.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        Z = (X_pool - center) / scale
        index = NearestNeighbors(n_neighbors=2).fit(Z)
        dist, _ = index.kneighbors(Z)
        nn = float(np.median(dist[:, 1]))
        return cls(center, scale, X_pool.min(axis=0), X_pool.max(axis=0), index, nn)

    def offmanifold_ratio(self, points: np.ndarray) -> float:
        """Median distance from ``points`` to the nearest real pool item, divided by the
        median nearest-neighbour distance between pool items (about 1 for points like the
        data, much larger for points far from any real item)."""
        dist, _ = self.index.kneighbors((points - self.center) / self.scale, n_neighbors=1)
        return float(np.median(dist[:, 0]) / self.nn_median) if self.nn_median > 0 else math.nan


def _collect(
    config: SynthesisConfig,
    seed: int,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    oracle: Any,
    ref: _Reference,
) -> list[dict[str, Any]]:
    with threadpool_limits(limits=1):
        if family_of(config.simulation.model).uses_torch:
            import torch

            torch.set_num_threads(1)
        return list(_synthesis_curve(config, seed, X_pool, y_pool, X_test, y_test, oracle, ref))


def _synthesis_curve(
    config: SynthesisConfig,
    seed: int,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    oracle: Any,
    ref: _Reference,
) -> Iterator[dict[str, Any]]:
    """One learning curve of the synthesis arm: the pool arms' initial set, then
    ``batch_size`` synthesized points per cycle labeled by ``oracle``."""
    sim = config.simulation
    truth = SimulatedOracle(y_pool, noise_rate=sim.noise_rate, random_state=seed)
    chosen, labels = initial_set(seed, sim.initial, truth, len(y_pool))
    X_lab = X_pool[chosen]
    y_lab = np.asarray(labels)
    rng = np.random.default_rng([seed, 2_000_003])
    query_seconds = 0.0
    batch_classes = int(np.unique(y_lab).size)
    diagnostics = dict.fromkeys(SYNTHESIS_COLUMNS[1:], math.nan)
    n_synth = 0
    for rnd in range(sim.cycles + 1):
        model = make_adapter(sim, "random", seed)
        t0 = time.perf_counter()
        model.fit(X_lab, y_lab)
        fit_seconds = time.perf_counter() - t0
        pred = model.predict_labels(X_test)
        yield {
            "strategy": SYNTHESIS_ARM,
            "seed": seed,
            "round": rnd,
            "n_labels": int(y_lab.size),
            "accuracy": float(accuracy_score(y_test, pred)),
            "macro_f1": float(f1_score(y_test, pred, average="macro")),
            "query_seconds": query_seconds,
            "fit_seconds": fit_seconds,
            "batch_classes": batch_classes,
            "labeled_classes": int(np.unique(y_lab).size),
            "n_synthesized": n_synth,
            **diagnostics,
        }
        if rnd == sim.cycles:
            return
        t0 = time.perf_counter()
        points, n_boundary = _synthesize(
            model,
            X_lab,
            y_lab,
            sim.batch_size,
            center=ref.center,
            scale=ref.scale,
            low=ref.low,
            high=ref.high,
            rng=rng,
            neighbours=config.neighbours,
            steps=config.bisection_steps,
            explore=config.explore,
        )
        query_seconds = time.perf_counter() - t0
        points = points.astype(X_lab.dtype, copy=False)  # what the learner will be fit on
        proba = np.asarray(oracle.predict_proba(points))
        answers = oracle.classes_[proba.argmax(axis=1)]
        diagnostics = _diagnostics(ref, points, proba.max(axis=1), n_boundary)
        X_lab = np.vstack([X_lab, points])
        y_lab = np.concatenate([y_lab, answers.astype(y_lab.dtype, copy=False)])
        n_synth += int(points.shape[0])
        batch_classes = int(np.unique(answers).size)


def _diagnostics(
    ref: _Reference, points: np.ndarray, confidence: np.ndarray, n_boundary: int
) -> dict[str, float]:
    """The query distance ratio and the oracle's mean confidence over the whole batch and
    over its boundary (the first ``n_boundary``) and exploration queries (NaN if none)."""
    geometry = np.asarray(points, dtype=np.float64)
    out = {
        "offmanifold_ratio": ref.offmanifold_ratio(geometry),
        "oracle_confidence": float(confidence.mean()),
    }
    for kind, part in (("boundary", slice(0, n_boundary)), ("explore", slice(n_boundary, None))):
        some = geometry[part].shape[0] > 0
        out[f"offmanifold_ratio_{kind}"] = (
            ref.offmanifold_ratio(geometry[part]) if some else math.nan
        )
        out[f"oracle_confidence_{kind}"] = float(confidence[part].mean()) if some else math.nan
    return out


def summarize_synthesis(sres: SynthesisResult) -> dict[str, Any]:
    """``summary.json`` of a synthesis run: the simulator's summary of every arm, plus the
    paired comparison of synthesis with each pool-based arm, the diagnostics and the verdict.

    The cost estimate and ``pool_verdict`` are those of the pool-based arms alone: synthesis
    is not a pool strategy one could deploy, so it never becomes "the best strategy" there.
    """
    result = sres.result
    summary = summarize(result)
    pool_only = replace(
        result,
        config=replace(result.config, strategies=sres.config.pool_strategies),
        rows=[r for r in result.rows if r["strategy"] != SYNTHESIS_ARM],
        resolved={k: v for k, v in result.resolved.items() if k != SYNTHESIS_ARM},
    )
    pool_summary = summarize(pool_only)
    arms = summary["strategies"]
    synth_aulc = arms[SYNTHESIS_ARM]["aulc_per_seed"]
    versus = {
        name: paired_difference(synth_aulc, arms[name]["aulc_per_seed"]).to_dict()
        for name in sres.config.pool_strategies
    }
    rows = [r for r in result.rows if r["strategy"] == SYNTHESIS_ARM and r["round"] > 0]
    offm = [float(r["offmanifold_ratio"]) for r in rows]
    conf = [float(r["oracle_confidence"]) for r in rows]
    by_kind: dict[str, float | None] = {}
    for kind in ("boundary", "explore"):
        ratios = [float(r[f"offmanifold_ratio_{kind}"]) for r in rows]
        ratios = [v for v in ratios if not math.isnan(v)]
        confs = [float(r[f"oracle_confidence_{kind}"]) for r in rows]
        confs = [v for v in confs if not math.isnan(v)]
        by_kind[f"offmanifold_ratio_{kind}_median"] = float(np.median(ratios)) if ratios else None
        by_kind[f"oracle_query_confidence_{kind}"] = float(np.mean(confs)) if confs else None
    calls = {name: _call(d) for name, d in versus.items()}
    summary["synthesis"] = {
        "oracle": sres.config.oracle,
        "oracle_fit_on": "pool (full ground truth; never the test split)",
        "oracle_test_accuracy": sres.oracle_accuracy,
        "oracle_test_confidence": sres.oracle_test_confidence,
        "oracle_query_confidence": float(np.mean(conf)) if conf else None,
        "offmanifold_ratio_median": float(np.median(offm)) if offm else None,
        **by_kind,
        "nn_distance_median": sres.extra.get("nn_distance_median"),
        "n_features": sres.n_features,
        "neighbours": sres.config.neighbours,
        "bisection_steps": sres.config.bisection_steps,
        "explore": sres.config.explore,
        "versus": versus,
        "calls": calls,
    }
    summary["cost"] = pool_summary["cost"]
    summary["pool_verdict"] = pool_summary["verdict"]
    summary["verdict"] = _synthesis_verdict(sres, summary)
    return json_safe(summary)


def _call(diff: dict[str, Any]) -> str:
    """``"better"``, ``"worse"`` or ``"tie"`` from a paired difference's 95% CI."""
    if diff["ci_low"] is not None and diff["ci_low"] > 0:
        return "better"
    if diff["ci_high"] is not None and diff["ci_high"] < 0:
        return "worse"
    return "tie"


def _fmt(diff: dict[str, Any]) -> str:
    if diff["ci_low"] is None:
        return f"{diff['mean']:+.3f}, one seed"
    return f"{diff['mean']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]"


def _synthesis_verdict(sres: SynthesisResult, summary: dict[str, Any]) -> str:
    cfg = sres.result.config
    syn = summary["synthesis"]
    parts = []
    words = {"better": "beats", "worse": "trails", "tie": "ties with"}
    for name, call in syn["calls"].items():
        parts.append(f"{words[call]} {name} (AULC difference {_fmt(syn['versus'][name])})")
    head = (
        f"On {cfg.dataset} ({sres.n_features} features, {cfg.model} learner, "
        f"{cfg.seeds} paired seeds, up to {cfg.initial + cfg.batch_size * cfg.cycles} labels), "
        f"query synthesis {', and '.join(parts)}."
    )
    calls = set(syn["calls"].values())
    if calls == {"better"}:
        plain = "Synthesis helps here: it beats every pool-based arm."
    elif "better" in calls and "worse" not in calls:
        plain = "Synthesis helps here against some pool-based arms and is never worse."
    elif "worse" in calls and "better" not in calls:
        plain = "Synthesis does not help here: use pool-based selection."
    elif calls == {"tie"}:
        plain = (
            "Synthesis makes no measurable difference here (more seeds may tell); "
            "pool-based selection is simpler."
        )
    else:
        plain = (
            "Synthesis helps against some pool-based arms and hurts against others: "
            "use the best pool-based strategy."
        )
    where = ""
    kinds = [
        (label, syn[f"offmanifold_ratio_{kind}_median"])
        for label, kind in (("boundary", "boundary"), ("exploration", "explore"))
        if syn[f"offmanifold_ratio_{kind}_median"] is not None
    ]
    if kinds:
        worst = max(r for _, r in kinds)
        where = (
            " Its queries lie "
            + " and ".join(f"{r:.1f}× ({label} queries)" for label, r in kinds)
            + " the typical nearest-neighbour distance from the nearest real item"
            + (
                " (far from any real item: a person would see blends or noise, not items)"
                if worst > 3.0
                else " (partly in regions without real items)"
                if worst > 1.5
                else " (close to real data)"
            )
            + "."
        )
    q, t = syn["oracle_query_confidence"], syn["oracle_test_confidence"]
    ambiguous = (
        f" The oracle is much less sure on the queries ({q:.2f}) than on real items "
        f"({t:.2f}): boundary queries are ambiguous, so each label carries less than a "
        "real item's."
        if q is not None and q < t - 0.15
        else ""
    )
    acc = syn["oracle_test_accuracy"]
    oracle = (
        f" Synthesized points were labeled by a {syn['oracle']} oracle fit on the pool. It "
        "answers every query, unlike a person, but not as a perfect annotator would: its "
        f"accuracy on held-out test items is {acc:.3f}, and far from real items its labels "
        "are guesses, so these figures are not an upper bound for synthesis."
    )
    return f"{head} {plain}{where}{ambiguous}{oracle}"


def write_synthesis_outputs(
    sres: SynthesisResult, summary: dict[str, Any], out_dir: Path
) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.json`` and ``report.html`` of a synthesis run."""
    columns = (*RESULT_COLUMNS, *(c for c in SYNTHESIS_COLUMNS if c not in RESULT_COLUMNS))
    rows = [{c: _cell(r.get(c, "")) for c in columns} for r in sres.result.rows]
    page = render_html(sres.result, summary)
    page = page.replace(
        "<h1>Active learning vs random on", "<h1>Query synthesis vs pool-based selection on", 1
    )
    marker = "<h2>Strategies</h2>"
    section = _synthesis_html(summary)
    page = page.replace(marker, section + marker, 1) if marker in page else page
    return write_files(out_dir, rows, columns, summary, page)


def _cell(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value


def _synthesis_html(summary: dict[str, Any]) -> str:
    esc = html.escape
    syn = summary["synthesis"]
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(_fmt(d))}</td><td>{esc(syn['calls'][name])}</td></tr>"
        for name, d in syn["versus"].items()
    )

    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    acc = syn["oracle_test_accuracy"]
    return f"""<h2>Query synthesis</h2>
<table id="synthesis"><tr><th>synthesis vs</th><th>AULC difference [95% CI]</th><th>call</th></tr>
{rows}</table>
<table id="synthesis-diagnostics">
<tr><th></th><th>all queries</th><th>boundary queries</th><th>exploration queries</th></tr>
<tr><td>query distance to nearest real item / typical nearest-neighbour distance (median)</td>
<td>{num(syn["offmanifold_ratio_median"])}</td>
<td>{num(syn["offmanifold_ratio_boundary_median"])}</td>
<td>{num(syn["offmanifold_ratio_explore_median"])}</td></tr>
<tr><td>oracle confidence on the queries (real test items: \
{syn["oracle_test_confidence"]:.2f})</td>
<td>{num(syn["oracle_query_confidence"])}</td>
<td>{num(syn["oracle_query_confidence_boundary"])}</td>
<td>{num(syn["oracle_query_confidence_explore"])}</td></tr>
<tr><td>oracle model (fit on the pool's ground truth)</td><td colspan=3>{esc(syn["oracle"])}</td></tr>
<tr><td>oracle accuracy on held-out test items</td><td colspan=3>{acc:.3f} \
({100 * (1 - acc):.1f}% wrong)</td></tr></table>
<h3>Where synthesis helps, and where it does not</h3>
<p>Synthesis queries points on the model's current decision boundary: boundary queries bisect
the segment between nearest differently labeled neighbours, exploration queries bisect the
segment from a uniform random point of the data's box. It helps when the data are
low-dimensional and smooth, so a point between two real items is itself a plausible item, and
when someone (or something) can label any point. It does not help when the data lie on a thin
manifold, such as images as pixels: a point between two digits is a blend, not a digit, and a
random point of the box is noise, so a human annotator could not label them (Lang &amp; Baum
1992). The oracle model here labels them anyway, but with low confidence (the table above:
compare the queries with real test items): its labels there are guesses, and even on real
held-out items it errs {100 * (1 - acc):.1f}% of the time, so these figures are not an upper
bound for synthesis. The distance ratios measure how far the queries leave the data: near 1,
queries look like data; well above 1, they do not. This run's call is in the verdict at the
top.</p>
"""
