"""The external-trainer contract: files out, the user's commands, JSON predictions back.

The trainer is ``tests/fixtures/external_trainer.py``: it reads the dataset exemplar wrote
on its own, learns each class's mean box area, and predicts by boxing bright blobs. The
images are synthetic (bright squares of two sizes on black).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from exemplar.errors import ConfigError, ModelError
from exemplar.models.external import (
    ExternalAdapter,
    PoolImage,
    checkpoint_classes,
    read_predictions,
)
from exemplar.objects import Objects

TRAINER = Path(__file__).resolve().parents[2] / "fixtures" / "external_trainer.py"
CLASSES = ["small", "big"]
WIDTH, HEIGHT = 64, 48


def _trainer(*args: str) -> list[str]:
    return [sys.executable, str(TRAINER), *args]


TRAIN_YOLO = _trainer(
    "train", "--data", "{data_yaml}", "--weights", "{weights}", "--seed", "{seed}"
)
TRAIN_COCO = _trainer("train", "--data", "{coco_json}", "--weights", "{weights}")
PREDICT = _trainer(
    "predict", "--weights", "{weights}", "--images", "{pool}", "--out", "{predictions}"
)


def _draw(path: Path, seed: int) -> Objects:
    """A PNG with 2-4 bright squares (3x3 'small', 9x9 'big'); returns its true objects."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((HEIGHT, WIDTH), np.uint8)
    slots = rng.permutation([(x, y) for x in (2, 18, 34, 50) for y in (2, 18, 34)])
    boxes, classes = [], []
    for x, y in slots[: rng.integers(2, 5)]:
        c = int(rng.integers(0, 2))
        side = 3 if c == 0 else 9
        pixels[y : y + side, x : x + side] = 200 + 10 * c
        boxes.append([x, y, x + side, y + side])
        classes.append(c)
    Image.fromarray(pixels).save(path)
    return Objects(np.asarray(boxes, np.float32), np.asarray(classes, np.int64))


@pytest.fixture
def images(tmp_path: Path) -> tuple[list[Path], list[Objects]]:
    folder = tmp_path / "images"
    folder.mkdir()
    paths = [folder / f"img{i:02d}.png" for i in range(8)]
    truth = [_draw(p, i) for i, p in enumerate(paths)]
    return paths, truth


def _model(tmp_path: Path, **params) -> ExternalAdapter:
    params.setdefault("train", TRAIN_YOLO)
    params.setdefault("predict", PREDICT)
    params.setdefault("workdir", str(tmp_path / "runs"))
    params.setdefault("timeout", 60)
    return ExternalAdapter(CLASSES, **params)


def _scaled(objects: Objects, fx: float, fy: float) -> np.ndarray:
    return objects.boxes * np.asarray([fx, fy, fx, fy], np.float32)


def _weights(model: ExternalAdapter) -> dict:
    return json.loads(model.weights_path_.read_text())


# ---------------------------------------------------------------------- fit and predict


