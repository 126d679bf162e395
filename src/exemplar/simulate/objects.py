"""Replay a fully annotated image set through the detection loop, strategy by strategy.

The object counterpart of :mod:`exemplar.simulate.runner` (``exemplar simulate --task
detection`` or ``segmentation``), with the same paired protocol:

* one fixed test split of images (``split_seed``, or a given test set), never queried;
* for each seed, the same random initial images for every strategy (grown one random
  image at a time until they hold at least one object);
* the same detector recipe and parameters for every strategy, random included, trained
  from scratch each round on the labeled images' objects;
* each cycle scores the pool with :func:`~exemplar.loop.score_pool` (a detector keeps its
  expected counts and the strategy's utility per chunk) and picks a batch with
  :func:`~exemplar.loop.pick_batch`, the selection rule of a project's ``select`` state;
* the oracle reveals the ground-truth objects of the picked images only, and every revealed
  box is counted: boxes, not images, are what annotators pay for;
* each round is evaluated on the test split by COCO mAP@0.5 and mAP@[.5:.95] (mask AP for
  segmentation), :func:`~exemplar.metrics.detection.mean_average_precision`.

Outputs (:func:`write_object_outputs`): ``results.csv`` (one row per strategy, seed and
round), ``summary.json`` (:func:`summarize_objects`) and a self-contained ``report.html``
with mAP@0.5 against images labeled and against boxes labeled (mean ± 95% CI over seeds).

The headline figure is label efficiency in boxes: per seed, the boxes a strategy needed to
first reach random sampling's final mAP@0.5 of the same seed (linearly interpolated between
rounds), divided by the boxes random had labeled by its last round: the geometric mean over
seeds with a Student t interval of the log ratios (learning curves as surveyed by Settles
2009, read in annotation cost, boxes, rather than in rounds).

References
----------
Settles, B. (2009). Active learning literature survey. Computer Sciences Technical Report
1648, University of Wisconsin-Madison.
Lin, T.-Y., et al. (2014). Microsoft COCO: common objects in context. ECCV (the mAP metric).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from joblib import Parallel, delayed
from scipy import stats
from threadpoolctl import threadpool_limits

from exemplar.data.detection import DetectionDataset, letterbox_dataset, split
from exemplar.errors import ConfigError
from exemplar.loop import pick_batch, score_pool
from exemplar.loop.config import DEFAULT_OBJECT_STRATEGY
from exemplar.metrics import normalized_aulc, paired_difference
from exemplar.metrics.detection import mean_average_precision
from exemplar.models import ModelAdapter, get_recipe, make_model
from exemplar.objects import Objects
from exemplar.simulate.report import write_files
from exemplar.strategies import Strategy, get_strategy

__all__ = [
    "OBJECT_DATASETS",
    "OBJECT_RESULT_COLUMNS",
    "ObjectSimulationConfig",
    "ObjectSimulationResult",
    "load_object_dataset",
    "render_object_html",
    "run_object_simulation",
    "summarize_objects",
    "validate_object_config",
    "write_object_outputs",
]

#: Built-in image sets ``--dataset`` names for detection and segmentation.
OBJECT_DATASETS = ("cells", "nuclei")

#: Columns of ``results.csv``.
OBJECT_RESULT_COLUMNS = (
    "strategy",
    "seed",
    "round",
    "n_images",
    "n_boxes",
    "map50",
    "map",
    "fit_seconds",
    "query_seconds",
)

#: The detector's default training batch size (images per gradient step).
DETECTOR_BATCH_SIZE = 16

#: Default detector recipe of each task.
DEFAULT_RECIPES = {"detection": "centernet", "segmentation": "centernet-seg"}

ObjectTask = Literal["detection", "segmentation"]


@dataclass(frozen=True)
class ObjectSimulationConfig:
    """Everything that defines an object simulation; recorded in ``summary.json``.

    Parameters
    ----------
    dataset : str
        The image set's name (for the report).
    task : {"detection", "segmentation"}
        Segmentation trains masks and scores mask AP.
    model : str, optional
        Detector recipe; default ``centernet`` (``centernet-seg`` for segmentation).
    model_params : dict
        Extra detector parameters (every strategy gets the same).
    strategies : tuple of str
        ``"default"`` is the default object strategy
        (:data:`~exemplar.loop.config.DEFAULT_OBJECT_STRATEGY`).
    seeds, initial, batch_size, cycles : int
        Paired seeds; random images before the first query; images per cycle; cycles.
    test_size : float
        Fraction of images held out as the test split (when no test set is given).
    image_side, channels : int
        The detector's frame (``S``) and channels; images are letterboxed into it.
    epochs : int
        Detector training epochs per round.
    min_steps : int
        At least this many gradient steps per fit: a round with few labeled images gets
        more epochs (``ceil(min_steps / ceil(n_images / batch_size))``), the same for every
        strategy, so the first rounds' detectors are not left untrained. 0 keeps ``epochs``.
    jobs : int
        Curves (strategy, seed) run side by side; -1 uses every core.
    """

    dataset: str
    task: ObjectTask = "detection"
    model: str | None = None
    model_params: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    strategies: tuple[str, ...] = ("default", "random")
    seeds: int = 5
    initial: int = 10
    batch_size: int = 10
    cycles: int = 5
    test_size: float = 0.25
    split_seed: int = 0
    image_side: int = 128
    channels: int = 1
    epochs: int = 10
    min_steps: int = 0
    jobs: int = 1

    @property
    def recipe(self) -> str:
        """The detector recipe every strategy uses."""
        return self.model or DEFAULT_RECIPES[self.task]


@dataclass
class ObjectSimulationResult:
    """Per-round rows plus the context the summary needs."""

    config: ObjectSimulationConfig
    rows: list[dict[str, Any]]
    n_pool: int
    n_test: int
    pool_boxes: int
    test_boxes: int
    classes: list[str]
    synthetic: bool
    resolved: dict[str, str] = field(default_factory=dict)
    #: Names of the pool images; pool row ``i`` is ``pool_names[i]``.
    pool_names: list[str] = field(default_factory=list)
    #: ``(strategy, seed)`` → the pool rows labeled in each round (round 0: the initial set).
    batches: dict[tuple[str, int], list[list[int]]] = field(default_factory=dict)


def resolve_strategy(name: str) -> str:
    """The registry name of ``name`` for an object task (``default`` is the object default)."""
    return DEFAULT_OBJECT_STRATEGY if name == "default" else get_strategy(name).name


def load_object_dataset(
    name: str, *, image_side: int = 128, n_images: int = 120, seed: int = 0
) -> tuple[DetectionDataset, DetectionDataset | None]:
    """A built-in image set as ``(pool and test images, separate test set or None)``.

    ``cells``: ``n_images`` SYNTHETIC fluorescence-like images of side ``image_side`` with
    nuclei and micronuclei (:func:`~exemplar.data.cells.synthetic_cells`), split later.
    ``nuclei``: real DNA-stained nuclei and micronuclei, 2 x 2 tiles of the mnfinder
    images with longer side ``image_side`` (:func:`~exemplar.data.nuclei.nuclei_tiles`): the
    tiles of its training and validation images are the pool (132) and those of its test
    images the test set (64), so no source image has tiles on both sides.
    """
    if name == "cells":
        from exemplar.data.cells import synthetic_cells

        lo, hi = (2, 12) if image_side <= 96 else (5, 30)
        cells = synthetic_cells(n_images, size=image_side, objects_per_image=(lo, hi), seed=seed)
        return cells, None
    if name == "nuclei":
        from exemplar.data.nuclei import nuclei_tiles

        pool = nuclei_tiles(sets=("training", "validation"), side=image_side)
        return pool, nuclei_tiles(sets=("test",), side=image_side)
    raise ConfigError(
        f"unknown detection dataset {name!r}; choose one of: {', '.join(OBJECT_DATASETS)}"
    )


def validate_object_config(
    config: ObjectSimulationConfig, dataset: DetectionDataset, test: DetectionDataset | None = None
) -> None:
    """Raise :class:`ConfigError` for any setting that cannot run on ``dataset``."""
    if config.task not in DEFAULT_RECIPES:
        raise ConfigError(f"task must be detection or segmentation, got {config.task!r}")
    if not config.strategies:
        raise ConfigError("give at least one strategy")
    if config.min_steps < 0:
        raise ConfigError(f"min_steps must be >= 0, got {config.min_steps}")
    for key in ("seeds", "initial", "batch_size", "epochs"):
        if getattr(config, key) < 1:
            flag = key.replace("_", "-")
            raise ConfigError(f"--{flag} must be at least 1, got {getattr(config, key)}")
    if config.cycles < 0:
        raise ConfigError(f"--cycles must be >= 0, got {config.cycles}")
    if test is None and not 0.0 < config.test_size < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {config.test_size}")
    if config.jobs == 0 or config.jobs < -1:
        raise ConfigError(f"--jobs must be -1 (all cores) or at least 1, got {config.jobs}")
    for name in config.strategies:
        strategy = get_strategy(resolve_strategy(name))
        if strategy.requires and "objects" not in strategy.requires:
            raise ConfigError(
                f"strategy {name!r} reads class probabilities; a detection simulation needs "
                "an object strategy (box_entropy, box_margin, ...) or a model-free one (random)"
            )
    recipe = get_recipe(config.recipe)
    if recipe.family != "detector":
        raise ConfigError(
            f"model {config.recipe!r} is not a detector; use centernet or centernet-seg"
        )
    _make_detector(config, dataset.classes, 0)  # checks the parameters
    if config.task == "segmentation":
        for part in (dataset, test):
            if part is not None and any(o.masks is None and len(o) for o in part.objects):
                raise ConfigError(
                    "segmentation needs instance masks, and some images of the dataset "
                    "have boxes only"
                )
    n_pool = len(dataset) if test is not None else len(dataset) - _n_test(config, len(dataset))
    budget = config.initial + config.batch_size * config.cycles
    if budget > n_pool:
        raise ConfigError(
            f"budget of {budget} images (initial {config.initial} + {config.cycles} cycles × "
            f"batch size {config.batch_size}) exceeds the pool of {n_pool} images; "
            "lower --cycles or --batch-size"
        )
    if sum(len(o) for o in dataset.objects) == 0:
        raise ConfigError(f"dataset {config.dataset!r} has no objects; nothing to learn")


def _n_test(config: ObjectSimulationConfig, n: int) -> int:
    return max(1, round(config.test_size * n))


def run_object_simulation(
    config: ObjectSimulationConfig,
    dataset: DetectionDataset,
    test: DetectionDataset | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ObjectSimulationResult:
    """Run every (strategy, seed) pair and return all learning-curve rows.

    Parameters
    ----------
    config : ObjectSimulationConfig
    dataset : DetectionDataset
        Annotated images: the pool, and the test split too unless ``test`` is given.
    test : DetectionDataset, optional
        A separate test set (never queried).
    on_progress : callable, optional
        Called with the number of finished rounds as work completes
        (``len(strategies) * seeds * (cycles + 1)`` in total).
    """
    validate_object_config(config, dataset, test)
    if test is None:
        n_test = _n_test(config, len(dataset))
        test, pool = split(
            dataset, [n_test / len(dataset), 1 - n_test / len(dataset)], seed=config.split_seed
        )
    else:
        pool = dataset
    X_pool, y_pool, _ = letterbox_dataset(pool, config.image_side, config.channels)
    X_test, y_test, _ = letterbox_dataset(test, config.image_side, config.channels)
    if config.task == "detection":  # boxes only: masks are not needed past this point
        y_pool = [Objects(o.boxes, o.classes) for o in y_pool]
        y_test = [Objects(o.boxes, o.classes) for o in y_test]
    data = _Data(X_pool, y_pool, X_test, y_test, list(dataset.classes))
    resolved = {name: resolve_strategy(name) for name in config.strategies}
    tasks = [(name, seed) for name in config.strategies for seed in range(config.seeds)]
    rows: list[dict[str, Any]] = []
    if config.jobs == 1:
        with threadpool_limits(limits=1):
            for name, seed in tasks:
                for row in _run_curve(config, name, resolved[name], seed, data):
                    rows.append(row)
                    if on_progress:
                        on_progress(1)
    else:
        parallel = Parallel(n_jobs=config.jobs, return_as="generator_unordered")
        jobs = (delayed(_collect)(config, name, resolved[name], seed, data) for name, seed in tasks)
        for curve in parallel(jobs):
            rows.extend(curve)
            if on_progress:
                on_progress(len(curve))
    order = {name: i for i, name in enumerate(config.strategies)}
    rows.sort(key=lambda r: (order[str(r["strategy"])], r["seed"], r["round"]))
    batches: dict[tuple[str, int], list[list[int]]] = {}
    for row in rows:
        batches.setdefault((row["strategy"], row["seed"]), []).append(row.pop("batch"))
    return ObjectSimulationResult(
        config=config,
        rows=rows,
        n_pool=len(y_pool),
        n_test=len(y_test),
        pool_boxes=sum(len(o) for o in y_pool),
        test_boxes=sum(len(o) for o in y_test),
        classes=list(dataset.classes),
        synthetic=bool(dataset.synthetic),
        resolved=resolved,
        pool_names=list(pool.names),
        batches=batches,
    )


@dataclass(frozen=True)
class _Data:
    """The letterboxed pool and test split: image rows and objects in the detector's frame."""

    X_pool: np.ndarray
    y_pool: list[Objects]
    X_test: np.ndarray
    y_test: list[Objects]
    classes: list[str]


