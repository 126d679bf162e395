"""Curation evidence for detection on the real nuclei tiles (issue #12): label errors, pruning
and a class split, with the built-in CenterNet.

    nice python -m bench.curation_detection [--parts label_errors,pruning,class_split]
        [--seeds 3] [--image-side 128] [--epochs 20] [--folds 3] [--noise 0.1]
        [--dup-share 0.3] [--embeddings pixels,detector] [--out curation_detection]
        [--update]

Data: the mnfinder nuclei and micronuclei (real DNA-stained fluorescence, two classes),
2 x 2 tiles letterboxed to ``--image-side`` (:func:`exemplar.data.nuclei.nuclei_tiles`):
the 132 tiles of the training and validation images are the labeled set, the 64 tiles of
the 16 test images the held-out test split (no source image on both sides). Every detector
is the built-in CenterNet (batch 16, flips on) trained from scratch with the same settings,
seeded by the seed (paired: seed ``s`` draws the same noise, copies, folds and samples for
every arm).

Parts (each figure per seed; mean and 95% Student t interval over seeds):

* ``label_errors``: ``round(noise * m)`` of the ``m`` labeled objects, drawn with the seed,
  get the other class. Out-of-fold object probabilities
  (:func:`exemplar.curation.out_of_fold_object_proba`: ``--folds`` detectors, each trained on
  the other folds' tiles, read at the given boxes by ``describe_objects``) rank the objects by
  the probability of their given class. ``found_top2x`` is the share of injected errors among
  the first ``2 x`` (injected count) objects (issue #12's goal: at least 0.70), also split by
  the true class of the flipped object; :func:`exemplar.curation.object_label_errors` gives
  the estimated count and the flagged set's precision and recall. Reference: the same
  ranking from out-of-fold logistic regression on the box's log width and height alone.
* ``pruning``: ``round(dup_share * n)`` tiles, drawn with the seed, get a near-duplicate
  copy (a horizontal, vertical or both flip of the whole frame, plus Gaussian pixel noise of
  0.02, clipped to [0, 1]; boxes flipped with it). A plan
  (:func:`exemplar.curation.prune_plan`) removes near duplicates in a tile embedding made
  flip invariant by averaging over the four flips of a tile (``--embeddings``: ``pixels``,
  4 x 4 average-pooled pixels; ``detector``, the pooled deepest features of the detector
  trained on the whole set) and, as "confident" items, tiles an out-of-fold detector
  (grouped folds: a copy stays with its source) already handles: tile F1 at IoU 0.5 (class
  aware, boxes of score at least 0.3) of at least ``--tile-f1`` (0.75), at most 10% of the
  tiles (prune_plan's margin rule with ``proba = [1 - F1, F1]``). mAP@0.5 on the test tiles
  of the detector trained before, and after removing each plan's tiles with the same number
  of optimizer steps (the smaller set gets more epochs), paired by seed.
* ``class_split``: nucleus and micronucleus merged into one class; a detector trained on the
  merged labels embeds every labeled object (``describe_objects``: neck features pooled over
  the box); an 80% sample of the objects is split in two
  (:func:`exemplar.curation.propose_split`, k-means and Ward agglomerative), adjusted Rand
  index against the true classes. References: the same split of the box's log width and
  height alone (standardized), and of the embeddings and the two log sizes side by side.

Writes ``bench/results/<out>.json`` and ``bench/results/<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import adjusted_rand_score

from exemplar.curation import (
    choose_n_classes,
    object_label_errors,
    out_of_fold_object_proba,
    out_of_fold_proba,
    propose_split,
    prune_plan,
    rank_by_self_confidence,
)
from exemplar.curation.label_errors import Method
from exemplar.data.detection import letterbox_dataset
from exemplar.metrics.detection import mean_average_precision
from exemplar.models.detector import DetectorAdapter, make_detector
from exemplar.objects import Objects, box_iou
from exemplar.simulate.objects import load_object_dataset

RESULTS = Path(__file__).parent / "results"
PARTS = ("label_errors", "pruning", "class_split")
METHODS: tuple[Method, ...] = ("prune_by_noise_rate", "confident_joint_off_diagonal")
BATCH = 16
COPY_NOISE = 0.02
TILE_F1 = 0.75  # default of --tile-f1
SCORE = 0.3
CONFIDENT_SHARE = 0.1
SAMPLE = 0.8
GOAL_FOUND = 0.7
GOAL_SMALLER = 0.25


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% Student t interval over seeds (the mean alone for one seed)."""
    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    if a.size < 2:
        return {"mean": mean, "lo": mean, "hi": mean}
    half = float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))
    return {"mean": mean, "lo": mean - half, "hi": mean + half}