@pytest.mark.parametrize(("fmt", "train"), [("yolo", TRAIN_YOLO), ("coco", TRAIN_COCO)])
def test_fit_writes_the_labeled_boxes_in_file_pixels(tmp_path, images, fmt, train) -> None:
    paths, truth = images
    # Items are half the file's size: the tool must see the boxes doubled.
    model = _model(tmp_path, train=train, format=fmt).bind_items(
        paths, [(WIDTH // 2, HEIGHT // 2)] * len(paths)
    )
    labeled = [0, 2, 3, 5]
    # y is in the item frame: the truth halved.
    half = [Objects(_scaled(truth[i], 0.5, 0.5), truth[i].classes) for i in labeled]
    model.fit(np.asarray(labeled), half)
    seen = _weights(model)
    assert seen["classes"] == CLASSES
    assert sorted(seen["boxes"]) == sorted(paths[i].name for i in labeled)
    for i in labeled:
        got = np.asarray(seen["boxes"][paths[i].name], np.float64).reshape(-1, 5)
        np.testing.assert_array_equal(got[:, 0], truth[i].classes)
        np.testing.assert_allclose(got[:, 1:], truth[i].boxes, atol=1e-3)
    assert model.run_dir_.parent == tmp_path / "runs"
    assert model.dataset_.is_dir() and model.weights_path_.is_file()


def test_predict_returns_the_tools_objects_in_each_items_frame(tmp_path, images) -> None:
    paths, truth = images
    sizes = [(WIDTH * 2, HEIGHT)] * len(paths)  # items stretched 2x horizontally
    model = _model(tmp_path).bind_items(paths, sizes)
    model.fit(np.arange(4), [Objects(_scaled(t, 2, 1), t.classes) for t in truth[:4]])
    predictions = model.predict(np.asarray([[4], [5], [6], [7]]))
    objects = predictions.require_objects()
    assert len(objects) == 4 and objects.n_classes == 2
    assert predictions.proba is None
    np.testing.assert_array_equal(predictions.classes, CLASSES)
    for found, want in zip(objects.images, truth[4:], strict=True):
        order_f = np.lexsort(found.boxes.T[::-1])
        expected = _scaled(want, 2, 1)
        order_w = np.lexsort(expected.T[::-1])
        np.testing.assert_allclose(found.boxes[order_f], expected[order_w])
        np.testing.assert_array_equal(found.classes[order_f], want.classes[order_w])
        assert found.scores is not None and ((found.scores > 0.7) & (found.scores <= 1)).all()
    # No predict folder or log is left behind after a successful run.
    assert not list(model.run_dir_.glob("predict-*"))


def test_letterboxed_frame_of_the_loops_detector(tmp_path, images) -> None:
    paths, truth = images
    side = 32  # the loop's frame: scaled by 32 / max(64, 48) = 0.5, padded to 32 x 32
    model = _model(tmp_path, image_side=side, channels=1).bind_items(paths)
    y = [Objects(_scaled(t, 0.5, 0.5), t.classes) for t in truth[:4]]
    model.fit(np.arange(4), y)
    np.testing.assert_allclose(
        np.asarray(_weights(model)["boxes"][paths[0].name])[:, 1:], truth[0].boxes, atol=1e-3
    )
    found = model.predict_objects(np.asarray([5]))[0]
    expected = _scaled(truth[5], 0.5, 0.5)
    np.testing.assert_allclose(np.sort(found.boxes, axis=0), np.sort(expected, axis=0))


def test_masks_come_back_as_rle_of_the_items_frame(tmp_path, images) -> None:
    paths, truth = images
    predict = [*PREDICT, "--masks"]
    model = _model(tmp_path, predict=predict).bind_items(paths, [(WIDTH // 2, HEIGHT // 2)] * 8)
    model.fit(np.arange(4), [Objects(_scaled(t, 0.5, 0.5), t.classes) for t in truth[:4]])
    found = model.predict_objects(np.asarray([6]))[0]
    assert found.masks is not None and len(found.masks) == len(found)
    for box, rle in zip(found.boxes, found.masks, strict=True):
        assert rle["size"] == [HEIGHT // 2, WIDTH // 2] and isinstance(rle["counts"], str)
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        ys, xs = np.nonzero(decoded)
        # The mask covers the (halved) box it was drawn as, give or take a pixel of sampling.
        assert abs(xs.min() - box[0]) <= 1 and abs(xs.max() + 1 - box[2]) <= 1
        assert abs(ys.min() - box[1]) <= 1 and abs(ys.max() + 1 - box[3]) <= 1


def test_coco_results_and_integer_classes_read_like_the_schema(tmp_path, images) -> None:
    paths, truth = images
    schema = _model(tmp_path).bind_items(paths).fit(np.arange(4), truth[:4])
    coco = (
        _model(
            tmp_path,
            predict=_trainer(
                "predict",
                "--weights",
                "{weights}",
                "--pool-json",
                "{pool_json}",
                "--out",
                "{predictions}",
                "--style",
                "coco",
                "--int-classes",
            ),
        )
        .bind_items(paths)
        .fit(np.arange(4), truth[:4])
    )
    rows = np.arange(4, 8)
    for a, b in zip(schema.predict_objects(rows), coco.predict_objects(rows), strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_allclose(a.scores, b.scores)


def test_samples_and_embeddings_when_the_tool_writes_them(tmp_path, images) -> None:
    paths, truth = images
    predict = [*PREDICT, "--samples", "3", "--embedding"]
    model = _model(tmp_path, predict=predict).bind_items(paths).fit(np.arange(4), truth[:4])
    out = model.predict(np.arange(4, 8), samples=True, embeddings=True)
    objects = out.require_objects()
    assert objects.samples is not None and len(objects.samples) == 3
    for j, passes in enumerate(objects.samples):
        for found, base in zip(passes, objects.images, strict=True):
            np.testing.assert_allclose(found.boxes[:, 0], base.boxes[:, 0] + j)
    assert out.embeddings.shape == (4, 2)
    np.testing.assert_array_equal(out.embeddings[:, 0], [len(t) for t in truth[4:]])
    plain = _model(tmp_path).bind_items(paths).fit(np.arange(4), truth[:4])
    with pytest.raises(ModelError, match="wrote no 'samples'"):
        plain.predict(np.arange(4, 6), samples=True)
    with pytest.raises(ModelError, match="no augmented views"):
        plain.predict(np.arange(4, 6), views=True)


def test_predict_runs_the_pool_in_chunks(tmp_path, images) -> None:
    paths, truth = images
    model = _model(tmp_path, chunk_size=3).bind_items(paths).fit(np.arange(4), truth[:4])
    found = model.predict_objects(np.arange(8))
    assert [len(f) for f in found] == [len(t) for t in truth]


# ---------------------------------------------------------------------- placeholders


def test_placeholders_are_substituted_and_exported(tmp_path, images) -> None:
    paths, truth = images
    record = tmp_path / "record.json"
    recorder = tmp_path / "recorder.py"
    recorder.write_text(
        "import json, os, sys\n"
        "a = sys.argv[1:]\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('EXEMPLAR_')}\n"
        f"open({str(record)!r}, 'w').write(json.dumps({{'argv': a, 'env': env, 'cwd': os.getcwd()}}))\n"
        "open(a[1], 'w').write('w')\n"
    )
    # A shell string: values are shell quoted, so a workdir with a space survives.
    train = (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(recorder))} "
        "{dataset} {weights} {data_yaml} {workdir} {seed} {classes} {device} {{literal}}"
    )
    model = ExternalAdapter(
        CLASSES,
        train=train,
        predict=PREDICT,
        workdir=str(tmp_path / "my runs"),
        seed=7,
        device="cuda:1",
        env={"EXTRA": "1"},
    ).bind_items(paths)
    model.fit(np.arange(2), truth[:2])
    got = json.loads(record.read_text())
    dataset, weights, data_yaml, workdir, seed, classes, device, literal = got["argv"]
    assert Path(dataset) == model.dataset_ and (Path(dataset) / "labels").is_dir()
    assert Path(data_yaml) == Path(dataset) / "data.yaml" and Path(data_yaml).is_file()
    assert Path(weights) == model.weights_path_ and Path(workdir) == model.run_dir_
    assert Path(got["cwd"]) == model.run_dir_
    assert (seed, classes, device, literal) == ("7", "small,big", "cuda:1", "{literal}")
    assert got["env"]["EXEMPLAR_WEIGHTS"] == weights and got["env"]["EXEMPLAR_SEED"] == "7"
    assert (model.run_dir_.parent / f"{model.run_dir_.name}.train.log").is_file()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"train": "x {nope}"}, r"uses \{nope\}"),
        ({"train": "x {predictions}"}, r"uses \{predictions\}"),
        ({"train": "x {coco_json}"}, 'needs format = "coco"'),
        ({"train": "x {weights:>5}"}, "plain"),
        ({"train": "x {weights"}, "unbalanced"),
        ({"train": []}, "non-empty list"),
        ({"train": None}, "give a 'train' command"),
        ({"format": "voc"}, "format must be one of yolo, coco"),
        ({"weights": "../w.pt"}, "inside the run folder"),
        ({"timeout": 0}, "timeout must be a positive"),
    ],
)
def test_bad_configuration_is_a_config_error(tmp_path, params, match) -> None:
    kwargs = {"train": "t {weights}", "predict": "p {predictions}", **params}
    with pytest.raises(ConfigError, match=match):
        ExternalAdapter(CLASSES, **kwargs)


# ---------------------------------------------------------------------- failures


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".log"))