def _collect(
    config: ObjectSimulationConfig, name: str, resolved: str, seed: int, data: _Data
) -> list[dict[str, Any]]:
    with threadpool_limits(limits=1):
        import torch  # one intra-op thread per worker: curves run side by side

        torch.set_num_threads(1)
        return list(_run_curve(config, name, resolved, seed, data))


def initial_images(seed: int, size: int, objects: Sequence[Objects]) -> np.ndarray:
    """The seed's random initial images, grown one random image at a time until they hold
    an object (a detector learns nothing from background alone).

    The draw depends only on the seed, so every strategy starts from the same images.
    """
    order = np.random.default_rng([seed, 1_000_003]).permutation(len(objects))
    chosen = list(order[:size])
    for extra in order[size:]:
        if any(len(objects[i]) for i in chosen):
            break
        chosen.append(extra)
    return np.asarray(chosen, dtype=np.int64)


def _run_curve(
    config: ObjectSimulationConfig, name: str, resolved: str, seed: int, data: _Data
) -> Iterator[dict[str, Any]]:
    """One learning curve: ``cycles + 1`` evaluations of one strategy under one seed."""
    strategy: Strategy = get_strategy(resolved)
    n_pool = len(data.y_pool)
    is_labeled = np.zeros(n_pool, dtype=bool)
    revealed: dict[int, Objects] = {}  # what the oracle has shown: picked images only

    def reveal(rows: np.ndarray) -> None:
        for row in rows:
            revealed[int(row)] = data.y_pool[int(row)]
        is_labeled[rows] = True

    batch = initial_images(seed, config.initial, data.y_pool)
    reveal(batch)
    query_seconds = 0.0
    segm = config.task == "segmentation"
    for rnd in range(config.cycles + 1):
        labeled = np.flatnonzero(is_labeled)
        model = _make_detector(config, data.classes, seed, labeled.size)
        t0 = time.perf_counter()
        model.fit(data.X_pool[labeled], [revealed[int(i)] for i in labeled])  # type: ignore[arg-type]
        fit_seconds = time.perf_counter() - t0
        predicted = model.predict_objects(data.X_test)  # type: ignore[attr-defined]
        ap = mean_average_precision(data.y_test, predicted, data.classes, segm=segm)
        yield {
            "strategy": name,
            "seed": seed,
            "round": rnd,
            "n_images": int(labeled.size),
            "n_boxes": int(sum(len(revealed[int(i)]) for i in labeled)),
            "map50": float(ap["map50"]),
            "map": float(ap["map"]),
            "fit_seconds": fit_seconds,
            "query_seconds": query_seconds,
            "batch": [int(i) for i in batch],  # moved to ObjectSimulationResult.batches
        }
        if rnd == config.cycles:
            return
        t0 = time.perf_counter()
        unlabeled = np.flatnonzero(~is_labeled)
        predictions, reduced = None, None
        if strategy.requires:
            scored = score_pool(model, data.X_pool, strategy, unlabeled=unlabeled, objects=True)
            predictions, reduced = scored.predictions, scored.reduced
        picks = pick_batch(
            predictions,
            strategy,
            unlabeled,
            labeled,
            None,  # objects: no per-item labels
            batch_size=config.batch_size,
            seed=[seed, rnd],
            reduced=reduced,
        )
        query_seconds = time.perf_counter() - t0
        batch = np.fromiter((p.row for p in picks), dtype=np.int64, count=len(picks))
        reveal(batch)