class Setup:
    """The letterboxed pool and test tiles, and the detector recipe."""

    def __init__(self, image_side: int, epochs: int) -> None:
        pool, test = load_object_dataset("nuclei", image_side=image_side)
        assert test is not None  # nuclei has its own test split
        self.classes = list(pool.classes)
        X, y, _ = letterbox_dataset(pool, image_side)
        Xt, yt, _ = letterbox_dataset(test, image_side)
        self.X, self.Xt = X, Xt
        self.y = [Objects(o.boxes, o.classes) for o in y]
        self.yt = [Objects(o.boxes, o.classes) for o in yt]
        self.side = image_side
        self.epochs = epochs

    def detector(
        self, seed: int, classes: Sequence[str] | None = None, epochs: int | None = None
    ) -> DetectorAdapter:
        return make_detector(
            seed,
            image_side=self.side,
            epochs=epochs or self.epochs,
            batch_size=BATCH,
            classes=list(classes or self.classes),
        )

    def map50(self, model: DetectorAdapter) -> float:
        return float(
            mean_average_precision(self.yt, model.predict_objects(self.Xt), self.classes)["map50"]
        )


def _box_features(objects: Sequence[Objects]) -> np.ndarray:
    """Log width and height of every object's box (flat order)."""
    boxes = np.concatenate([o.boxes for o in objects])
    wh = np.maximum(boxes[:, 2:] - boxes[:, :2], 0.25)
    return np.log(wh).astype(np.float64)


# ----------------------------------------------------------------------------- label errors


def inject_object_noise(
    objects: Sequence[Objects], share: float, n_classes: int, seed: int
) -> tuple[list[Objects], np.ndarray]:
    """Objects with ``round(share * m)`` classes moved uniformly to another; flat indices."""
    rng = np.random.default_rng(seed)
    flat = np.concatenate([o.classes for o in objects])
    flipped = np.sort(rng.choice(flat.size, round(share * flat.size), replace=False))
    noisy = flat.copy()
    noisy[flipped] = (flat[flipped] + rng.integers(1, n_classes, flipped.size)) % n_classes
    out, start = [], 0
    for o in objects:
        out.append(Objects(o.boxes, noisy[start : start + len(o)]))
        start += len(o)
    return out, flipped


def label_errors_seed(setup: Setup, seed: int, noise: float, folds: int) -> dict[str, Any]:
    k = len(setup.classes)
    noisy, flipped = inject_object_noise(setup.y, noise, k, seed)
    truth = np.concatenate([o.classes for o in setup.y])
    given = np.concatenate([o.classes for o in noisy])
    is_flipped = np.zeros(truth.size, dtype=bool)
    is_flipped[flipped] = True
    m = int(flipped.size)

    def fit(x: np.ndarray, o: list[Objects], fold: int) -> DetectorAdapter:
        return setup.detector(seed * 100 + fold).fit(x, o)

    t0 = time.perf_counter()
    proba = out_of_fold_object_proba(setup.X, noisy, fit, n_splits=folds, seed=seed)
    oof_s = time.perf_counter() - t0
    order = rank_by_self_confidence(proba, given, np.arange(k))
    top = np.zeros(truth.size, dtype=bool)
    top[order[: 2 * m]] = True
    row: dict[str, Any] = {
        "seed": seed,
        "objects": int(truth.size),
        "injected": m,
        "oof_seconds": oof_s,
        "oof_accuracy": float((proba.argmax(axis=1) == truth).mean()),
        "found_top2x": float(top[flipped].mean()),
        "found_top2x_by_true_class": {
            name: float(top[flipped[truth[flipped] == c]].mean())
            for c, name in enumerate(setup.classes)
        },
    }
    for method in METHODS:
        errors = object_label_errors(proba, noisy, setup.classes, method=method)
        hit = is_flipped[errors.indices]
        row[method] = {
            "n_estimated": errors.n_estimated_errors,
            "n_flagged": len(errors),
            "precision": float(hit.mean()) if len(errors) else float("nan"),
            "recall": float(hit.sum() / m),
        }
    # reference: the box's size alone, out of fold
    size_proba, size_classes = out_of_fold_proba(
        _box_features(noisy), given, recipe="logreg", folds=folds, seed=seed
    )
    size_order = rank_by_self_confidence(size_proba, given, size_classes)
    row["size_only_found_top2x"] = float(is_flipped[size_order[: 2 * m]].sum() / m)
    return row