def test_a_failing_train_command_quotes_its_log_and_leaves_no_run(tmp_path, images) -> None:
    paths, truth = images
    model = _model(tmp_path, train=[*TRAIN_YOLO, "--fail"]).bind_items(paths)
    with pytest.raises(ModelError, match=r"exit status 3.*out of memory \(pretend\)") as err:
        model.fit(np.arange(4), truth[:4])
    assert "\n" not in str(err.value)
    root = tmp_path / "runs"
    assert _leftovers(root) == []
    logs = list(root.glob("*.train.log"))
    assert len(logs) == 1 and str(logs[0]) in str(err.value)
    with pytest.raises(ModelError, match="not fitted"):
        model.predict(np.arange(2))


def test_a_failed_refit_keeps_the_previous_weights(tmp_path, images) -> None:
    paths, truth = images
    model = _model(tmp_path).bind_items(paths).fit(np.arange(4), truth[:4])
    before = model.predict_objects(np.arange(4, 8))
    run, weights = model.run_dir_, model.weights_path_
    model.train = [*TRAIN_YOLO, "--no-weights"]
    with pytest.raises(ModelError, match="left no weights"):
        model.fit(np.arange(6), truth[:6])
    assert (model.run_dir_, model.weights_path_) == (run, weights)
    assert _leftovers(tmp_path / "runs") == [run.name]
    after = model.predict_objects(np.arange(4, 8))
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_a_command_past_its_timeout_is_killed(tmp_path, images) -> None:
    paths, truth = images
    model = _model(tmp_path, train=[*TRAIN_YOLO, "--sleep", "60"], timeout=1).bind_items(paths)
    with pytest.raises(ModelError, match="timeout of 1 s and was killed"):
        model.fit(np.arange(4), truth[:4])
    assert _leftovers(tmp_path / "runs") == []
    pid_files = list((tmp_path / "runs").rglob("*.pid"))
    assert pid_files == []  # removed with the run folder
    assert not hasattr(model, "weights_path_")