def _make_detector(
    config: ObjectSimulationConfig, classes: Sequence[str], seed: int, n_images: int = 0
) -> ModelAdapter:
    params: dict[str, Any] = {
        "image_side": config.image_side,
        "channels": config.channels,
        "epochs": config.epochs,
        **config.model_params,
    }
    if config.min_steps and n_images:
        batches = math.ceil(n_images / int(params.get("batch_size", DETECTOR_BATCH_SIZE)))
        params["epochs"] = max(int(params["epochs"]), math.ceil(config.min_steps / batches))
    return make_model(config.recipe, seed, device=config.device, classes=list(classes), **params)


# --- summary ---------------------------------------------------------------------------------


def summarize_objects(result: ObjectSimulationResult, confidence: float = 0.95) -> dict[str, Any]:
    """Everything ``summary.json`` holds: per-strategy statistics, box efficiency, lines.

    Per strategy: final mAP@0.5 and mAP@[.5:.95] with a t interval over seeds, the
    normalized area under mAP@0.5 against images and against boxes, the paired difference
    of final mAP@0.5 against random, and ``boxes_to_random_final``: per seed, the boxes the
    strategy labeled when its mAP@0.5 first reached random's final mAP@0.5 of that seed
    (interpolated), as a ratio of random's final boxes: geometric mean and t interval of
    the log ratios over the seeds that reached it.
    """
    cfg = result.config
    strategies: dict[str, dict[str, Any]] = {}
    curves = object_curves(result, confidence)
    random_final = None
    if "random" in cfg.strategies:
        random_map50 = _grid(result, "random", "map50")
        random_final = (
            random_map50[:, -1],
            _grid(result, "random", "n_boxes")[:, -1],
            random_map50[:, -1] > random_map50[:, 0],
        )
    for name in cfg.strategies:
        m50 = _grid(result, name, "map50")
        mm = _grid(result, name, "map")
        images = _grid(result, name, "n_images")
        boxes = _grid(result, name, "n_boxes")
        seeds = range(m50.shape[0])
        entry: dict[str, Any] = {
            "resolves_to": result.resolved.get(name, name),
            "final_map50": _t_interval(m50[:, -1], confidence),
            "final_map": _t_interval(mm[:, -1], confidence),
            "final_images_mean": float(images[:, -1].mean()),
            "final_boxes": _t_interval(boxes[:, -1], confidence),
            "aulc_images": _t_interval(
                [normalized_aulc(images[s], m50[s]) for s in seeds], confidence
            ),
            "aulc_boxes": _t_interval(
                [normalized_aulc(boxes[s], m50[s]) for s in seeds], confidence
            ),
            "fit_seconds_mean": float(_grid(result, name, "fit_seconds").mean()),
            "query_seconds_mean": float(_grid(result, name, "query_seconds")[:, 1:].mean())
            if cfg.cycles
            else 0.0,
        }
        if random_final is not None:
            entry["diff_vs_random"] = paired_difference(
                m50[:, -1].tolist(), random_final[0].tolist(), confidence
            ).to_dict()
            entry["boxes_to_random_final"] = _boxes_to_reach(boxes, m50, *random_final, confidence)
        strategies[name] = entry
    summary: dict[str, Any] = {
        "task": cfg.task,
        "metric": "segm" if cfg.task == "segmentation" else "bbox",
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__} | {"model": cfg.recipe},
        "dataset": {
            "name": cfg.dataset,
            "synthetic": result.synthetic,
            "classes": result.classes,
            "n_pool": result.n_pool,
            "n_test": result.n_test,
            "pool_boxes": result.pool_boxes,
            "test_boxes": result.test_boxes,
        },
        "confidence": confidence,
        "strategies": strategies,
        "curves": curves,
    }
    summary["config"]["strategies"] = list(cfg.strategies)
    summary["lines"] = {name: strategy_line(name, s, cfg.seeds) for name, s in strategies.items()}
    summary["verdict"] = _verdict(result, summary)
    return _clean(summary)