# -------------------------------------------------------------------------------- pruning


def _flip_rows(X: np.ndarray, side: int, horizontal: bool, vertical: bool) -> np.ndarray:
    img = X.reshape(-1, side, side)
    if horizontal:
        img = img[:, :, ::-1]
    if vertical:
        img = img[:, ::-1, :]
    return np.ascontiguousarray(img).reshape(X.shape[0], -1)


def _flip_objects(o: Objects, side: int, horizontal: bool, vertical: bool) -> Objects:
    b = o.boxes.copy()
    if horizontal:
        b[:, [0, 2]] = side - o.boxes[:, [2, 0]]
    if vertical:
        b[:, [1, 3]] = side - o.boxes[:, [3, 1]]
    return Objects(b, o.classes)


def inject_copies(
    X: np.ndarray, y: Sequence[Objects], side: int, share: float, seed: int
) -> tuple[np.ndarray, list[Objects], np.ndarray]:
    """The tiles plus flipped, noisy copies of ``round(share * n)`` of them; source of each row."""
    rng = np.random.default_rng([seed, 7])
    n = len(y)
    src = np.sort(rng.choice(n, round(share * n), replace=False))
    modes = [(True, False), (False, True), (True, True)]
    rows, objs = [], []
    for i in src:
        h, v = modes[int(rng.integers(3))]
        copy = _flip_rows(X[i : i + 1], side, h, v) + rng.normal(0, COPY_NOISE, (1, X.shape[1]))
        rows.append(np.clip(copy, 0.0, 1.0).astype(np.float32))
        objs.append(_flip_objects(y[i], side, h, v))
    X_aug = np.vstack([X, *rows]) if rows else X
    return X_aug, [*y, *objs], np.concatenate([np.arange(n), src])


def flip_invariant(values: np.ndarray) -> np.ndarray:
    """Mean of the four flips (none, h, v, both) of each row's ``side x side`` layout."""
    side = round(math.sqrt(values.shape[1]))
    return np.mean(
        [_flip_rows(values, side, h, v) for h in (False, True) for v in (False, True)], axis=0
    )