def test_a_timed_out_shell_command_takes_its_children_with_it(tmp_path, images) -> None:
    paths, truth = images
    marker = tmp_path / "pid"
    script = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    train = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}; echo done"
    model = _model(tmp_path, train=train, timeout=1).bind_items(paths)
    with pytest.raises(ModelError, match="timeout"):
        model.fit(np.arange(2), truth[:2])
    pid = int(marker.read_text())
    for _ in range(100):  # the kill is immediate; reaping by init may take a moment
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the shell's child {pid} outlived the timeout")


def test_a_missing_program_is_a_model_error(tmp_path, images) -> None:
    paths, truth = images
    model = _model(tmp_path, train=["/no/such/trainer", "{weights}"]).bind_items(paths)
    with pytest.raises(ModelError, match="cannot run the train command"):
        model.fit(np.arange(2), truth[:2])


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        ("json", "not valid JSON"),
        ("none-written", "wrote no"),
        ("unknown-class", r"images\[0\] \(img04.png\) box 0: unknown class 'martian'"),
        ("lengths", r"images\[0\] \(img04.png\): \d+ boxes but \d+ scores"),
        ("missing-image", "not listed.*img07.png"),
        ("outside", "lies outside the 64x48 image"),
    ],
)
def test_malformed_predictions_name_the_file_and_image(tmp_path, images, corrupt, match) -> None:
    paths, truth = images
    model = _model(tmp_path).bind_items(paths).fit(np.arange(4), truth[:4])
    good = model.predict_command
    model.predict_command = [*good, "--corrupt", corrupt]
    with pytest.raises(ModelError, match=match) as err:
        model.predict(np.arange(4, 8))
    if corrupt not in ("none-written",):
        assert "predictions.json" in str(err.value)
    assert not [p for p in model.run_dir_.glob("predict-*") if p.is_dir()]
    assert len(list(model.run_dir_.glob("predict-*.log"))) == 1
    model.predict_command = good
    assert len(model.predict_objects(np.arange(4, 8))) == 4