def object_curves(
    result: ObjectSimulationResult, confidence: float = 0.95
) -> dict[str, dict[str, list[float]]]:
    """Per strategy and round: mean images, mean boxes, and mean ± CI half-width of the mAPs."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in result.config.strategies:
        entry: dict[str, list[float]] = {
            "n_images": _grid(result, name, "n_images").mean(axis=0).tolist(),
            "n_boxes": _grid(result, name, "n_boxes").mean(axis=0).tolist(),
        }
        for metric in ("map50", "map"):
            grid = _grid(result, name, metric)
            entry[metric] = grid.mean(axis=0).tolist()
            entry[f"{metric}_ci"] = [
                _half_width(grid[:, r], confidence) for r in range(grid.shape[1])
            ]
        out[name] = entry
    return out


def strategy_line(name: str, stats_: dict[str, Any], seeds: int) -> str:
    """One line: final mAP@0.5 ± CI and the boxes needed to reach random's final mAP@0.5."""
    final = stats_["final_map50"]
    half = (final["ci_high"] - final["mean"]) if final["ci_high"] is not None else None
    text = f"{name}: final mAP@0.5 {final['mean']:.3f}" + (
        f" ± {half:.3f}" if half is not None else " (one seed)"
    )
    reach = stats_.get("boxes_to_random_final")
    if reach is None:
        return text
    if reach["seeds_defined"] == 0:
        return text + "; random's mAP@0.5 never rose above the initial round's, so no box ratio"
    if reach["seeds_reached"] == 0:
        return text + f"; never reached random's final mAP@0.5 (0/{seeds} seeds)"
    ci = f" [{reach['ci_low']:.0%}, {reach['ci_high']:.0%}]" if reach["ci_low"] is not None else ""
    return (
        text
        + f"; boxes to reach random's final mAP@0.5: {reach['ratio']:.0%} of random's{ci}"
        + f" ({reach['seeds_reached']}/{seeds} seeds)"
    )


