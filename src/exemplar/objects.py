"""Objects on images: the arrays detection and segmentation read and write (DESIGN.md §2).

An :class:`Objects` holds every object of one image: boxes, classes and, when a model made
them, confidences, per-box class probabilities and masks. :class:`ObjectPredictions` holds
a model's objects for a set of images, with the stochastic passes (MC dropout or ensemble
members) and augmented views (flips, shifts) that object strategies compare.

Conventions
-----------
- Boxes are ``float32`` arrays of shape ``(k, 4)``, ``x0, y0, x1, y1`` in the image's pixel
  coordinates (continuous, as COCO: a box covering pixel columns 0..9 is ``0, .., 10, ..``).
- Classes are ``int64`` indexes into the task's class list (the project's ``classes``).
- Masks are COCO run-length encodings (``{"size": [h, w], "counts": str}``), one per box,
  made and read with :mod:`pycocotools.mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from exemplar.errors import InvalidPredictionsError

__all__ = ["ObjectPredictions", "Objects", "box_iou", "outline_mask", "rescale_objects"]

#: A COCO run-length encoded mask: ``{"size": [height, width], "counts": str}``.
RLE = dict[str, object]


@dataclass(frozen=True, slots=True)
class Objects:
    """The objects of one image.

    Parameters
    ----------
    boxes : ndarray of shape (k, 4), float32
        ``x0, y0, x1, y1`` in pixels, ``x1 >= x0`` and ``y1 >= y0``.
    classes : ndarray of shape (k,), int64
        Class index of each box.
    scores : ndarray of shape (k,), float32, optional
        Detection confidence of each box in [0, 1] (None for ground truth).
    class_proba : ndarray of shape (k, c), float32, optional
        Per-box class probabilities (rows sum to one), when the model gives them.
    masks : sequence of k COCO RLE dicts, optional
        Instance masks (segmentation), aligned with ``boxes``.
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray | None = None
    class_proba: np.ndarray | None = None
    masks: Sequence[RLE] | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "classes", classes)
        k = boxes.shape[0]
        if classes.shape[0] != k:
            raise InvalidPredictionsError(f"{k} boxes but {classes.shape[0]} classes")
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
            if scores.shape[0] != k:
                raise InvalidPredictionsError(f"{k} boxes but {scores.shape[0]} scores")
            object.__setattr__(self, "scores", scores)
        if self.class_proba is not None:
            proba = np.asarray(self.class_proba, dtype=np.float32)
            if proba.ndim != 2 or proba.shape[0] != k:
                raise InvalidPredictionsError(
                    f"class_proba must have shape ({k}, n_classes), got {proba.shape}"
                )
            object.__setattr__(self, "class_proba", proba)
        if self.masks is not None and len(self.masks) != k:
            raise InvalidPredictionsError(f"{k} boxes but {len(self.masks)} masks")
        if k and not np.isfinite(boxes).all():
            raise InvalidPredictionsError("boxes contain NaN or infinite coordinates")
        if k and ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
            raise InvalidPredictionsError("boxes must be x0, y0, x1, y1 with x1 >= x0, y1 >= y0")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, *, scored: bool = False) -> Objects:
        """No objects (a background image); ``scored`` gives an empty ``scores`` array."""
        return cls(
            np.empty((0, 4), np.float32),
            np.empty(0, np.int64),
            np.empty(0, np.float32) if scored else None,
        )

    def take(self, keep: np.ndarray) -> Objects:
        """The objects at positions ``keep`` (an index or boolean array)."""
        keep = np.asarray(keep)
        positions = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64)
        return Objects(
            self.boxes[positions],
            self.classes[positions],
            None if self.scores is None else self.scores[positions],
            None if self.class_proba is None else self.class_proba[positions],
            None if self.masks is None else [self.masks[int(i)] for i in positions],
        )

    def above(self, threshold: float) -> Objects:
        """The objects whose score is at least ``threshold`` (all of them when unscored)."""
        if self.scores is None:
            return self
        return self.take(self.scores >= threshold)

    @property
    def areas(self) -> np.ndarray:
        """Box areas in square pixels."""
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])