def test_coco_results_with_an_unknown_category(tmp_path, images) -> None:
    paths, truth = images
    predict = _trainer(
        "predict",
        "--weights",
        "{weights}",
        "--images",
        "{pool}",
        "--out",
        "{predictions}",
        "--style",
        "coco",
        "--corrupt",
        "category",
    )
    model = _model(tmp_path, predict=predict).bind_items(paths).fit(np.arange(4), truth[:4])
    with pytest.raises(ModelError, match=r"result 0 \(image 1, img04.png\): unknown class"):
        model.predict(np.arange(4, 8))


# ---------------------------------------------------------------------- rows and items


def test_rows_must_be_positions_in_the_bound_items(tmp_path, images) -> None:
    paths, truth = images
    model = _model(tmp_path)
    with pytest.raises(ModelError, match="bind_items"):
        model.fit(np.arange(2), truth[:2])
    model.bind_items(paths)
    with pytest.raises(ModelError, match="integer array"):
        model.fit(np.full((2, 5), 0.5), truth[:2])
    with pytest.raises(ModelError, match="2 images but 3 object sets"):
        model.fit(np.arange(2), truth[:3])
    with pytest.raises(ModelError, match="outside the image"):
        model.fit(np.arange(1), [Objects(np.asarray([[0, 0, 99, 9]]), np.asarray([0]))])
    with pytest.raises(ModelError, match="class names"):
        ExternalAdapter(train="t {weights}", predict="p").bind_items(paths).fit([0], truth[:1])


# ---------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trips(tmp_path, images) -> None:
    paths, truth = images
    y = [Objects(_scaled(t, 0.5, 0.5), t.classes) for t in truth[:4]]
    model = _model(tmp_path, seed=5, image_side=32).bind_items(paths).fit(np.arange(4), y)
    path = model.save(tmp_path / "v1.json")
    np.testing.assert_array_equal(checkpoint_classes(path), CLASSES)
    loaded = ExternalAdapter.load(path, chunk_size=2)
    assert loaded.weights_path_ == model.weights_path_ and loaded.seed == 5
    assert loaded.image_side == 32  # the frame: predictions below would be twice as large
    assert loaded.train == model.train and loaded.predict_command == model.predict_command
    with pytest.raises(ModelError, match="bind_items"):
        loaded.predict(np.arange(4, 8))
    loaded.bind_items(paths)
    for a, b in zip(
        model.predict_objects(np.arange(4, 8)), loaded.predict_objects(np.arange(4, 8)), strict=True
    ):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.classes, b.classes)


def test_checkpoint_errors(tmp_path, images) -> None:
    paths, truth = images
    with pytest.raises(ModelError, match="not fitted"):
        _model(tmp_path).save(tmp_path / "x.json")
    model = _model(tmp_path).bind_items(paths).fit(np.arange(2), truth[:2])
    path = model.save(tmp_path / "v1.json")
    model.weights_path_.unlink()
    with pytest.raises(ModelError, match="weights .* are missing"):
        ExternalAdapter.load(path)
    (tmp_path / "other.json").write_text('{"kind": "something"}')
    with pytest.raises(ModelError, match="not an external model's checkpoint"):
        ExternalAdapter.load(tmp_path / "other.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ModelError, match="cannot be read"):
        checkpoint_classes(tmp_path / "bad.json")


# ---------------------------------------------------------------------- the reader


def _pool(tmp_path: Path, n: int = 2) -> list[PoolImage]:
    return [PoolImage(tmp_path / f"p{i}.png", 20, 10) for i in range(n)]


def _read(tmp_path: Path, document: object, n: int = 2):
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(document))
    return read_predictions(path, _pool(tmp_path, n), CLASSES)