def _boxes_to_reach(
    boxes: np.ndarray,
    m50: np.ndarray,
    targets: np.ndarray,
    random_boxes: np.ndarray,
    improved: np.ndarray,
    confidence: float,
) -> dict[str, Any]:
    """Per seed, the (interpolated) boxes at which ``m50`` first reaches that seed's target.

    The ratio to random's final boxes is summarized over the seeds that reached the target
    by its geometric mean and a Student t interval on the log ratios (a ratio's interval
    stays positive, and 50% and 200% are equally far from 100%).

    A seed where random's final mAP@0.5 is no better than its initial one (the shared first
    round) has no meaningful target: it counts as not reached, and ``seeds_defined`` says
    how many seeds had one.
    """
    per_seed: list[float | None] = []
    ratios: list[float | None] = []
    for s in range(m50.shape[0]):
        reached = _crossing(boxes[s], m50[s], float(targets[s])) if improved[s] else None
        per_seed.append(reached)
        ratios.append(None if reached is None else reached / float(random_boxes[s]))
    got = [r for r in ratios if r is not None]
    ratio = low = high = None
    if got:  # ratios are compared on a log scale: geometric mean, t interval of the logs
        logs = np.log(np.asarray(got, dtype=float))
        ratio = float(np.exp(logs.mean()))
        if logs.size > 1:
            half = _half_width(logs, confidence)
            low, high = float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))
    return {
        "target_map50_per_seed": [float(t) for t in targets],
        "random_boxes_per_seed": [float(b) for b in random_boxes],
        "boxes_per_seed": per_seed,
        "ratio_per_seed": ratios,
        "ratio": ratio,
        "ci_low": low,
        "ci_high": high,
        "seeds_reached": len(got),
        "seeds_defined": int(np.count_nonzero(improved)),
    }


