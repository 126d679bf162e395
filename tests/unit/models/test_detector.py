"""The built-in CenterNet detector: learning, outputs, uncertainty, views, checkpoints, memmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

import torch
from pycocotools import mask as mask_utils

from exemplar.errors import ConfigError, ModelError
from exemplar.models import (
    FAMILIES,
    checkpoint_classes,
    get_family,
    load_model,
    make_model,
    save_model,
)
from exemplar.models.detector import DetectorAdapter, make_detector
from exemplar.models.detector_net import center_loss
from exemplar.objects import ObjectPredictions, Objects, box_iou
from exemplar.predictions import Predictions

SIDE = 64


def scene(rng: np.random.Generator, k: int, side: int = SIDE) -> tuple[np.ndarray, Objects]:
    """A dark noisy image with ``k`` bright squares or disks (class 0 squares, 1 disks)."""
    img = rng.normal(0.1, 0.03, (side, side)).astype(np.float32)
    yy, xx = np.mgrid[:side, :side]
    boxes, classes, masks = [], [], []
    for _ in range(k):
        r = int(rng.integers(3, 6))
        cx, cy = (int(v) for v in rng.integers(r, side - r, 2))
        disk = bool(rng.random() < 0.5)
        if disk:
            m = (yy - cy + 0.5) ** 2 + (xx - cx + 0.5) ** 2 <= r * r
        else:
            m = (abs(yy - cy + 0.5) < r) & (abs(xx - cx + 0.5) < r)
        img[m] = 0.9
        boxes.append((cx - r, cy - r, cx + r, cy + r))
        classes.append(int(disk))
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        masks.append({"size": [side, side], "counts": rle["counts"].decode("ascii")})
    objs = Objects(np.array(boxes, np.float32), np.array(classes, np.int64), masks=masks)
    return np.clip(img, 0, 1).ravel(), objs


def dataset(n: int, seed: int, k: int = 3) -> tuple[np.ndarray, list[Objects]]:
    rng = np.random.default_rng(seed)
    pairs = [scene(rng, k) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def recall(truth: list[Objects], found: list[Objects], threshold: float = 0.3) -> float:
    """Share of true boxes matched by a found box at IoU 0.5 or more."""
    hits = total = 0
    for t, f in zip(truth, found, strict=True):
        iou = box_iou(t.boxes, f.above(threshold).boxes)
        hits += int((iou.max(axis=1) >= 0.5).sum()) if iou.shape[1] else 0
        total += len(t)
    return hits / total


@pytest.fixture(scope="module")
def train() -> tuple[np.ndarray, list[Objects]]:
    return dataset(48, seed=0)


@pytest.fixture(scope="module")
def test() -> tuple[np.ndarray, list[Objects]]:
    return dataset(12, seed=1)


def _model(**params: Any) -> DetectorAdapter:
    settings: dict[str, Any] = {"image_side": SIDE, "batch_size": 8, "classes": ["square", "disk"]}
    settings.update(params)
    return make_detector(0, **settings)


@pytest.fixture(scope="module")
def fitted(train: tuple[np.ndarray, list[Objects]]) -> DetectorAdapter:
    """A segmentation detector trained on the 48 training scenes (shared by most tests)."""
    return _model(epochs=20, mc_passes=4, segmentation=True).fit(*train)


def test_learns_to_find_objects(
    fitted: DetectorAdapter,
    train: tuple[np.ndarray, list[Objects]],
    test: tuple[np.ndarray, list[Objects]],
) -> None:
    untrained = _model(epochs=1, lr=1e-9).fit(*train)
    trained_recall = recall(test[1], fitted.predict_objects(test[0]))
    untrained_recall = recall(test[1], untrained.predict_objects(test[0]))
    assert fitted.history_[0][-1] < fitted.history_[0][0] / 3
    assert trained_recall >= 0.7
    assert trained_recall > untrained_recall + 0.5
    # classes: squares and disks told apart on most matched boxes
    right = total = 0
    for t, f in zip(test[1], fitted.predict_objects(test[0]), strict=True):
        f = f.above(0.3)
        iou = box_iou(t.boxes, f.boxes)
        if not iou.shape[1]:
            continue
        best = iou.argmax(axis=1)
        ok = iou.max(axis=1) >= 0.5
        right += int((f.classes[best[ok]] == t.classes[ok]).sum())
        total += int(ok.sum())
    assert right / total >= 0.8


def test_prediction_outputs(
    fitted: DetectorAdapter, test: tuple[np.ndarray, list[Objects]]
) -> None:
    X = test[0]
    pred = fitted.predict(X, samples=True, embeddings=True, views=True)
    assert isinstance(pred, Predictions) and pred.proba is None
    objs = pred.require_objects()
    assert isinstance(objs, ObjectPredictions) and len(objs) == len(X) and objs.n_classes == 2
    assert list(fitted.classes_) == ["square", "disk"]
    for o in objs.images:
        assert o.boxes.dtype == np.float32 and o.classes.dtype == np.int64
        assert o.scores is not None and o.scores.dtype == np.float32
        assert (o.scores >= fitted.config.score_threshold).all() and (o.scores <= 1).all()
        assert o.class_proba is not None and o.class_proba.shape == (len(o), 2)
        np.testing.assert_allclose(o.class_proba.sum(axis=1), 1.0, atol=1e-5)
        assert (o.boxes >= 0).all() and (o.boxes <= SIDE).all()
        assert o.masks is not None and len(o.masks) == len(o)
    assert objs.samples is not None and len(objs.samples) == 4
    assert objs.views is not None and len(objs.views) == 3
    assert objs.counts is not None and objs.counts.shape == (len(X),)
    assert objs.count_samples is not None and objs.count_samples.shape == (4, len(X))
    # the expected count tracks the number of objects (3 per image)
    assert abs(float(objs.counts.mean()) - 3.0) < 1.0
    assert pred.embeddings is not None and pred.embeddings.dtype == np.float32
    assert pred.embeddings.shape == (len(X), 4 * fitted.config.width)
    assert np.isfinite(pred.embeddings).all()
    plain = fitted.predict(X)
    assert plain.embeddings is None and plain.objects is not None
    assert plain.objects.samples is None and plain.objects.views is None


def test_mc_dropout_passes_differ_and_eval_is_deterministic(
    fitted: DetectorAdapter, test: tuple[np.ndarray, list[Objects]]
) -> None:
    X = test[0]
    a, b = fitted.predict(X, samples=True), fitted.predict(X, samples=True)
    oa, ob = a.require_objects(), b.require_objects()
    for x, y in zip(oa.images, ob.images, strict=True):
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.scores, y.scores)
    np.testing.assert_array_equal(oa.count_samples, ob.count_samples)  # seeded passes
    assert oa.count_samples is not None and oa.samples is not None
    assert np.ptp(oa.count_samples, axis=0).max() > 1e-4
    first, second = oa.samples[0], oa.samples[1]
    assert any(
        len(p) != len(q) or not np.array_equal(p.scores, q.scores)
        for p, q in zip(first, second, strict=True)
    )
    # the eval prediction is no pass: it differs from the passes too
    assert not np.array_equal(oa.counts, oa.count_samples[0])


def test_ensemble_members_differ(train: tuple[np.ndarray, list[Objects]]) -> None:
    X, y = train
    model = _model(epochs=2, ensemble=2).fit(X[:24], y[:24])
    assert len(model.nets_) == 2
    w0 = model.nets_[0].heat[-1].weight
    w1 = model.nets_[1].heat[-1].weight
    assert not torch.equal(w0, w1)
    objs = model.predict(X[:6], samples=True).require_objects()
    assert objs.samples is not None and len(objs.samples) == 2
    assert objs.count_samples is not None
    assert not np.allclose(objs.count_samples[0], objs.count_samples[1])
    # same seed, same members
    again = _model(epochs=2, ensemble=2).fit(X[:24], y[:24])
    assert torch.equal(again.nets_[1].heat[-1].weight, w1)


def test_views_map_boxes_back(fitted: DetectorAdapter) -> None:
    # a scene symmetric under both flips: four squares at mirrored places
    img = np.full((SIDE, SIDE), 0.1, np.float32)
    boxes = []
    for cx in (16, 48):
        for cy in (16, 48):
            img[cy - 4 : cy + 4, cx - 4 : cx + 4] = 0.9
            boxes.append((cx - 4, cy - 4, cx + 4, cy + 4))
    truth = np.array(boxes, np.float32)
    objs = fitted.predict(img.reshape(1, -1), views=True).require_objects()
    assert objs.views is not None
    main = objs.images[0].above(0.3)
    # every square is found (a weak extra box elsewhere does not matter here)
    assert (box_iou(truth, main.boxes).max(axis=1) >= 0.6).all()
    for view in objs.views:
        v = view[0].above(0.3)
        iou = box_iou(truth, v.boxes)
        assert (iou.max(axis=1) >= 0.6).all()  # mapped back onto the original squares
        # four of the view's boxes sit on the four squares (boxes not mapped back would not)
        assert (iou.max(axis=0) >= 0.6).sum() >= 4
    # the shifted view of an off-center square comes back to the square, not 8 px away
    one = np.full((SIDE, SIDE), 0.1, np.float32)
    one[10:18, 40:48] = 0.9
    shifted = fitted.predict(one.reshape(1, -1), views=True).require_objects()
    assert shifted.views is not None
    box = shifted.views[2][0].above(0.3).boxes
    assert box_iou(np.array([[40, 10, 48, 18]], np.float32), box).max() >= 0.6


def test_save_load_round_trip(
    fitted: DetectorAdapter, test: tuple[np.ndarray, list[Objects]], tmp_path: Path
) -> None:
    path = save_model(fitted, tmp_path / "det.pt")
    assert path.suffix == get_family("detector").suffix
    payload = torch.load(path, weights_only=True)  # plain tensors and strings only
    assert payload["format"] == "exemplar.detector/1"
    assert list(checkpoint_classes(path)) == ["square", "disk"]
    assert list(checkpoint_classes(path, "centernet")) == ["square", "disk"]
    loaded = load_model("centernet", path)
    assert isinstance(loaded, DetectorAdapter)
    assert loaded.config == fitted.config
    X = test[0]
    a = fitted.predict(X, samples=True, views=True, embeddings=True)
    b = loaded.predict(X, samples=True, views=True, embeddings=True)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    oa, ob = a.require_objects(), b.require_objects()
    np.testing.assert_array_equal(oa.counts, ob.counts)
    np.testing.assert_array_equal(oa.count_samples, ob.count_samples)
    for x, y in zip(oa.images, ob.images, strict=True):
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.class_proba, y.class_proba)
    # a torch-family checkpoint is not a detector checkpoint, and the reverse
    with pytest.raises(ModelError, match="not an exemplar torch checkpoint"):
        load_model("cnn", path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.pt"):
        load_model("centernet", bad)


def test_memmap_input_is_read_in_chunks(
    fitted: DetectorAdapter, test: tuple[np.ndarray, list[Objects]], tmp_path: Path
) -> None:
    class CountingRows:
        """An array of rows that records how many rows each read takes."""

        def __init__(self, data: np.ndarray) -> None:
            self.data = data
            self.shape = data.shape
            self.reads: list[int] = []

        def __getitem__(self, key: Any) -> np.ndarray:
            rows = self.data[key]
            self.reads.append(rows.shape[0])
            return rows

    X = test[0]
    mm = np.memmap(tmp_path / "pool.f32", np.float32, "w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    pool = np.memmap(tmp_path / "pool.f32", np.float32, "r", shape=X.shape)
    wrapped = CountingRows(pool)
    model = DetectorAdapter.load(save_model(fitted, tmp_path / "d.pt"), chunk_size=5)
    got = model.predict(wrapped, views=True)  # type: ignore[arg-type]
    assert wrapped.reads == [5, 5, 2]
    ref = fitted.predict(X, views=True).require_objects()
    for x, y in zip(got.require_objects().images, ref.images, strict=True):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-4)
    # training reads one batch of rows at a time
    X_train, y_train = dataset(20, seed=3)
    rows = CountingRows(X_train)
    _model(epochs=1, batch_size=8).fit(rows, y_train)  # type: ignore[arg-type]
    assert max(rows.reads) <= 8 and sum(rows.reads) == 20


def test_masks(fitted: DetectorAdapter, test: tuple[np.ndarray, list[Objects]]) -> None:
    objs = fitted.predict(test[0], samples=True, views=True).require_objects()
    found = 0
    for o in objs.images:
        assert o.masks is not None and len(o.masks) == len(o)
        for box, rle in zip(o.boxes, o.masks, strict=True):
            assert isinstance(rle["counts"], str)
            m = mask_utils.decode(dict(rle))
            assert m.shape == (SIDE, SIDE)
            ys, xs = np.nonzero(m)
            if ys.size:
                found += 1
                assert xs.min() >= np.floor(box[0]) and xs.max() < np.ceil(box[2])
                assert ys.min() >= np.floor(box[1]) and ys.max() < np.ceil(box[3])
    assert found > 0
    assert objs.samples is not None and all(o.masks is None for o in objs.samples[0])
    # confident boxes have masks covering much of their object
    for o in objs.images:
        o = o.above(0.5)
        if len(o):
            covered = [
                mask_utils.area(dict(r)) / max(float(a), 1.0)
                for r, a in zip(o.masks or [], o.areas, strict=True)
            ]
            assert np.median(covered) > 0.3


def test_bad_inputs_are_clear_errors(fitted: DetectorAdapter) -> None:
    with pytest.raises(ModelError, match=r"expected rows of 4096 values.*shape \(2, 100\)"):
        fitted.predict(np.zeros((2, 100), np.float32))
    with pytest.raises(ModelError, match="expected rows of 4096"):
        _model().fit(np.zeros((2, 10), np.float32), [Objects.empty(), Objects.empty()])
    with pytest.raises(ModelError, match="y has 1 entries for 2 images"):
        _model().fit(np.zeros((2, SIDE * SIDE), np.float32), [Objects.empty()])
    with pytest.raises(ModelError, match="class index 5.*2 classes"):
        one = Objects(np.array([[1, 1, 9, 9]], np.float32), np.array([5]))
        _model().fit(np.zeros((1, SIDE * SIDE), np.float32), [one])
    with pytest.raises(ModelError, match="predict_objects"):
        fitted.predict_labels(np.zeros((1, SIDE * SIDE), np.float32))
    with pytest.raises(ModelError, match="not fitted"):
        _model().predict(np.zeros((1, SIDE * SIDE), np.float32))
    still = _model(dropout=0.0, epochs=1).fit(
        np.zeros((2, SIDE * SIDE), np.float32), [Objects.empty()] * 2
    )
    with pytest.raises(ModelError, match="dropout=0"):
        still.predict(np.zeros((1, SIDE * SIDE), np.float32), samples=True)
    with pytest.raises(ConfigError, match="image_side=30"):
        make_model("centernet", image_side=30)
    with pytest.raises(ConfigError, match="unknown parameter.*nope"):
        make_model("centernet", nope=1)


def test_family_and_recipes(train: tuple[np.ndarray, list[Objects]]) -> None:
    family = FAMILIES["detector"]
    assert family.key == "detector" and family.suffix == ".pt" and family.uses_torch
    assert not family.needs_committee_for_samples
    model = make_model("centernet", 3, epochs=30, image_side=256, samples=True)
    assert isinstance(model, DetectorAdapter) and family.owns(model)
    assert model.config.epochs == 30 and model.config.image_side == 256
    assert model.config.seed == 3 and not model.config.segmentation
    seg = make_model("centernet-seg", image_side=SIDE, epochs=1)
    assert isinstance(seg, DetectorAdapter) and seg.config.segmentation
    X, y = train
    fitted = family.fit(seg, X[:8], y[:8])  # type: ignore[arg-type]
    assert family.with_samples(fitted, X, y, seed=0) is fitted  # type: ignore[arg-type]
    assert list(fitted.classes_) == ["0", "1"]  # class names from the largest index seen


def test_hard_negatives_weight_the_background_at_their_centers(
    train: tuple[np.ndarray, list[Objects]],
) -> None:
    X, y = train
    decoy = Objects(np.array([[2, 2, 10, 10]], np.float32), np.array([1]))
    model = _model(negative_weight=5.0)
    model.fit(X[:2], y[:2], negatives=[decoy, Objects.empty()])  # runs end to end
    rows = np.array([0, 1])
    no_flip = np.zeros((2, 2), bool)
    flip = np.array([[True, True], [False, False]])
    _, plain = model._batch(X, rows, y, None, None, no_flip)
    _, hard = model._batch(X, rows, y, [decoy, Objects.empty()], None, no_flip)
    _, flipped = model._batch(X, rows, y, [decoy, Objects.empty()], None, flip)
    assert float(plain.neg_weight.max()) == 1.0
    assert float(hard.neg_weight[0, 1, 1, 1]) == 5.0  # the decoy's class, center cell (6, 6) / 4
    assert float(hard.neg_weight[0, 0].max()) == 1.0 and float(hard.neg_weight[1].max()) == 1.0
    assert float(hard.neg_weight[0, 1, 10:, 10:].max()) == 1.0  # far from the decoy
    assert float(flipped.neg_weight[0, 1, 14, 14]) == 5.0  # flipped with the image: (58, 58) / 4
    # the background term at the decoy's center pulls 5 times harder
    logits = torch.zeros((2, 2, SIDE // 4, SIDE // 4), requires_grad=True)
    zeros = torch.zeros((2, 2, SIDE // 4, SIDE // 4))
    grads = []
    for targets in (plain, hard):
        out = {"heat": logits, "size": zeros[:, :2], "offset": zeros[:, :2]}
        (grad,) = torch.autograd.grad(center_loss(out, targets), logits)
        grads.append(grad)
    assert float(grads[1][0, 1, 1, 1]) == pytest.approx(5.0 * float(grads[0][0, 1, 1, 1]))
    assert torch.equal(grads[0][1], grads[1][1])