def _entry(name: str, **fields: object) -> dict:
    return {"file": name, "boxes": [[1, 1, 5, 5]], "classes": ["big"], "scores": [0.9], **fields}


def test_reader_matches_files_by_path_name_or_index(tmp_path) -> None:
    pool = _pool(tmp_path)
    parsed = _read(
        tmp_path,
        {
            "images": [
                {"index": 1, "boxes": [], "classes": [], "scores": []},
                _entry(str(pool[0].path)),
            ]
        },
    )
    assert len(parsed[0].objects) == 1 and len(parsed[1].objects) == 0
    parsed = _read(tmp_path, {"images": [_entry("p1.png"), _entry("p0.png", classes=[0])]})
    assert parsed[0].objects.classes.tolist() == [0] and parsed[1].objects.classes.tolist() == [1]


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({"images": [_entry("p0.png"), _entry("p0.png")]}, "listed twice"),
        ({"images": [_entry("zz.png")]}, "not one of the pool's images"),
        ({"images": [_entry("p0.png", colour=1), _entry("p1.png")]}, "unknown field.*colour"),
        ({"images": [_entry("p0.png", classes=[2]), _entry("p1.png")]}, "index must be in 0..1"),
        ({"images": [_entry("p0.png", classes=[True]), _entry("p1.png")]}, "name or an index"),
        ({"images": [_entry("p0.png", scores=[1.5]), _entry("p1.png")]}, r"in \[0, 1\]"),
        ({"images": [_entry("p0.png", boxes=[[5, 1, 1, 5]]), _entry("p1.png")]}, "x1 < x0"),
        ({"images": [_entry("p0.png", boxes=[[1, 1, 5]]), _entry("p1.png")]}, "x0, y0, x1, y1"),
        ({"images": [_entry("p0.png", width=40), _entry("p1.png")]}, "not the file's 20"),
        ({"images": [_entry("p0.png", class_proba=[[0.5, 0.6]]), _entry("p1.png")]}, "summing"),
        (
            {
                "images": [
                    _entry("p0.png", masks=[{"size": [10, 20], "counts": "zz"}]),
                    _entry("p1.png"),
                ]
            },
            "malformed",
        ),
        (
            {
                "images": [
                    _entry("p0.png", masks=[{"size": [5, 5], "counts": [25]}]),
                    _entry("p1.png"),
                ]
            },
            "size",
        ),
        ({"images": [_entry("p0.png", masks=[[[1, 1, 2, 2]]]), _entry("p1.png")]}, "at least 3"),
        (
            {"images": [_entry("p0.png", samples=[_entry("x")]), _entry("p1.png")]},
            "unknown field.*file",
        ),
        (
            {
                "images": [
                    _entry("p0.png", samples=[{"boxes": [], "classes": [], "scores": []}]),
                    _entry("p1.png"),
                ]
            },
            "some images have 'samples'",
        ),
        (
            {"images": [_entry("p0.png", embedding=[1.0]), _entry("p1.png", embedding=[1.0, 2.0])]},
            "same length",
        ),
        ({"images": [], "classes": ["big", "small"]}, "not the task's"),
        ({"predictions": []}, "expected"),
        (
            [{"image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}],
            r"image_id 3 .*1\.\.2",
        ),
        (
            [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}],
            "negative width",
        ),
        ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], "missing field.*score"),
    ],
)
def test_reader_rejects_malformed_entries(tmp_path, document, match) -> None:
    with pytest.raises(ModelError, match=match) as err:
        _read(tmp_path, document)
    assert str(tmp_path / "pred.json") in str(err.value)


