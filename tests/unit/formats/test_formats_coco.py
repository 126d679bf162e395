"""COCO JSON: round trips (boxes, polygons, RLE, provenance), bad objects, unparseable files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from formats_helpers import CLASSES, assert_boxes, by_name, decode, make_image, polygon_mask
from pycocotools import mask as mask_utils

from exemplar.errors import DatasetError, FormatError
from exemplar.formats import AnnotatedImage, read_annotations, write_annotations
from exemplar.formats.coco import _rle_string_total


def test_round_trip_keeps_boxes_masks_and_provenance(
    sample: list[AnnotatedImage], tmp_path: Path
) -> None:
    out = write_annotations(sample, CLASSES, tmp_path / "out", "coco")
    assert out == tmp_path / "out" / "annotations.json"
    back = read_annotations(out)
    assert back.problems == []
    assert back.classes == CLASSES
    got, want = by_name(back.images), by_name(sample)
    assert set(got) == set(want)
    for name in want:
        assert got[name].path == want[name].path.resolve()
        assert_boxes(got[name], want[name], 1e-3)
        for g, w in zip(got[name].objects, want[name].objects, strict=True):
            assert (g.status, g.source, g.annotator, g.model_version, g.score) == (
                w.status,
                w.source,
                w.annotator,
                w.model_version,
                w.score,
            )
    dog, cat = got["b"].objects
    assert dog.polygons == want["b"].objects[0].polygons
    np.testing.assert_array_equal(
        polygon_mask(dog.polygons, 60, 80), polygon_mask(want["b"].objects[0].polygons, 60, 80)
    )
    np.testing.assert_array_equal(decode(cat.rle), decode(want["b"].objects[1].rle))
    assert decode(cat.rle).sum() == 20 * 25


def test_written_file_is_plain_coco(sample: list[AnnotatedImage], tmp_path: Path) -> None:
    doc = json.loads(write_annotations(sample, CLASSES, tmp_path / "out", "coco").read_text())
    assert [c["name"] for c in doc["categories"]] == CLASSES
    ann = doc["annotations"][0]
    assert ann["bbox"] == pytest.approx([1.5, 2.25, 19.25, 27.75])
    assert ann["category_id"] == 1
    assert ann["exemplar"]["annotator"] == "ann@example.org"
    rle_ann = doc["annotations"][3]
    assert isinstance(rle_ann["segmentation"]["counts"], str)
    assert rle_ann["area"] == 500.0
    # images outside dest are referenced by absolute path
    assert Path(doc["images"][0]["file_name"]).is_absolute()


def test_copy_images_writes_relative_names_and_survives_a_move(
    sample: list[AnnotatedImage], tmp_path: Path
) -> None:
    write_annotations(sample, CLASSES, tmp_path / "out", "coco", copy_images=True)
    moved = tmp_path / "moved"
    (tmp_path / "out").rename(moved)
    doc = json.loads((moved / "annotations.json").read_text())
    assert [i["file_name"] for i in doc["images"]] == ["a.png", "b.jpg", "c.png"]
    back = read_annotations(moved / "annotations.json")
    assert back.problems == []
    assert all(im.path.parent == (moved / "images").resolve() for im in back.images)
    assert_boxes(by_name(back.images)["a"], by_name(sample)["a"], 1e-3)


def _coco(tmp_path: Path, annotations: list[dict], **extra: object) -> Path:
    make_image(tmp_path / "images" / "x.png", 50, 40)
    doc = {
        "images": [{"id": 1, "file_name": "x.png", "width": 50, "height": 40}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}],
    } | extra
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path


def _ann(i: int, bbox: list[float], **kw: object) -> dict:
    return {"id": i, "image_id": 1, "category_id": 1, "bbox": bbox} | kw


def test_uncompressed_rle_and_polygon_masks_are_read(tmp_path: Path) -> None:
    mask = np.zeros((40, 50), np.uint8)
    mask[5:15, 10:30] = 1
    counts, value, run = [], 0, 0  # column-major runs, starting with zeros
    for pixel in mask.flatten(order="F"):
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    seg = {"size": [40, 50], "counts": counts}
    path = _coco(
        tmp_path,
        [
            {"id": 1, "image_id": 1, "category_id": 7, "segmentation": seg, "iscrowd": 1},
            _ann(2, [1, 1, 9, 9], segmentation=[[1, 1, 10, 1, 10, 10]], attributes={"x": 1}),
        ],
    )
    result = read_annotations(path)
    assert result.problems == []
    crowd, tri = result.images[0].objects
    np.testing.assert_array_equal(decode(crowd.rle), mask)
    assert crowd.box == pytest.approx((10, 5, 30, 15))  # from toBbox: no bbox given
    assert crowd.extra["coco"]["iscrowd"] == 1 and crowd.label == "dog"
    assert tri.polygons == [[1.0, 1.0, 10.0, 1.0, 10.0, 10.0]]
    assert tri.extra["coco"]["id"] == 2
    assert tri.extra["coco"]["attributes"] == {"x": 1}
    assert result.classes == ["cat", "dog"]


def test_scored_annotations_read_as_model_proposals(tmp_path: Path) -> None:
    path = _coco(tmp_path, [_ann(3, [1, 1, 5, 5], score=0.25)])
    (obj,) = read_annotations(path).images[0].objects
    assert (obj.status, obj.source, obj.score) == ("proposed", "model", 0.25)


def test_bad_objects_are_reported_and_skipped(tmp_path: Path) -> None:
    path = _coco(
        tmp_path,
        [
            _ann(10, [2, 3, 10, 10]),
            _ann(11, [45, 5, 10, 10]),  # x1 = 55 > 50 + 1
            _ann(12, [49.5, 5, 1.2, 10]),  # within tolerance: clipped
            _ann(13, [5, 5, 0, 10]),
            _ann(14, [5, 5, -3, 10]),
            _ann(15, [1, 1, 5, 5], category_id=99),
            _ann(16, [1, 1, 5, 5], segmentation=[[1, 1, 5, 1, 5]]),
            _ann(17, [1, 1, 5, 5], segmentation=[[1, 1, 5, 1]]),
            _ann(18, [1, 1, 5, 5], segmentation=[[1, 1, 5, "x", 5, 5]]),
            _ann(19, [1, 1, 5, 5], category_id=7),
            {
                "id": 20,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": [40, 50], "counts": [3, 4]},
            },
            {"id": 21, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]},
            _ann(22, [1, 1, 5, 5], segmentation={"size": [40, 50], "counts": "zzzz"}),
            _ann(23, [1, 1, 5, 5], segmentation={"size": [50, 40], "counts": [2000]}),
        ],
    )
    result = read_annotations(path, classes=["cat"])
    objects = result.images[0].objects
    assert [o.extra["coco"]["id"] for o in objects] == [10, 12]
    assert objects[1].box == pytest.approx((49.5, 5, 50, 15))
    problems = {p.object: p for p in result.problems}
    assert set(problems) == {f"annotation id {i}" for i in (*range(11, 24),) if i != 12}
    assert all(p.file == str(path) for p in result.problems)
    assert "outside" in problems["annotation id 11"].message
    assert "zero or negative" in problems["annotation id 13"].message
    assert "unknown category id 99" in problems["annotation id 15"].message
    assert "odd number" in problems["annotation id 16"].message
    assert "needs at least 3" in problems["annotation id 17"].message
    assert "not a number" in problems["annotation id 18"].message
    assert "unknown class 'dog'" in problems["annotation id 19"].message
    assert "sum to 7" in problems["annotation id 20"].message
    assert "unknown image id 2" in problems["annotation id 21"].message
    assert "invalid RLE counts" in problems["annotation id 22"].message
    assert "does not match the image" in problems["annotation id 23"].message
    assert str(problems["annotation id 11"]).startswith(f"{path}: annotation id 11: ")
    assert result.classes == ["cat"]


def test_missing_image_is_reported_and_the_rest_imported(tmp_path: Path) -> None:
    path = _coco(
        tmp_path,
        [_ann(1, [1, 1, 4, 4]), {"id": 2, "image_id": 5, "category_id": 1, "bbox": [1, 1, 2, 2]}],
    )
    doc = json.loads(path.read_text())
    doc["images"].append({"id": 5, "file_name": "gone.png", "width": 10, "height": 10})
    path.write_text(json.dumps(doc))
    result = read_annotations(path)
    assert [len(im.objects) for im in result.images] == [1]
    (problem,) = result.problems
    assert problem.object == "image id 5"
    assert "gone.png" in problem.message and "1 annotations are skipped" in problem.message


@pytest.mark.parametrize("cut", [1, 40, -2])
def test_truncated_json_raises_format_error_naming_the_file(
    sample: list[AnnotatedImage], tmp_path: Path, cut: int
) -> None:
    out = write_annotations(sample, CLASSES, tmp_path / "out", "coco")
    text = out.read_text()
    out.write_text(text[:cut])
    with pytest.raises(FormatError, match="annotations.json") as info:
        read_annotations(out)
    assert isinstance(info.value, DatasetError)


def test_json_without_coco_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(FormatError, match="other.json.*not a COCO file"):
        read_annotations(path, "coco")


def test_rle_string_check_agrees_with_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) < rng.random()
        counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        assert _rle_string_total(counts) == h * w
        assert _rle_string_total(counts[:-1]) != h * w or len(counts) == 1
    assert _rle_string_total("!!") is None