def tile_embeddings(model: DetectorAdapter, X: np.ndarray, side: int, how: str) -> np.ndarray:
    """Flip-invariant tile embeddings: detector features or pooled pixels, four flips averaged."""
    if how == "pixels":
        img = X.reshape(-1, side // 4, 4, side // 4, 4).mean(axis=(2, 4)).reshape(X.shape[0], -1)
        return flip_invariant(img)
    out = []
    for h in (False, True):
        for v in (False, True):
            emb = model.predict(_flip_rows(X, side, h, v), embeddings=True).embeddings
            assert emb is not None
            out.append(emb)
    return np.mean(out, axis=0)


def tile_f1(truth: Objects, found: Objects) -> float:
    """F1 at IoU 0.5, class aware, of the boxes scored at least ``SCORE`` (1 for two empties)."""
    found = found.above(SCORE)
    if not len(truth) and not len(found):
        return 1.0
    if not len(truth) or not len(found):
        return 0.0
    iou = box_iou(truth.boxes, found.boxes)
    iou[truth.classes[:, None] != found.classes[None, :]] = 0.0
    matched = 0
    used = np.zeros(len(found), dtype=bool)
    for t in np.argsort(-iou.max(axis=1)):
        cand = np.where(~used & (iou[t] >= 0.5), iou[t], -1.0)
        j = int(cand.argmax())
        if cand[j] >= 0.5:
            used[j] = True
            matched += 1
    return 2.0 * matched / (len(truth) + len(found))


def pruning_seed(
    setup: Setup,
    seed: int,
    share: float,
    folds: int,
    embeddings: Sequence[str],
    confident: bool,
    tile_threshold: float = TILE_F1,
) -> dict[str, Any]:
    """One seed: the detector before pruning, then one plan and one retrained detector per
    embedding (the same copies, confident tiles and seed for every embedding)."""
    X, y, source = inject_copies(setup.X, setup.y, setup.side, share, seed)
    n = len(y)
    n_clean = len(setup.y)
    t0 = time.perf_counter()
    before = setup.detector(seed).fit(X, y)
    fit_before = time.perf_counter() - t0
    map_before = setup.map50(before)
    proba = classes = None
    f1 = np.zeros(n)
    t1 = time.perf_counter()
    if confident:
        # grouped out-of-fold detectors: a copy is never judged by a model trained on its source
        from sklearn.model_selection import GroupKFold

        for fold, (train, test) in enumerate(GroupKFold(folds).split(X, groups=source)):
            model = setup.detector(seed * 100 + 50 + fold).fit(X[train], [y[i] for i in train])
            found = model.predict_objects(X[test])
            f1[test] = [tile_f1(y[i], f) for i, f in zip(test, found, strict=True)]
        proba = np.column_stack([1.0 - f1, f1])
        classes = np.array([0, 1])
    confident_s = time.perf_counter() - t1
    copies = np.arange(n_clean, n)
    orig = source[copies]
    unrelated = np.ones(n_clean, dtype=bool)
    unrelated[orig] = False
    steps_before = math.ceil(n / BATCH) * setup.epochs
    row: dict[str, Any] = {
        "seed": seed,
        "n_clean": n_clean,
        "n_labeled": n,
        "map50_before": map_before,
        "tile_f1_mean": float(f1.mean()) if confident else None,
        "fit_seconds_before": fit_before,
        "confident_seconds": confident_s,
        "steps": steps_before,
    }
    for how in embeddings:
        plan = prune_plan(
            tile_embeddings(before, X, setup.side, how),
            np.ones(n, dtype=np.int64),
            proba=proba,
            classes=classes,
            max_confident_share=CONFIDENT_SHARE,
            margin=2 * tile_threshold - 1,
        )
        keep = plan.keep_mask()
        dup = np.zeros(n, dtype=bool)
        dup[[r.index for r in plan.removals if r.reason == "near_duplicate"]] = True
        epochs_after = math.ceil(steps_before / math.ceil(max(int(keep.sum()), 1) / BATCH))
        after = setup.detector(seed, epochs=epochs_after).fit(
            X[keep], [y[i] for i in np.flatnonzero(keep)]
        )
        map_after = setup.map50(after)
        row[how] = {
            "n_after": int(keep.sum()),
            "share_removed": plan.share,
            "smaller_than_clean": 1.0 - keep.sum() / n_clean,
            "removed_near_duplicate": plan.count("near_duplicate"),
            "removed_confident": plan.count("confident"),
            # a pair is caught when its copy or its source is proposed as a near duplicate
            "injected_caught": float(np.mean(dup[orig] | dup[copies])),
            # near-duplicate proposals that touch no injected pair
            "unrelated_removed": int(dup[:n_clean][unrelated].sum()),
            "radius": plan.radius,
            "epochs_after": epochs_after,
            "map50_after": map_after,
            "map50_diff": map_after - map_before,
        }
    return row


# ---------------------------------------------------------------------------- class split


def class_split_seed(setup: Setup, seed: int) -> dict[str, Any]:
    merged = [Objects(o.boxes, np.zeros(len(o), np.int64)) for o in setup.y]
    truth = np.concatenate([o.classes for o in setup.y])
    t0 = time.perf_counter()
    model = setup.detector(seed, classes=["nucleus+micronucleus"]).fit(setup.X, merged)
    fit_s = time.perf_counter() - t0
    _, emb = model.describe_objects(setup.X, merged)
    rng = np.random.default_rng([seed, 11])
    take = np.sort(rng.choice(truth.size, round(SAMPLE * truth.size), replace=False))
    out: dict[str, Any] = {"seed": seed, "objects": int(take.size), "fit_seconds": fit_s}
    # the detector's embeddings with the library's defaults (L2-normalized); the box size
    # standardized and not normalized (a direction of two log sizes says little); both
    # side by side with the library's defaults
    box = _box_features(setup.y)
    embeddings = {
        "detector": (emb, False, True),
        "box_size": (box, True, False),
        "detector+box_size": (np.hstack([emb, box]), False, True),
    }
    for name, (z, standardize, l2) in embeddings.items():
        for method in ("kmeans", "agglomerative"):
            t1 = time.perf_counter()
            split = propose_split(
                z[take],
                n_classes=2,
                seed=seed,
                method=method,
                standardize=standardize,
                l2_normalize=l2,
            )
            out[f"{name}/{method}"] = {
                "ari": float(adjusted_rand_score(truth[take], split.cluster)),
                "silhouette": split.silhouette,
                "seconds": time.perf_counter() - t1,
            }
        out[f"{name}/choose_n_classes"] = choose_n_classes(
            z[take], max_k=5, seed=seed, standardize=standardize, l2_normalize=l2
        )
    return out


# -------------------------------------------------------------------------------- report


def summarize(result: dict[str, Any]) -> None:
    """Add mean [95% CI] summaries and goal verdicts to ``result`` in place."""
    parts = result["parts"]
    if "label_errors" in parts:
        runs = parts["label_errors"]["runs"]
        s: dict[str, Any] = {
            key: mean_ci([r[key] for r in runs])
            for key in ("found_top2x", "oof_accuracy", "size_only_found_top2x", "oof_seconds")
        }
        for name in runs[0]["found_top2x_by_true_class"]:
            s[f"found_top2x/{name}"] = mean_ci([r["found_top2x_by_true_class"][name] for r in runs])
        for method in METHODS:
            s[method] = {key: mean_ci([r[method][key] for r in runs]) for key in runs[0][method]}
        s["goal_met"] = bool(s["found_top2x"]["mean"] >= GOAL_FOUND)
        s["goal_met_with_ci"] = bool(s["found_top2x"]["lo"] >= GOAL_FOUND)
        parts["label_errors"]["summary"] = s
    if "pruning" in parts:
        runs = parts["pruning"]["runs"]
        s = {"map50_before": mean_ci([r["map50_before"] for r in runs])}
        keys = (
            "share_removed",
            "smaller_than_clean",
            "injected_caught",
            "unrelated_removed",
            "map50_after",
            "map50_diff",
            "n_after",
        )
        for how in result["config"]["embeddings"]:
            e: dict[str, Any] = {key: mean_ci([r[how][key] for r in runs]) for key in keys}
            e["significant_loss"] = bool(e["map50_diff"]["hi"] < 0)
            e["goal_met"] = bool(
                e["share_removed"]["mean"] >= GOAL_SMALLER and not e["significant_loss"]
            )
            s[how] = e
        parts["pruning"]["summary"] = s
    if "class_split" in parts:
        runs = parts["class_split"]["runs"]
        s = {}
        for key in runs[0]:
            if "/" in key and not key.endswith("choose_n_classes"):
                s[key] = {
                    "ari": mean_ci([r[key]["ari"] for r in runs]),
                    "silhouette": mean_ci([r[key]["silhouette"] for r in runs]),
                }
            elif key.endswith("choose_n_classes"):
                s[key] = f"{sum(r[key] == 2 for r in runs)}/{len(runs)} picked 2"
        parts["class_split"]["summary"] = s


def _f(ci: dict[str, float], digits: int = 3) -> str:
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "# Curation on detection: real nuclei tiles (issue #12)",
        "",
        f"Command: `{result['command']}`",
        "",
        (
            f"mnfinder nuclei (real): {result['data']['pool_tiles']} labeled tiles "
            f"({result['data']['pool_objects']} objects), {result['data']['test_tiles']} test "
            f"tiles; CenterNet at {cfg['image_side']} px, {cfg['epochs']} epochs, batch {BATCH}; "
            "paired seeds per part: "
            + ", ".join(f"{p} {len(v['runs'])}" for p, v in result["parts"].items())
            + "; mean [95% t CI] over seeds; "
            f"{(result['seconds'] + result.get('earlier_seconds', 0.0)) / 60:.1f} min in all."
        ),
        "",
    ]
    parts = result["parts"]
    if "label_errors" in parts:
        s = parts["label_errors"]["summary"]
        r0 = parts["label_errors"]["runs"][0]
        lines += [
            "## Object label errors",
            "",
            (
                f"{cfg['noise']:.0%} of {r0['objects']} objects ({r0['injected']}) given the other "
                f"class; out-of-fold probabilities from {cfg['folds']} detectors."
            ),
            "",
            "| figure | value |",
            "|---|---|",
            f"| found in top 2x budget (goal >= {GOAL_FOUND:.0%}) | {_f(s['found_top2x'])} |",
        ]
        for key, v in s.items():
            if key.startswith("found_top2x/"):
                lines.append(f"| found in top 2x, true class {key.split('/')[1]} | {_f(v)} |")
        lines += [
            f"| reference: box size alone, found in top 2x | {_f(s['size_only_found_top2x'])} |",
            f"| out-of-fold accuracy vs true classes | {_f(s['oof_accuracy'])} |",
        ]
        for method in METHODS:
            ms = s[method]
            lines.append(
                f"| {method}: estimated / flagged / precision / recall | "
                f"{ms['n_estimated']['mean']:.0f} / {ms['n_flagged']['mean']:.0f} / "
                f"{_f(ms['precision'])} / {_f(ms['recall'])} |"
            )
        verdict = (
            "met" if s["goal_met_with_ci"] else "met on the mean" if s["goal_met"] else "not met"
        )
        lines += ["", f"Goal (>= {GOAL_FOUND:.0%} in the top 2x budget): **{verdict}**.", ""]
    if "pruning" in parts:
        s = parts["pruning"]["summary"]
        r0 = parts["pruning"]["runs"][0]
        lines += [
            "## Pruning",
            "",
            (
                f"{cfg['dup_share']:.0%} flipped + noisy copies injected into the "
                f"{r0['n_clean']} tiles; near duplicates in flip-invariant embeddings"
                + (
                    f", plus confident tiles (out-of-fold tile F1 >= {cfg['tile_f1_threshold']}, "
                    f"<= {CONFIDENT_SHARE:.0%})"
                    if cfg["confident"]
                    else ""
                )
                + "; the detector after pruning trains for the same number of optimizer steps "
                f"as before. mAP@0.5 before pruning: {_f(s['map50_before'])}."
            ),
            "",
            (
                "| embedding | labeled (with copies) | after pruning | removed | smaller than "
                "the clean set | copies caught | unrelated tiles removed | mAP@0.5 after "
                "| difference after - before [95% CI] | goal |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for how in cfg["embeddings"]:
            e = s[how]
            lines.append(
                f"| {how} | {r0['n_labeled']} | {e['n_after']['mean']:.0f} "
                f"| {_f(e['share_removed'])} | {_f(e['smaller_than_clean'])} "
                f"| {_f(e['injected_caught'])} | {e['unrelated_removed']['mean']:.1f} "
                f"| {_f(e['map50_after'])} | {e['map50_diff']['mean']:+.3f} "
                f"[{e['map50_diff']['lo']:+.3f}, {e['map50_diff']['hi']:+.3f}] "
                f"| {'met' if e['goal_met'] else 'not met'} |"
            )
        lines += [
            "",
            (
                f"Goal: >= {GOAL_SMALLER:.0%} smaller with no significant mAP@0.5 loss "
                "(upper end of the paired difference's interval below 0 counts as a loss)."
            ),
            "",
        ]
    if "class_split" in parts:
        s = parts["class_split"]["summary"]
        lines += [
            "## Class split (nucleus + micronucleus merged)",
            "",
            f"{SAMPLE:.0%} sample of the labeled objects, split in two.",
            "",
            "| embedding / method | ARI | silhouette |",
            "|---|---|---|",
        ]
        for key, v in s.items():
            if isinstance(v, dict):
                lines.append(f"| {key} | {_f(v['ari'])} | {v['silhouette']['mean']:.3f} |")
        lines += [""]
        lines += [
            f"- choose_n_classes ({k.split('/')[0]}): {v}"
            for k, v in s.items()
            if isinstance(v, str)
        ]
        lines += [""]
    return "\n".join(lines)


#: Settings each part reads (an --update run keeps those of the parts it does not redo).
PART_SETTINGS = {
    "label_errors": ("noise", "folds"),
    "pruning": ("dup_share", "folds", "embeddings", "confident", "tile_f1_threshold"),
    "class_split": (),
}


def _keep_other_parts(
    result: dict[str, Any], previous: dict[str, Any], parser: argparse.ArgumentParser
) -> None:
    """Carry the parts of an earlier run that this run does not redo into ``result``."""
    old, new = previous["config"], result["config"]
    differ = [k for k in ("image_side", "epochs", "batch_size") if old.get(k) != new[k]]
    kept = {p: v for p, v in previous["parts"].items() if p not in result["parts"]}
    redone = {k for p in result["parts"] for k in PART_SETTINGS[p]}
    for part, value in kept.items():
        value.setdefault("seeds", old["seeds"])
        for key in PART_SETTINGS[part]:
            if key in redone and old.get(key) != new[key]:
                differ.append(key)
            new[key] = old.get(key, new[key])
    if differ:
        parser.error(f"--update: the earlier run differs in {', '.join(sorted(set(differ)))}")
    result["parts"] = {
        p: kept.get(p) or result["parts"][p] for p in PARTS if p in kept or p in result["parts"]
    }
    new["parts"] = list(result["parts"])
    result["command"] = f"{previous['command']}; then {result['command']}"
    result["earlier_seconds"] = previous.get("seconds", 0.0) + previous.get("earlier_seconds", 0.0)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--image-side", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--dup-share", type=float, default=0.3)
    parser.add_argument(
        "--embeddings",
        default="pixels,detector",
        help="tile embeddings for near duplicates, comma-separated: pixels, detector",
    )
    parser.add_argument("--no-confident", action="store_true", help="near duplicates only")
    parser.add_argument(
        "--tile-f1", type=float, default=TILE_F1, help="out-of-fold tile F1 of a confident tile"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default="curation_detection")
    parser.add_argument(
        "--update",
        action="store_true",
        help="rerun only --parts and keep the other parts of bench/results/OUT.json "
        "(same seeds, image side and epochs)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    embeddings = [e.strip() for e in args.embeddings.split(",") if e.strip()]
    if not embeddings or any(e not in ("pixels", "detector") for e in embeddings):
        parser.error(f"--embeddings: choose from pixels, detector; got {args.embeddings!r}")
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    setup = Setup(args.image_side, args.epochs)
    result: dict[str, Any] = {
        "benchmark": "curation_detection",
        "command": "nice python -m bench.curation_detection "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {
            "parts": parts,
            "seeds": list(range(args.seeds)),
            "image_side": args.image_side,
            "epochs": args.epochs,
            "batch_size": BATCH,
            "folds": args.folds,
            "noise": args.noise,
            "dup_share": args.dup_share,
            "copy_noise": COPY_NOISE,
            "embeddings": embeddings,
            "confident": not args.no_confident,
            "tile_f1_threshold": args.tile_f1,
            "confident_share": CONFIDENT_SHARE,
            "split_sample": SAMPLE,
        },
        "data": {
            "dataset": "nuclei (mnfinder 1.2.3, real)",
            "classes": setup.classes,
            "pool_tiles": len(setup.y),
            "pool_objects": int(sum(len(o) for o in setup.y)),
            "test_tiles": len(setup.yt),
            "test_objects": int(sum(len(o) for o in setup.yt)),
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
        },
        "parts": {p: {"seeds": list(range(args.seeds)), "runs": []} for p in parts},
    }
    path = RESULTS / f"{args.out}.json"
    if args.update and path.exists():
        _keep_other_parts(result, json.loads(path.read_text()), parser)
    for seed in range(args.seeds):
        for part in parts:
            t1 = time.perf_counter()
            if part == "label_errors":
                row = label_errors_seed(setup, seed, args.noise, args.folds)
            elif part == "pruning":
                row = pruning_seed(
                    setup,
                    seed,
                    args.dup_share,
                    args.folds,
                    embeddings,
                    not args.no_confident,
                    args.tile_f1,
                )
            else:
                row = class_split_seed(setup, seed)
            row["part_seconds"] = time.perf_counter() - t1
            result["parts"][part]["runs"].append(row)
            print(part, json.dumps(row), file=sys.stderr, flush=True)
        # written after every seed, so a stopped run leaves the seeds it finished
        result["seeds_done"] = seed + 1
        result["seconds"] = time.perf_counter() - t0
        result["machine"]["load_average_at_end"] = list(os.getloadavg())
        summarize(result)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        md = markdown(result)
        (RESULTS / f"{args.out}.md").write_text(md)
    print(md)
    return result


if __name__ == "__main__":
    main()
