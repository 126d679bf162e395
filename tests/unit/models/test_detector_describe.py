"""DetectorAdapter.describe_objects: class probabilities and embeddings of given objects."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from sklearn.metrics import adjusted_rand_score

from exemplar.curation import propose_split
from exemplar.errors import ModelError
from exemplar.models.detector import DetectorAdapter, make_detector
from exemplar.objects import Objects

SIDE = 64


def scene(rng: np.random.Generator, k: int) -> tuple[np.ndarray, Objects]:
    """A dark noisy image with ``k`` bright objects: class 0 large squares, class 1 small disks."""
    img = rng.normal(0.1, 0.03, (SIDE, SIDE)).astype(np.float32)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    boxes, classes = [], []
    for _ in range(k):
        disk = bool(rng.random() < 0.5)
        r = int(rng.integers(2, 4)) if disk else int(rng.integers(5, 8))
        cx, cy = (int(v) for v in rng.integers(r, SIDE - r, 2))
        if disk:
            m = (yy - cy + 0.5) ** 2 + (xx - cx + 0.5) ** 2 <= r * r
        else:
            m = (abs(yy - cy + 0.5) < r) & (abs(xx - cx + 0.5) < r)
        img[m] = 0.9
        boxes.append((cx - r, cy - r, cx + r, cy + r))
        classes.append(int(disk))
    objs = Objects(np.array(boxes, np.float32), np.array(classes, np.int64))
    return np.clip(img, 0, 1).ravel(), objs


def dataset(n: int, seed: int, k: int = 3) -> tuple[np.ndarray, list[Objects]]:
    rng = np.random.default_rng(seed)
    pairs = [scene(rng, k) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def _model(**params: object) -> DetectorAdapter:
    settings: dict[str, object] = {
        "image_side": SIDE,
        "batch_size": 8,
        "classes": ["square", "disk"],
        "epochs": 15,
    }
    settings.update(params)
    return make_detector(0, **settings)


@pytest.fixture(scope="module")
def fitted() -> DetectorAdapter:
    return _model().fit(*dataset(40, seed=0))


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, list[Objects]]:
    return dataset(12, seed=1)


def test_shapes_order_and_normalization(
    fitted: DetectorAdapter, held_out: tuple[np.ndarray, list[Objects]]
) -> None:
    X, objs = held_out
    objs = list(objs)
    objs[3] = Objects.empty()  # an image without objects contributes no rows
    proba, emb = fitted.describe_objects(X, objs)
    m = sum(len(o) for o in objs)
    assert proba.shape == (m, 2) and proba.dtype == np.float32
    assert emb.shape == (m, 2 * fitted.config.width) and emb.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (proba >= 0).all() and np.isfinite(emb).all()
    # image order, then object order: describing images one by one gives the same rows
    rows = [fitted.describe_objects(X[i : i + 1], [objs[i]]) for i in range(len(objs))]
    np.testing.assert_allclose(np.concatenate([r[0] for r in rows]), proba, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([r[1] for r in rows]), emb, atol=1e-4)
    # a different box on the same image reads a different place
    moved = [Objects(o.boxes[::-1].copy(), o.classes) for o in objs]
    assert not np.allclose(fitted.describe_objects(X, moved)[1], emb)


def test_trained_detector_prefers_the_true_class(
    fitted: DetectorAdapter, held_out: tuple[np.ndarray, list[Objects]]
) -> None:
    X, objs = held_out
    truth = np.concatenate([o.classes for o in objs])
    proba, emb = fitted.describe_objects(X, objs)
    p_true = proba[np.arange(truth.size), truth]
    assert float((proba.argmax(axis=1) == truth).mean()) >= 0.9
    assert float(p_true.mean()) >= 0.75
    untrained = _model(epochs=1, lr=1e-9).fit(*dataset(8, seed=0))
    p_untrained, _ = untrained.describe_objects(X, objs)
    assert float(p_true.mean()) > float(p_untrained[np.arange(truth.size), truth].mean()) + 0.2
    # the box-pooled embeddings separate the two kinds of object: a split recovers them
    split = propose_split(emb, n_classes=2, seed=0)
    assert adjusted_rand_score(truth, split.cluster) >= 0.6


def test_ensemble_and_errors(held_out: tuple[np.ndarray, list[Objects]]) -> None:
    X, objs = held_out
    with pytest.raises(ModelError, match="not fitted"):
        _model().describe_objects(X, objs)
    model = _model(epochs=1, ensemble=2).fit(X, objs)
    proba, emb = model.describe_objects(X, objs)
    assert proba.shape == (sum(len(o) for o in objs), 2)
    assert emb.shape == (proba.shape[0], 2 * model.config.width)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ModelError, match="Objects for"):
        model.describe_objects(X, objs[:-1])
    with pytest.raises(ModelError, match="rows of"):
        model.describe_objects(X[:, :10], objs)
