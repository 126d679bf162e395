"""Detection and segmentation metrics: COCO mean average precision, box matching counts.

:func:`mean_average_precision` evaluates in memory with pycocotools' ``COCOeval`` (the
reference implementation of COCO AP): no file is written, and its prints are silenced.
:func:`match_boxes` counts true/false positives and misses at one IoU, for per-batch
precision, recall and F1.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from exemplar.objects import Objects, box_iou

__all__ = ["IOU_RANGES", "match_boxes", "mean_average_precision"]

#: The ``iou`` choices of :func:`mean_average_precision`.
IOU_RANGES = ("0.5", "0.5:0.95")


def mean_average_precision(
    truth: Sequence[Objects],
    predicted: Sequence[Objects],
    classes: Sequence[str],
    *,
    iou: str = "0.5",
    segm: bool = False,
) -> dict[str, Any]:
    """COCO-style mean average precision of predicted objects against the truth.

    Parameters
    ----------
    truth : sequence of Objects
        The true objects of each image (scores ignored).
    predicted : sequence of Objects
        The predicted objects of the same images, in the same order; boxes without
        scores count as score 1.
    classes : sequence of str
        Class names; class index ``i`` of the objects is ``classes[i]``.
    iou : {"0.5", "0.5:0.95"}, default="0.5"
        IoU thresholds of the per-class APs (``per_class``): 0.5 (PASCAL VOC), or the
        COCO average over 0.5, 0.55, ..., 0.95.
    segm : bool, default=False
        Match masks (RLE) instead of boxes: mask AP.

    Returns
    -------
    dict
        ``map50``: mAP at IoU 0.5. ``map``: mAP averaged over IoU 0.5:0.95.
        ``per_class``: class name → AP at ``iou`` (NaN for a class with no true object).
        ``n_truth``, ``n_predicted``: object counts. ``iou``: the ``iou`` asked.
        As in COCO, mAP is the mean over the classes that have true objects (101-point
        interpolated precision, every detection of an image counted); predictions of a
        class with no true object do not lower it. With no true object at all, the
        mAPs are NaN; with no prediction, they are 0.

    Raises
    ------
    ValueError
        Different numbers of images, an unknown class index, a bad ``iou``, or a missing
        mask with ``segm=True``.
    """
    if iou not in IOU_RANGES:
        raise ValueError(f"iou must be one of {', '.join(IOU_RANGES)}; got {iou!r}")
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} images of truth but {len(predicted)} of predictions")
    n_classes = len(classes)
    if n_classes < 1:
        raise ValueError("classes must name at least one class")
    for name, given in (("truth", truth), ("predicted", predicted)):
        _check_objects(given, name, n_classes, segm)

    n_truth = sum(len(o) for o in truth)
    n_predicted = sum(len(o) for o in predicted)
    per_class_nan = {str(c): float("nan") for c in classes}
    if n_truth == 0:
        return _result(float("nan"), float("nan"), per_class_nan, n_truth, n_predicted, iou)

    images: list[dict[str, Any]] = [
        {"id": i + 1, **_image_size(t, p, segm)}
        for i, (t, p) in enumerate(zip(truth, predicted, strict=True))
    ]
    categories = [{"id": c + 1, "name": str(name)} for c, name in enumerate(classes)]
    gt_anns: list[dict[str, Any]] = []
    for i, objs in enumerate(truth):
        for j in range(len(objs)):
            ann = _annotation(objs, j, i + 1, segm)
            ann.update(id=len(gt_anns) + 1, iscrowd=0)
            gt_anns.append(ann)
    dt_anns = []
    for i, objs in enumerate(predicted):
        scores = np.ones(len(objs)) if objs.scores is None else objs.scores
        for j in range(len(objs)):
            ann = _annotation(objs, j, i + 1, segm)
            ann["score"] = float(scores[j])
            if segm:
                del ann["bbox"], ann["area"]  # loadRes derives them from the mask
            dt_anns.append(ann)

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "categories": categories, "annotations": gt_anns}
        gt.createIndex()
        if dt_anns:
            dt = gt.loadRes(dt_anns)
        else:
            dt = COCO()
            dt.dataset = {"images": images, "categories": categories, "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, iouType="segm" if segm else "bbox")
        most = max((len(o) for o in predicted), default=0)
        ev.params.maxDets = [1, 10, max(100, most)]
        ev.evaluate()
        ev.accumulate()
    # precision: [iou thresholds, recall points, classes, area ranges, max dets]
    precision = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]
    cat_pos = {cat: k for k, cat in enumerate(ev.params.catIds)}
    at = slice(0, 1) if iou == "0.5" else slice(None)
    per_class: dict[str, float] = {}
    ap50: list[float] = []
    ap: list[float] = []
    for c, name in enumerate(classes):
        p = precision[:, :, cat_pos[c + 1]]
        if not (p > -1).any():
            per_class[str(name)] = float("nan")
            continue
        ap50.append(float(p[0].mean()))
        ap.append(float(p.mean()))
        per_class[str(name)] = float(p[at].mean())
    return _result(float(np.mean(ap50)), float(np.mean(ap)), per_class, n_truth, n_predicted, iou)


def match_boxes(
    truth: Sequence[Objects],
    predicted: Sequence[Objects],
    iou: float = 0.5,
    *,
    min_score: float = 0.0,
    class_aware: bool = True,
) -> dict[str, float]:
    """True positives, false positives and misses of predicted boxes at one IoU.

    Per image, predictions are taken by decreasing score (as COCO does) and each is
    matched to the free true box of the same class (any class with
    ``class_aware=False``) of highest IoU, if that IoU is at least ``iou``.

    Parameters
    ----------
    truth, predicted : sequence of Objects
        The true and predicted objects of the same images, in the same order.
    iou : float, default=0.5
        Least IoU of a match.
    min_score : float, default=0.0
        Predicted boxes with a lower score are left out.
    class_aware : bool, default=True
        A match needs the same class.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn`` (counts), ``precision = tp / (tp + fp)``,
        ``recall = tp / (tp + fn)`` and ``f1``. A ratio with nothing to count is 1 when
        the other side is empty too (nothing to find and nothing found) and 0 otherwise.

    Raises
    ------
    ValueError
        Different numbers of images or an IoU outside (0, 1].
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} images of truth but {len(predicted)} of predictions")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must be in (0, 1], got {iou!r}")
    tp = fp = fn = 0
    for true, pred in zip(truth, predicted, strict=True):
        pred = pred.above(min_score)
        scores = np.ones(len(pred)) if pred.scores is None else pred.scores
        ious = box_iou(pred.boxes, true.boxes)
        if class_aware:
            ious = np.where(pred.classes[:, None] == true.classes[None, :], ious, 0.0)
        free = np.ones(len(true), dtype=bool)
        hits = 0
        for j in np.argsort(-scores, kind="stable"):
            if not free.any():
                break
            cand = np.where(free, ious[j], -1.0)
            best = int(np.argmax(cand))
            if cand[best] >= iou:
                free[best] = False
                hits += 1
        tp += hits
        fp += len(pred) - hits
        fn += len(true) - hits
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else float(fp == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def _result(
    map50: float,
    map_: float,
    per_class: dict[str, float],
    n_truth: int,
    n_predicted: int,
    iou: str,
) -> dict[str, Any]:
    return {
        "map50": map50,
        "map": map_,
        "per_class": per_class,
        "n_truth": n_truth,
        "n_predicted": n_predicted,
        "iou": iou,
    }


def _check_objects(images: Sequence[Objects], name: str, n_classes: int, segm: bool) -> None:
    for i, objs in enumerate(images):
        if len(objs) and (objs.classes.min() < 0 or objs.classes.max() >= n_classes):
            raise ValueError(
                f"{name}: image {i}: class index {int(objs.classes.max())} outside the "
                f"{n_classes} classes"
            )
        if segm and len(objs) and objs.masks is None:
            raise ValueError(f"{name}: image {i}: segm=True needs masks on every object")


def _image_size(truth: Objects, predicted: Objects, segm: bool) -> dict[str, int]:
    """Height and width of an image: from a mask's RLE, else the extent of the boxes."""
    for objs in (truth, predicted):
        if segm and objs.masks:
            h, w = (int(v) for v in objs.masks[0]["size"])  # type: ignore[attr-defined]
            return {"height": h, "width": w}
    extent = [o.boxes[:, 2:].max(axis=0) for o in (truth, predicted) if len(o)]
    top = np.ceil(np.max(extent, axis=0)) if extent else np.ones(2)
    return {"height": max(int(top[1]), 1), "width": max(int(top[0]), 1)}


def _annotation(objs: Objects, j: int, image_id: int, segm: bool) -> dict[str, Any]:
    x0, y0, x1, y1 = (float(v) for v in objs.boxes[j])
    ann: dict[str, Any] = {
        "image_id": image_id,
        "category_id": int(objs.classes[j]) + 1,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": (x1 - x0) * (y1 - y0),
    }
    if segm:
        assert objs.masks is not None
        rle = dict(objs.masks[j])
        ann["segmentation"] = rle
        ann["area"] = float(mask_utils.area(rle))
    return ann