@dataclass(frozen=True, slots=True)
class ObjectPredictions:
    """A model's objects for ``n`` images, image ``i`` at position ``i``.

    Parameters
    ----------
    images : sequence of Objects, length n
        The model's objects for each image (its deterministic prediction).
    samples : sequence of t sequences of n Objects, optional
        Stochastic passes (MC dropout, ensemble members): ``samples[j][i]`` is pass ``j``
        on image ``i``. Committee strategies match boxes across passes by IoU.
    views : sequence of a sequences of n Objects, optional
        Predictions on augmented views (flips, small shifts), with boxes mapped back to the
        original image's frame; localization stability compares them with ``images``.
    counts : ndarray of shape (n,), optional
        Expected object count of each image (the sum of the center heat map's peak
        probabilities, or of box scores), for expected-count uncertainty.
    count_samples : ndarray of shape (t, n), optional
        The expected count under each stochastic pass.
    n_classes : int
        Number of classes.
    """

    images: Sequence[Objects]
    n_classes: int
    samples: Sequence[Sequence[Objects]] | None = None
    views: Sequence[Sequence[Objects]] | None = None
    counts: np.ndarray | None = None
    count_samples: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        for name, passes in (("samples", self.samples), ("views", self.views)):
            if passes is not None and any(len(p) != n for p in passes):
                raise InvalidPredictionsError(f"every pass of {name} must cover the {n} images")
        if self.counts is not None and np.shape(self.counts) != (n,):
            raise InvalidPredictionsError(f"counts must have shape ({n},)")
        if self.count_samples is not None and (
            np.ndim(self.count_samples) != 2 or np.shape(self.count_samples)[1] != n
        ):
            raise InvalidPredictionsError(f"count_samples must have shape (t, {n})")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, rows: np.ndarray) -> ObjectPredictions:
        """The predictions of images ``rows``."""
        idx = [int(r) for r in np.asarray(rows).reshape(-1)]
        return ObjectPredictions(
            [self.images[i] for i in idx],
            self.n_classes,
            None if self.samples is None else [[p[i] for i in idx] for p in self.samples],
            None if self.views is None else [[p[i] for i in idx] for p in self.views],
            None if self.counts is None else np.asarray(self.counts)[idx],
            None if self.count_samples is None else np.asarray(self.count_samples)[:, idx],
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (m, 4) and ``b`` (n, 4), xyxy: an (m, n) float32 array."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    if not a.size or not b.size:
        return np.zeros((a.shape[0], b.shape[0]), np.float32)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def rescale_objects(objects: Objects, factor: float, size: tuple[int, int]) -> Objects:
    """``objects`` in a frame scaled by ``factor`` whose image is ``size = (height, width)``.

    Boxes are multiplied by ``factor`` (and clipped to the new frame); masks are resampled
    (nearest neighbour) into the new frame, which crops or pads them as needed: the model's
    frame is the image scaled by ``factor`` and padded to a square at the bottom and right.
    """
    height, width = size
    boxes = objects.boxes * np.float32(factor)
    if len(objects):
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    masks = None
    if objects.masks is not None:
        from pycocotools import mask as rle

        masks = []
        for m in objects.masks:
            src = rle.decode(dict(m))
            rows = np.minimum((np.arange(height) / factor).astype(np.int64), src.shape[0] - 1)
            cols = np.minimum((np.arange(width) / factor).astype(np.int64), src.shape[1] - 1)
            out = src[rows[:, None], cols[None, :]]
            out[np.arange(height) / factor >= src.shape[0]] = 0
            out[:, np.arange(width) / factor >= src.shape[1]] = 0
            masks.append(_encode(out))
    return Objects(boxes, objects.classes, objects.scores, objects.class_proba, masks)


def outline_mask(
    polygons: Sequence[Sequence[float]] | None,
    mask: RLE | None,
    box: Sequence[float],
    factor: float,
    size: tuple[int, int],
) -> RLE:
    """One object's outline as a COCO RLE mask of a frame scaled by ``factor``.

    The outline is its polygons (``[x, y, x, y, ...]`` in image pixels), else its mask
    (an RLE of the image), else its box filled.
    """
    from pycocotools import mask as rle

    height, width = size
    if polygons:
        scaled = [[float(v) * factor for v in poly] for poly in polygons]
        return dict(rle.merge(rle.frPyObjects(scaled, height, width)))
    if mask is not None:
        whole = Objects(np.asarray([box], np.float32), np.zeros(1, np.int64), masks=[mask])
        return dict(rescale_objects(whole, factor, size).masks[0])  # type: ignore[index]
    x0, y0, x1, y1 = (float(v) * factor for v in box)
    filled = np.zeros((height, width), np.uint8)
    filled[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = 1
    return _encode(filled)


def _encode(mask: np.ndarray) -> RLE:
    from pycocotools import mask as rle

    encoded = rle.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = encoded["counts"]
    return {
        "size": [int(v) for v in encoded["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }
