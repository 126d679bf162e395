"""Object predictions shared by the object-strategy tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from exemplar.objects import ObjectPredictions, Objects
from exemplar.predictions import Predictions


def objs(
    boxes: Sequence[Sequence[float]],
    scores: Sequence[float] | None = None,
    proba: Sequence[Sequence[float]] | None = None,
    classes: Sequence[int] | None = None,
) -> Objects:
    """Objects from plain lists (class 0 unless given; argmax of ``proba`` if given)."""
    k = len(boxes)
    if classes is None:
        classes = np.argmax(proba, axis=1).tolist() if proba is not None and k else [0] * k
    return Objects(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(classes, np.int64),
        None if scores is None else np.asarray(scores, np.float32),
        None if proba is None else np.asarray(proba, np.float32).reshape(k, np.shape(proba)[-1]),
    )


def shifted(o: Objects, dx: float) -> Objects:
    """The same objects with every box moved ``dx`` pixels right."""
    return Objects(o.boxes + np.float32([dx, 0, dx, 0]), o.classes, o.scores, o.class_proba)


def preds(
    images: Sequence[Objects],
    *,
    n_classes: int = 2,
    samples: Sequence[Sequence[Objects]] | None = None,
    views: Sequence[Sequence[Objects]] | None = None,
    count_samples: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> Predictions:
    """Detection predictions: objects (and embeddings), no ``proba``."""
    return Predictions(
        embeddings=embeddings,
        objects=ObjectPredictions(
            list(images), n_classes, samples, views, count_samples=count_samples
        ),
    )


def random_scene(n: int = 120, seed: int = 0, n_classes: int = 3) -> Predictions:
    """``n`` images with random boxes, passes, views, count samples and embeddings."""
    rng = np.random.default_rng(seed)

    def image(k: int) -> Objects:
        xy = rng.uniform(0, 200, (k, 2))
        wh = rng.uniform(5, 30, (k, 2))
        logits = rng.normal(size=(k, n_classes)) * rng.uniform(0.1, 4)
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return objs(np.c_[xy, xy + wh], rng.uniform(0, 1, k), proba)

    images = [image(int(rng.integers(0, 8))) for _ in range(n)]

    def jitter(o: Objects) -> Objects:
        keep = rng.uniform(size=len(o)) > 0.2
        moved = o.take(keep)
        noise = rng.normal(0, 3, moved.boxes.shape).astype(np.float32)
        lo = np.minimum(moved.boxes[:, :2] + noise[:, :2], moved.boxes[:, 2:] + noise[:, 2:])
        hi = np.maximum(moved.boxes[:, :2] + noise[:, :2], moved.boxes[:, 2:] + noise[:, 2:])
        scores = np.clip(moved.scores + rng.normal(0, 0.1, len(moved)), 0, 1)  # type: ignore[operator]
        return Objects(np.c_[lo, hi], moved.classes, scores, moved.class_proba)

    samples = [[jitter(o) for o in images] for _ in range(5)]
    views = [[jitter(o) for o in images] for _ in range(3)]
    count_samples = rng.poisson(4, (5, n)).astype(np.float64)
    return preds(
        images,
        n_classes=n_classes,
        samples=samples,
        views=views,
        count_samples=count_samples,
        embeddings=rng.normal(size=(n, 8)),
    )
