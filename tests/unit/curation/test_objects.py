"""Object label errors: out-of-fold object probabilities and the confident-learning ranking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from exemplar.curation import (
    object_label_errors,
    object_positions,
    out_of_fold_object_proba,
    rank_by_self_confidence,
)
from exemplar.errors import ConfigError, InvalidPredictionsError, StrategyError
from exemplar.objects import Objects


def _objects(classes: Sequence[Sequence[int]], sizes: Sequence[Sequence[float]]) -> list[Objects]:
    """One Objects per image: square boxes of the given sides at the origin."""
    out = []
    for cls, side in zip(classes, sizes, strict=True):
        boxes = np.array([[0, 0, s, s] for s in side], np.float32).reshape(-1, 4)
        out.append(Objects(boxes, np.asarray(cls, np.int64)))
    return out


class SizeDescriber:
    """A real (if tiny) object classifier: class = nearest mean box side of the training objects.

    Records the images it was trained on, so a test can check no held-out image was among them.
    """

    def __init__(self, images: np.ndarray, objects: list[Objects], n_classes: int = 2) -> None:
        self.seen = {int(v) for v in images[:, 0]}
        sides = np.concatenate([o.boxes[:, 2] for o in objects])
        labels = np.concatenate([o.classes for o in objects])
        # a class without training objects gets a side no object has
        self.means = np.array(
            [sides[labels == k].mean() if (labels == k).any() else 1e3 for k in range(n_classes)]
        )

    def describe_objects(
        self, X: np.ndarray, objects: Sequence[Objects]
    ) -> tuple[np.ndarray, np.ndarray]:
        assert not self.seen & {int(v) for v in X[:, 0]}, "a held-out image was trained on"
        sides = np.concatenate([o.boxes[:, 2] for o in objects])[:, None]
        logits = -((sides - self.means[None, :]) ** 2) / 4.0
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True), sides


def _noisy_scenes(n: int, seed: int) -> tuple[np.ndarray, list[Objects], np.ndarray]:
    """``n`` images of 4 objects: class 0 big (side ~10), class 1 small (~3); 10% flipped."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 2, (n, 4))
    sides = np.where(classes == 0, 10.0, 3.0) + rng.normal(0, 0.5, (n, 4))
    flat = classes.ravel().copy()
    flipped = rng.choice(flat.size, flat.size // 10, replace=False)
    flat[flipped] = 1 - flat[flipped]
    objs = _objects(flat.reshape(n, 4).tolist(), sides.tolist())
    images = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 3))  # column 0: image id
    return images, objs, np.sort(flipped)


def test_object_positions() -> None:
    objs = _objects([[0, 1], [], [1, 1, 0]], [[1, 2], [], [3, 4, 5]])
    image, position = object_positions(objs)
    np.testing.assert_array_equal(image, [0, 0, 2, 2, 2])
    np.testing.assert_array_equal(position, [0, 1, 0, 1, 2])
    empty_image, empty_position = object_positions([])
    assert empty_image.size == 0 and empty_position.size == 0


def test_out_of_fold_proba_never_describes_a_training_image() -> None:
    images, objs, flipped = _noisy_scenes(20, seed=0)
    folds: list[int] = []

    def fit(x: np.ndarray, o: list[Objects], fold: int) -> SizeDescriber:
        folds.append(fold)
        return SizeDescriber(x, o)

    proba = out_of_fold_object_proba(images, objs, fit, n_splits=4, seed=0)
    assert folds == [0, 1, 2, 3]
    assert proba.shape == (80, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # the flipped objects are the least probable under their given class
    given = np.concatenate([o.classes for o in objs])
    order = rank_by_self_confidence(proba, given, np.arange(2))
    assert set(order[: flipped.size].tolist()) == set(flipped.tolist())
    # groups keep an image's near duplicates in its fold (the describer asserts no leak)
    groups = np.arange(20) // 2
    grouped = out_of_fold_object_proba(images, objs, fit, n_splits=5, groups=groups)
    np.testing.assert_allclose(grouped.sum(axis=1), 1.0)


def test_out_of_fold_proba_checks() -> None:
    images, objs, _ = _noisy_scenes(6, seed=1)

    def fit(x: np.ndarray, o: list[Objects], fold: int) -> SizeDescriber:
        return SizeDescriber(x, o)

    with pytest.raises(ConfigError, match="n_splits"):
        out_of_fold_object_proba(images, objs, fit, n_splits=1)
    with pytest.raises(ConfigError, match="n_splits"):
        out_of_fold_object_proba(images, objs, fit, n_splits=7)
    with pytest.raises(StrategyError, match="images"):
        out_of_fold_object_proba(images[:5], objs, fit, n_splits=2)

    def varying(x: np.ndarray, o: list[Objects], fold: int) -> SizeDescriber:
        return SizeDescriber(x, o, n_classes=2 + fold)

    with pytest.raises(InvalidPredictionsError, match="class list"):
        out_of_fold_object_proba(images, objs, varying, n_splits=2)


def test_object_label_errors_flags_the_flipped_objects() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200)
    proba = np.where(truth[:, None] == np.arange(2)[None, :], 0.9, 0.1)
    proba += rng.uniform(0, 0.05, proba.shape)
    proba /= proba.sum(axis=1, keepdims=True)
    given = truth.copy()
    flipped = np.sort(rng.choice(200, 20, replace=False))
    given[flipped] = 1 - given[flipped]
    objs = _objects([given[i : i + 10].tolist() for i in range(0, 200, 10)], [[1.0] * 10] * 20)
    errors = object_label_errors(proba, objs, ["nucleus", "micronucleus"])
    np.testing.assert_array_equal(np.sort(errors.indices), flipped)
    assert set(errors.suggested.tolist()) <= {"nucleus", "micronucleus"}
    np.testing.assert_array_equal(
        errors.suggested, np.array(["nucleus", "micronucleus"])[truth[errors.indices]]
    )
    assert "labeled '" in errors.reasons[0]
    assert np.all(np.diff(errors.self_confidence) >= 0)
    # default names are the class indexes
    assert set(object_label_errors(proba, objs).suggested.tolist()) <= {"0", "1"}
    with pytest.raises(StrategyError, match="class names"):
        object_label_errors(proba, objs, ["only one"])
    bad = _objects([[2]], [[1.0]])
    with pytest.raises(StrategyError, match="0..1"):
        object_label_errors(proba[:1], bad)