def _crossing(x: np.ndarray, scores: np.ndarray, target: float) -> float | None:
    """``x`` where ``scores`` first reach ``target``, linearly interpolated (None if never)."""
    for i, s in enumerate(scores):
        if s >= target:
            if i == 0 or s == scores[i - 1]:
                return float(x[i])
            s0, x0 = float(scores[i - 1]), float(x[i - 1])
            return float(x0 + (target - s0) / (float(s) - s0) * (float(x[i]) - x0))
    return None


def _t_interval(values: Any, confidence: float) -> dict[str, Any]:
    """Mean and Student t interval of the mean (None bounds for a single value)."""
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    half = _half_width(arr, confidence)
    if arr.size < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": int(arr.size)}
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": int(arr.size)}


def _half_width(values: np.ndarray, confidence: float) -> float:
    arr = np.asarray(values, dtype=float)
    if arr.size < 2:
        return 0.0
    sd = float(arr.std(ddof=1))
    return float(stats.t.ppf(0.5 + confidence / 2, arr.size - 1)) * sd / math.sqrt(arr.size)


def _verdict(result: ObjectSimulationResult, summary: dict[str, Any]) -> str:
    cfg = result.config
    budget = cfg.initial + cfg.batch_size * cfg.cycles
    head = (
        f"On {cfg.dataset} ({'SYNTHETIC, ' if result.synthetic else ''}{result.n_pool} pool "
        f"images, {result.n_test} test images) with {cfg.recipe} at {cfg.image_side} px, "
        f"{cfg.seeds} paired seeds and up to {budget} labeled images:"
    )
    if "random" not in summary["strategies"]:
        return head + " random sampling was not run, so no claim is made against it."
    others = [k for k in summary["strategies"] if k != "random"]
    if not others:
        return head + " only random sampling ran; add a strategy to compare against it."
    parts = []
    for name in others:
        s = summary["strategies"][name]
        reach = s["boxes_to_random_final"]
        diff = s["diff_vs_random"]
        if reach["seeds_reached"] == cfg.seeds and reach["ci_high"] is not None:
            if reach["ci_high"] < 1:
                call = "needs fewer boxes than random"
            elif reach["ci_low"] > 1:
                call = "needs more boxes than random"
            else:
                call = "needs about as many boxes as random"
            parts.append(
                f"{name} {call} to reach random's final mAP@0.5 "
                f"({reach['ratio']:.0%} of random's, 95% CI "
                f"[{reach['ci_low']:.0%}, {reach['ci_high']:.0%}])"
            )
        else:
            ci = (
                f", 95% CI [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]"
                if diff["ci_low"] is not None
                else ""
            )
            parts.append(
                f"{name} reached random's final mAP@0.5 in {reach['seeds_reached']} of "
                f"{cfg.seeds} seeds (paired final mAP@0.5 difference {diff['mean']:+.3f}{ci})"
            )
    return head + " " + "; ".join(parts) + "."


def _grid(result: ObjectSimulationResult, name: str, column: str) -> np.ndarray:
    """Rows of one strategy as a (seeds, rounds + 1) array of ``column``."""
    cfg = result.config
    out = np.full((cfg.seeds, cfg.cycles + 1), np.nan)
    for row in result.rows:
        if row["strategy"] == name:
            out[int(row["seed"]), int(row["round"])] = float(row[column])
    return out


def _clean(obj: Any) -> Any:
    """Replace NaN with None so the JSON is valid for every reader."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


# --- outputs ---------------------------------------------------------------------------------


def write_object_outputs(
    result: ObjectSimulationResult, summary: dict[str, Any], out_dir: Path
) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.json`` and ``report.html`` atomically; their paths."""
    page = render_object_html(result, summary)
    return write_files(out_dir, result.rows, OBJECT_RESULT_COLUMNS, summary, page)


def render_object_html(result: ObjectSimulationResult, summary: dict[str, Any]) -> str:
    """One HTML page with two embedded PNG plots (mAP@0.5 vs images and vs boxes)."""
    cfg = result.config
    esc = html.escape
    level = f"{summary['confidence']:.0%}"
    plots = "".join(
        f'<figure><img alt="mAP@0.5 against {esc(label)}" src="data:image/png;base64,'
        f'{_plot(result, summary, axis, label)}"><figcaption>Test mAP@0.5 against {esc(label)}: '
        f"mean ± {level} CI over {cfg.seeds} seeds</figcaption></figure>"
        for axis, label in (("n_images", "images labeled"), ("n_boxes", "boxes labeled"))
    )
    rows = []
    for name, s in summary["strategies"].items():
        reach = s.get("boxes_to_random_final")
        if reach is None or reach["ratio"] is None:
            reach_txt = "—" if reach is None else f"not reached (0/{cfg.seeds})"
        else:
            ci = (
                ""
                if reach["ci_low"] is None
                else f" [{reach['ci_low']:.0%}, {reach['ci_high']:.0%}]"
            )
            reach_txt = f"{reach['ratio']:.0%}{ci} ({reach['seeds_reached']}/{cfg.seeds})"
        alias = f" → {s['resolves_to']}" if s["resolves_to"] != name else ""
        rows.append(
            "<tr>"
            f"<td>{esc(name + alias)}</td><td>{esc(_pm(s['final_map50']))}</td>"
            f"<td>{esc(_pm(s['final_map']))}</td><td>{s['final_boxes']['mean']:.0f}</td>"
            f"<td>{esc(reach_txt)}</td><td>{s['aulc_boxes']['mean']:.3f}</td>"
            f"<td>{s['fit_seconds_mean']:.1f}</td><td>{s['query_seconds_mean']:.1f}</td>"
            "</tr>"
        )
    metric = "mask" if summary["metric"] == "segm" else "box"
    config_txt = esc(json.dumps(summary["config"], indent=1))
    synthetic = "<p><b>SYNTHETIC images.</b></p>" if result.synthetic else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>exemplar {esc(cfg.task)} simulation: {esc(cfg.dataset)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}figure{{display:inline-block;margin:0 1em 1em 0}}
img{{max-width:520px}}.verdict{{background:#f3f6ff;border-left:4px solid #3557c4;padding:.8em 1em}}
.small{{color:#666;font-size:.9em}}
</style></head><body>
<h1>Active learning vs random for {esc(cfg.task)} on {esc(cfg.dataset)}</h1>
{synthetic}<p class="verdict" id="verdict">{esc(summary["verdict"])}</p>
{plots}
<h2>Strategies</h2>
<table id="strategies"><tr><th>strategy</th><th>final mAP@0.5 ({level} CI)</th>
<th>final mAP@[.5:.95]</th><th>final boxes</th><th>boxes to reach random's final mAP@0.5
(share of random's boxes)</th><th>AULC (mAP@0.5 vs boxes)</th><th>fit s</th><th>query s</th></tr>
{"".join(rows)}</table>
<p class=small>COCO {metric} AP on {result.n_test} test images ({result.test_boxes} objects),
never queried; pool {result.n_pool} images ({result.pool_boxes} objects). Box ratios are paired
per seed against random's final mAP@0.5 of the same seed: geometric mean and Student t
interval of the log ratios over the seeds that reached it. The boxes axis of the plot is each round's mean over seeds.</p>
<h2>Configuration</h2><pre>{config_txt}</pre>
</body></html>
"""


def _pm(interval: dict[str, Any]) -> str:
    if interval["ci_high"] is None:
        return f"{interval['mean']:.3f}"
    return f"{interval['mean']:.3f} ± {interval['ci_high'] - interval['mean']:.3f}"


def _plot(result: ObjectSimulationResult, summary: dict[str, Any], axis: str, label: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, c in summary["curves"].items():
        style = "--" if name == "random" else "-"
        resolved = result.resolved.get(name, name)
        legend = f"{name} ({resolved})" if resolved != name else name
        mean = np.asarray(c["map50"], dtype=float)
        half = np.asarray(c["map50_ci"], dtype=float)
        (line,) = ax.plot(c[axis], mean, style, label=legend, linewidth=1.6, marker=".")
        ax.fill_between(c[axis], mean - half, mean + half, color=line.get_color(), alpha=0.15)
    if "random" in summary["strategies"]:
        final = summary["strategies"]["random"]["final_map50"]["mean"]
        ax.axhline(final, color="grey", linestyle=":", linewidth=1, label="random's final")
    ax.set_xlabel(label)
    ax.set_ylabel("test mAP@0.5")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")