def test_reader_takes_rle_masks_compressed_or_not(tmp_path) -> None:
    grid = np.zeros((10, 20), np.uint8, order="F")
    grid[2:6, 3:9] = 1
    compressed = mask_utils.encode(grid)
    runs = [9 * 10 + 2, 4, 6] + [4, 6] * 5
    runs = runs[:-1] + [10 * 20 - sum(runs[:-1])]
    document = {
        "images": [
            _entry(
                "p0.png",
                boxes=[[3, 2, 9, 6]],
                masks=[{"size": [10, 20], "counts": compressed["counts"].decode()}],
            ),
            _entry("p1.png", boxes=[[3, 2, 9, 6]], masks=[{"size": [10, 20], "counts": runs}]),
        ]
    }
    parsed = _read(tmp_path, document)
    first = mask_utils.decode(
        {"size": [10, 20], "counts": parsed[0].objects.masks[0]["counts"].encode()}
    )
    np.testing.assert_array_equal(first, grid)
    second = mask_utils.decode(
        {"size": [10, 20], "counts": parsed[1].objects.masks[0]["counts"].encode()}
    )
    assert second.sum() == sum(runs[1::2])


def test_fit_writes_masks_to_coco_in_file_pixels(tmp_path, images) -> None:
    paths, truth = images
    # Items twice the file's size; each mask is the object's square, drawn in the item frame.
    item = (WIDTH * 2, HEIGHT * 2)
    y = []
    for t in truth[:2]:
        masks = []
        for x0, y0, x1, y1 in (t.boxes * 2).astype(int):
            grid = np.zeros((item[1], item[0]), np.uint8, order="F")
            grid[y0:y1, x0:x1] = 1
            masks.append(mask_utils.encode(grid))
        y.append(Objects(t.boxes * 2, t.classes, masks=masks))
    model = _model(tmp_path, train=TRAIN_COCO, format="coco").bind_items(paths, [item] * 8)
    model.fit(np.arange(2), y)
    doc = json.loads(Path(model.coco_json_).read_text())
    anns = [a for a in doc["annotations"] if a["image_id"] == doc["images"][0]["id"]]
    assert len(anns) == len(truth[0])
    for ann, (x0, y0, x1, y1) in zip(anns, truth[0].boxes.astype(int), strict=True):
        seg = ann["segmentation"]
        assert seg["size"] == [HEIGHT, WIDTH]
        grid = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        want = np.zeros((HEIGHT, WIDTH), np.uint8)
        want[y0:y1, x0:x1] = 1
        np.testing.assert_array_equal(grid, want)


# ---------------------------------------------------------------------- the model family


def test_the_external_recipe_builds_saves_and_loads_through_its_family(tmp_path, images) -> None:
    from exemplar.models import (
        MODEL_RECIPES,
        checkpoint_suffix,
        family_of,
        load_model,
        make_model,
        save_model,
    )

    paths, truth = images
    family = family_of("external")
    assert family.key == "external" and not family.uses_torch
    assert MODEL_RECIPES["external"].reads_files and not MODEL_RECIPES["external"].reads_text
    model = make_model(
        "external",
        seed=4,
        device="cuda:0",
        classes=CLASSES,
        train=TRAIN_YOLO,
        predict=PREDICT,
        workdir=str(tmp_path / "runs"),
    )
    assert isinstance(model, ExternalAdapter) and family.owns(model)
    assert (model.seed, model.device) == (4, "cuda:0")
    model.bind_items(paths).fit(np.arange(4), truth[:4])
    assert family.with_samples(model, None, None, seed=0) is model
    path = save_model(model, tmp_path / f"v1{checkpoint_suffix('external')}")
    np.testing.assert_array_equal(checkpoint_classes(path), CLASSES)
    from exemplar.models import checkpoint_classes as any_checkpoint_classes

    np.testing.assert_array_equal(any_checkpoint_classes(path), CLASSES)
    loaded = load_model("external", path).bind_items(paths)
    for a, b in zip(
        model.predict_objects(np.arange(4, 8)), loaded.predict_objects(np.arange(4, 8)), strict=True
    ):
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_the_external_recipe_refuses_unknown_or_missing_params() -> None:
    from exemplar.models import make_estimator, make_model

    with pytest.raises(ConfigError, match="give a 'train' command"):
        make_model("external")
    with pytest.raises(ConfigError, match="no parameter 'epochs'.*train"):
        make_model("external", train="t {weights}", predict="p", epochs=3)
    with pytest.raises(ConfigError, match="not a scikit-learn model"):
        make_estimator("external")
