"""YOLO folders: round trips (copied images and images.txt), class names, bad label lines."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from formats_helpers import CLASSES, assert_boxes, by_name, make_image

from exemplar.errors import FormatError
from exemplar.formats import AnnotatedImage, read_annotations, write_annotations
from exemplar.formats.yamlish import dump_simple, parse_simple

#: 6-decimal normalized coordinates: at most half a millionth of the image side off.
ROUNDING = 0.5e-6 * 80 * 2


@pytest.mark.parametrize("copy_images", [True, False])
def test_round_trip(sample: list[AnnotatedImage], tmp_path: Path, copy_images: bool) -> None:
    dest = write_annotations(sample, CLASSES, tmp_path / "out", "yolo", copy_images=copy_images)
    assert (dest / "data.yaml").is_file()
    assert (dest / "images").is_dir() is copy_images
    assert (dest / "images.txt").is_file() is not copy_images
    back = read_annotations(dest)
    assert back.problems == []
    assert back.classes == CLASSES
    got, want = by_name(back.images), by_name(sample)
    assert set(got) == set(want)
    for name in want:
        assert_boxes(got[name], want[name], ROUNDING)
    if not copy_images:
        assert {im.path for im in back.images} == {im.path.resolve() for im in sample}
    light = got["a"].objects[1]
    assert (light.status, light.source) == ("proposed", "model")
    assert light.score == pytest.approx(0.875)
    assert got["a"].objects[0].status == "verified" and got["a"].objects[0].score is None
    dog = got["b"].objects[0]
    np.testing.assert_allclose(dog.polygons[0], sample[1].objects[0].polygons[0], atol=ROUNDING)
    assert got["c"].objects == []


def test_label_lines_are_normalized_center_boxes(
    sample: list[AnnotatedImage], tmp_path: Path
) -> None:
    dest = write_annotations(sample, CLASSES, tmp_path / "out", "yolo", copy_images=True)
    cat, light = (dest / "labels" / "a.txt").read_text().splitlines()
    values = [float(v) for v in cat.split()]
    assert values[0] == 0
    np.testing.assert_allclose(
        values[1:], [11.125 / 64, 16.125 / 48, 19.25 / 64, 27.75 / 48], atol=1e-6
    )
    assert light.split()[0] == "2" and float(light.split()[5]) == 0.875
    assert len((dest / "labels" / "b.txt").read_text().splitlines()[0].split()) == 9


def _dataset(tmp_path: Path, labels: str, names: str = "names: [cat, dog]\n") -> Path:
    root = tmp_path / "ds"
    make_image(root / "images" / "train" / "x.png", 100, 50)
    make_image(root / "images" / "train" / "empty.png", 10, 10)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "x.txt").write_text(labels)
    (root / "data.yaml").write_text(names)
    return root


def test_split_folders_and_name_maps(tmp_path: Path) -> None:
    root = _dataset(
        tmp_path,
        "1 0.5 0.5 0.2 0.4\n",
        "# a comment\npath: .\ntrain: images/train\nnames:\n  0: cat\n  1: 'hot dog'\n",
    )
    result = read_annotations(root)
    assert result.classes == ["cat", "hot dog"]
    images = by_name(result.images)
    assert images["empty"].objects == []
    (obj,) = images["x"].objects
    assert obj.label == "hot dog"
    assert obj.box == pytest.approx((40, 15, 60, 35))


def test_classes_txt_and_the_fallback_yaml_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dataset(tmp_path, "0 0.5 0.5 0.2 0.4\n", names="")
    (root / "data.yaml").unlink()
    (root / "classes.txt").write_text("cat\ndog\n")
    assert by_name(read_annotations(root).images)["x"].objects[0].label == "cat"
    (root / "data.yaml").write_text("names:\n  - lion\n  - tiger\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml fails: the tiny reader runs
    assert read_annotations(root).classes == ["lion", "tiger"]


def test_tiny_yaml_reader() -> None:
    text = (
        "path: /data/set  # where\ntrain: images/train\nnc: 3\n"
        "names: ['a b', \"c#d\", e]\nmap: {0: x, 1: 'y'}\nblock:\n  - one\n  - 2\n"
    )
    assert parse_simple(text) == {
        "path": "/data/set",
        "train": "images/train",
        "nc": 3,
        "names": ["a b", "c#d", "e"],
        "map": {0: "x", 1: "y"},
        "block": ["one", 2],
    }
    data = {"path": "/x y", "nc": 2, "names": {0: 'say "hi"', 1: "b: c"}, "flag": True}
    assert parse_simple(dump_simple(data)) == data


def test_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    lines = [
        "0 0.5 0.5 0.2 0.2",  # 1 ok
        "0 0.95 0.5 0.2 0.2",  # 2 outside: x1 = 105 px > 101
        "0 0.5 0.5 0 0.2",  # 3 zero width
        "5 0.5 0.5 0.2 0.2",  # 4 class index out of range
        "1 0.5 0.5 0.2 0.2",  # 5 dog: unknown when classes=["cat"]
        "0 0.1 0.1 0.5 0.1 0.5 0.5 0.2",  # 6 odd polygon coordinates
        "0 0.5 nan 0.2 0.2",  # 7 non-finite
        "0 0.5 0.5",  # 8 too few values
        "0 0.1 0.1 0.5 0.1 0.5 0.9",  # 9 ok triangle
        "0 0.5 0.5 0.2 0.2 0.7",  # 10 ok prediction
    ]
    root = _dataset(tmp_path, "".join(f"{line}\n" for line in lines))
    (root / "labels" / "train" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    result = read_annotations(root, classes=["cat"])
    x = by_name(result.images)["x"]
    assert len(x.objects) == 3
    assert x.objects[1].polygons is not None and x.objects[2].score == pytest.approx(0.7)
    problems = {p.object: p for p in result.problems}
    label = root / "labels" / "train" / "x.txt"
    expected = {
        2: "outside",
        3: "zero or negative",
        4: "out of range",
        5: "unknown class",
        6: "odd number",
        7: "non-finite",
        8: "got 3 values",
    }
    for line, words in expected.items():
        assert words in problems[f"line {line}"].message
        assert problems[f"line {line}"].file == str(label)
    orphan = problems[None]
    assert orphan.file.endswith("orphan.txt") and "no image" in orphan.message
    assert len(result.problems) == len(expected) + 1


def test_missing_image_in_a_list_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_image(root / "pics" / "ok.png", 20, 20)
    (root / "images.txt").write_text(f"{root / 'pics' / 'ok.png'}\n{root / 'pics' / 'gone.png'}\n")
    (root / "labels").mkdir()
    (root / "labels" / "ok.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "labels" / "gone.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    result = read_annotations(root, "yolo", classes=["cat"])
    assert [len(im.objects) for im in result.images] == [1]
    (problem,) = result.problems
    assert problem.file.endswith("gone.txt") and "gone.png" in problem.message


def test_unparseable_yaml_and_missing_names_raise(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n", names="names: [cat, dog\n")
    with pytest.raises(FormatError, match="data.yaml"):
        read_annotations(root)
    (root / "data.yaml").unlink()
    with pytest.raises(FormatError, match="no class names"):
        read_annotations(root, "yolo")


def test_roboflow_style_relative_splits(tmp_path: Path) -> None:
    root = tmp_path / "export"
    make_image(root / "train" / "images" / "t.png", 10, 10)
    make_image(root / "valid" / "images" / "v.png", 10, 10)
    (root / "train" / "labels").mkdir()
    (root / "train" / "labels" / "t.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['cat']\n"
    )
    result = read_annotations(root)
    assert result.problems == []
    images = by_name(result.images)
    assert len(images["t"].objects) == 1 and images["v"].objects == []
