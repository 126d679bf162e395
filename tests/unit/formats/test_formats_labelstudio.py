"""Label Studio exports: round trips (annotations and predictions), references, bad regions."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from formats_helpers import CLASSES, assert_boxes, by_name, make_image

from exemplar.errors import FormatError
from exemplar.formats import AnnotatedImage, read_annotations, write_annotations


def test_round_trip(sample: list[AnnotatedImage], tmp_path: Path) -> None:
    out = write_annotations(sample, CLASSES, tmp_path / "out", "labelstudio")
    assert out == tmp_path / "out" / "tasks.json"
    back = read_annotations(out)
    assert back.problems == []
    got, want = by_name(back.images), by_name(sample)
    for name in want:
        assert_boxes(got[name], want[name], 1e-3)
    cat, light = got["a"].objects
    assert (cat.status, cat.source, cat.annotator) == ("verified", "human", "ann@example.org")
    assert (light.status, light.source, light.model_version) == ("proposed", "model", "det-3")
    assert light.score == pytest.approx(0.875)
    dog = got["b"].objects[0]
    np.testing.assert_allclose(dog.polygons[0], want["b"].objects[0].polygons[0], atol=1e-9)


def test_written_tasks_have_the_label_studio_shape(
    sample: list[AnnotatedImage], tmp_path: Path
) -> None:
    tasks = json.loads(
        write_annotations(sample, CLASSES, tmp_path / "o", "labelstudio").read_text()
    )
    first = tasks[0]
    assert first["data"]["image"] == "/data/local-files/?d=" + quote(str(sample[0].path)[1:])
    (ann,) = first["annotations"]
    assert "completed_by" not in ann  # Label Studio refuses unknown annotators on import
    assert first["meta"]["exemplar"]["annotators"] == ["ann@example.org"]
    rect = ann["result"][0]
    assert rect["type"] == "rectanglelabels" and rect["value"]["rectanglelabels"] == ["cat"]
    assert rect["value"]["x"] == pytest.approx(1.5 / 64 * 100)
    assert (rect["original_width"], rect["original_height"]) == (64, 48)
    (pred,) = first["predictions"]
    assert pred["model_version"] == "det-3" and pred["result"][0]["score"] == 0.875
    assert tasks[1]["annotations"][0]["result"][0]["type"] == "polygonlabels"


def _task(task_id: int, image: str, annotations: list, predictions: list | None = None) -> dict:
    return {
        "id": task_id,
        "data": {"image": image},
        "annotations": annotations,
        "predictions": predictions or [],
    }


def _rect(rid: str, label: str, x: float, y: float, w: float, h: float, **kw: object) -> dict:
    value = {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": [label]}
    return {"id": rid, "type": "rectanglelabels", "value": value | kw}


def _poly(rid: str, points: list) -> dict:
    return {
        "id": rid,
        "type": "polygonlabels",
        "value": {"points": points, "polygonlabels": ["cat"]},
    }


def test_export_references_rotation_and_bad_regions(tmp_path: Path) -> None:
    make_image(tmp_path / "images" / "pic.png", 200, 100)
    make_image(tmp_path / "local.png", 100, 100)
    annotations = [
        {
            "completed_by": {"id": 3, "email": "a@b.c"},
            "result": [
                _rect("ok", "cat", 10, 20, 30, 40),
                _rect("rot", "cat", 50, 10, 10, 20, rotation=90),
                _rect("out", "cat", 90, 10, 20, 20),
                _rect("flat", "cat", 10, 10, 0, 20),
                _rect("bird", "bird", 10, 10, 5, 5),
                _poly("two", [[1, 1], [5, 5]]),
                _poly("nan", [[1, 1], [5, 5], [float("nan"), 3]]),
                _poly("tri", [[10, 10], [50, 10], [50, 60]]),
                {
                    "id": "brush",
                    "type": "brushlabels",
                    "value": {"rle": [1], "brushlabels": ["cat"]},
                },
                {"id": "c", "type": "choices", "value": {"choices": ["indoor"]}},
            ],
        },
        {"was_cancelled": True, "result": [_rect("cancelled", "cat", 1, 1, 1, 1)]},
    ]
    predictions = [{"model_version": "m1", "score": 0.4, "result": [_rect("p", "cat", 1, 1, 9, 9)]}]
    tasks = [
        _task(1, "/data/upload/1/0a1b2c3d-pic.png", annotations, predictions),
        _task(2, "/data/local-files/?d=local.png", []),
        _task(3, "https://example.org/remote.png", [_rect("r", "cat", 1, 1, 1, 1)]),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    result = read_annotations(path, classes=["cat"])
    images = by_name(result.images)
    assert set(images) == {"pic", "local"}
    boxes = {o.extra["labelstudio"]["id"]: o for o in images["pic"].objects}
    assert set(boxes) == {"ok", "rot", "tri", "p"}
    assert boxes["ok"].box == pytest.approx((20, 20, 80, 60))
    # 20 x 20 px rotated 90 degrees clockwise about its top-left corner (100, 10)
    assert boxes["rot"].box == pytest.approx((80, 10, 100, 30))
    assert boxes["ok"].annotator == "a@b.c"
    assert (boxes["p"].status, boxes["p"].score, boxes["p"].model_version) == (
        "proposed",
        0.4,
        "m1",
    )
    assert boxes["tri"].box == pytest.approx((20, 10, 100, 60))
    problems = {p.object: p.message for p in result.problems}
    assert "outside" in problems["task 1 result out"]
    assert "zero or negative" in problems["task 1 result flat"]
    assert "unknown class 'bird'" in problems["task 1 result bird"]
    assert "needs at least 3" in problems["task 1 result two"]
    assert "non-finite" in problems["task 1 result nan"]
    assert "unsupported result type 'brushlabels'" in problems["task 1 result brush"]
    assert "image file not found: https://example.org/remote.png" in problems["task 3"]
    assert len(problems) == 7
    assert all(p.file == str(path) for p in result.problems)


def test_not_a_task_list_raises(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text('"just a string"')
    with pytest.raises(FormatError, match="tasks.json.*Label Studio"):
        read_annotations(path, "labelstudio")
    path.write_text('[{"id": 1, "data": {"image": "x.png"}')
    with pytest.raises(FormatError, match="tasks.json.*not valid JSON"):
        read_annotations(path)


def test_odd_file_names_survive_the_local_files_url(tmp_path: Path) -> None:
    image = make_image(tmp_path / "dir with space" / "pic #1 & 50%.png", 20, 10)
    record = AnnotatedImage(image, 20, 10, [])
    out = write_annotations([record], ["cat"], tmp_path / "out", "labelstudio")
    (back,) = read_annotations(out).images
    assert back.path == image.resolve()
    assert not list((tmp_path / "out").glob(".*.tmp"))
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # the umask's, not 0600
