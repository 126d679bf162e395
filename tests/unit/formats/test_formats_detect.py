"""Auto-detection, cross-format conversion, and the shared records."""

from __future__ import annotations

from pathlib import Path

import pytest
from formats_helpers import CLASSES, assert_boxes, by_name

from exemplar.errors import FormatError
from exemplar.formats import (
    FORMATS,
    AnnotatedImage,
    FormatProblem,
    detect_format,
    read_annotations,
    write_annotations,
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_written_output_is_detected(sample: list[AnnotatedImage], tmp_path: Path, fmt: str) -> None:
    out = write_annotations(sample, CLASSES, tmp_path / fmt, fmt)
    assert detect_format(out) == fmt
    assert detect_format(tmp_path / fmt) == fmt  # the folder as well as the file
    back = read_annotations(tmp_path / fmt)
    assert back.problems == []
    assert sum(len(im.objects) for im in back.images) == 4


def test_detect_other_layouts(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("")
    assert detect_format(tmp_path) == "yolo"
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "x.xml").write_text("<annotation/>")
    assert detect_format(tmp_path / "voc") == "voc"
    assert detect_format(tmp_path / "voc" / "x.xml") == "voc"
    (tmp_path / "single.json").write_text('\n  {"data": {"image": "a.png"}, "annotations": []}')
    assert detect_format(tmp_path / "single.json") == "labelstudio"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="cannot tell the annotation format"):
        detect_format(tmp_path / "empty")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(FormatError, match="x.csv"):
        read_annotations(tmp_path / "x.csv")
    with pytest.raises(FormatError, match="no such file"):
        read_annotations(tmp_path / "missing.json")
    with pytest.raises(FormatError, match="unknown annotation format 'csv'"):
        read_annotations(tmp_path / "single.json", "csv")


def test_coco_to_yolo_to_coco_keeps_boxes(sample: list[AnnotatedImage], tmp_path: Path) -> None:
    coco = read_annotations(write_annotations(sample, CLASSES, tmp_path / "c1", "coco"))
    yolo = read_annotations(write_annotations(coco.images, coco.classes, tmp_path / "y", "yolo"))
    assert yolo.classes == CLASSES
    again = read_annotations(write_annotations(yolo.images, yolo.classes, tmp_path / "c2", "coco"))
    got, want = by_name(again.images), by_name(sample)
    for name in want:
        assert_boxes(got[name], want[name], 1e-4)


def test_voc_to_labelstudio_to_coco_keeps_boxes(
    sample: list[AnnotatedImage], tmp_path: Path
) -> None:
    images = read_annotations(write_annotations(sample, CLASSES, tmp_path / "v", "voc")).images
    ls = read_annotations(write_annotations(images, CLASSES, tmp_path / "l", "labelstudio"))
    coco = read_annotations(write_annotations(ls.images, CLASSES, tmp_path / "c", "coco"))
    got, want = by_name(coco.images), by_name(sample)
    for name in want:
        assert_boxes(got[name], want[name], 1e-3)


def test_writer_refuses_a_label_outside_the_classes(
    sample: list[AnnotatedImage], tmp_path: Path
) -> None:
    for fmt in FORMATS:
        with pytest.raises(FormatError, match="'traffic light' is not in the"):
            write_annotations(sample, ["cat", "dog"], tmp_path / fmt, fmt)


def test_problem_text() -> None:
    assert str(FormatProblem("a.json", "annotation id 3", "bad")) == "a.json: annotation id 3: bad"
    assert str(FormatProblem("a.json", None, "bad")) == "a.json: bad"
