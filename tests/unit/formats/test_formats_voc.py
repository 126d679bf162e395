"""Pascal VOC XML: round trips, flags, bad objects, unsafe or broken XML."""

from __future__ import annotations

from pathlib import Path

import pytest
from formats_helpers import CLASSES, assert_boxes, by_name, make_image

from exemplar.errors import FormatError
from exemplar.formats import AnnotatedImage, ObjectRecord, read_annotations, write_annotations


@pytest.mark.parametrize("copy_images", [True, False])
def test_round_trip(sample: list[AnnotatedImage], tmp_path: Path, copy_images: bool) -> None:
    dest = write_annotations(sample, CLASSES, tmp_path / "out", "voc", copy_images=copy_images)
    assert sorted(p.name for p in (dest / "Annotations").iterdir()) == ["a.xml", "b.xml", "c.xml"]
    assert (dest / "JPEGImages").is_dir() is copy_images
    back = read_annotations(dest)
    assert back.problems == []
    assert back.classes == ["cat", "traffic light", "dog"]  # order of first appearance
    got, want = by_name(back.images), by_name(sample)
    for name in want:
        assert_boxes(got[name], want[name], 1e-3)
    light = got["a"].objects[1]
    assert (light.status, light.source, light.score) == ("proposed", "model", 0.875)
    expected_dir = (dest / "JPEGImages").resolve() if copy_images else sample[0].path.parent
    assert got["a"].path.parent == expected_dir.resolve()


def test_flags_round_trip_and_pixel_convention(tmp_path: Path) -> None:
    image = make_image(tmp_path / "src" / "p.png", 20, 10)
    obj = ObjectRecord(
        "cat",
        (0.0, 0.0, 10.0, 5.0),
        extra={"voc": {"difficult": 1, "truncated": 1, "pose": "Left"}},
    )
    dest = write_annotations([AnnotatedImage(image, 20, 10, [obj])], ["cat"], tmp_path / "o", "voc")
    xml = (dest / "Annotations" / "p.xml").read_text()
    assert "<xmin>1</xmin>" in xml and "<xmax>10</xmax>" in xml  # 1-based corners
    (back,) = read_annotations(dest / "Annotations" / "p.xml").images[0].objects
    assert back.box == (0.0, 0.0, 10.0, 5.0)
    assert back.extra["voc"] == {"difficult": 1, "truncated": 1, "pose": "Left"}


def _xml(name: str, objects: str, size: str = "<width>40</width><height>30</height>") -> str:
    return (
        f"<annotation><filename>{name}</filename><size>{size}<depth>3</depth></size>"
        f"{objects}</annotation>"
    )


def _obj(name: str, box: tuple[float, float, float, float]) -> str:
    corners = "".join(
        f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
    )
    return f"<object><name>{name}</name><bndbox>{corners}</bndbox></object>"


def test_flat_folder_with_bad_objects_and_a_missing_image(tmp_path: Path) -> None:
    make_image(tmp_path / "one.png", 40, 30)
    make_image(tmp_path / "three.jpg", 40, 30)
    objects = (
        _obj("cat", (1, 1, 10, 10))
        + _obj("cat", (30, 1, 45, 10))  # outside
        + _obj("cat", (5, 5, 4, 9))  # zero width: 1-based inclusive, xmax = xmin - 1
        + _obj("bird", (1, 1, 5, 5))  # unknown class
        + "<object><name>cat</name></object>"  # no box
        + _obj("cat", (1, 1, "x", 5))  # not a number
    )
    (tmp_path / "one.xml").write_text(_xml("one.png", objects))
    (tmp_path / "two.xml").write_text(_xml("two.png", _obj("cat", (1, 1, 4, 4))))
    (tmp_path / "three.xml").write_text(_xml("three.jpg", _obj("cat", (2, 2, 8, 9)), size=""))
    result = read_annotations(tmp_path, classes=["cat"])
    images = by_name(result.images)
    assert set(images) == {"one", "three"}
    assert [o.box for o in images["one"].objects] == [(0.0, 0.0, 10.0, 10.0)]
    assert images["three"].objects[0].box == (1.0, 1.0, 8.0, 9.0)
    assert (images["three"].width, images["three"].height) == (40, 30)  # from the image header
    problems = {(Path(p.file).name, p.object): p.message for p in result.problems}
    assert "outside" in problems[("one.xml", "object 2 (cat)")]
    assert "zero or negative" in problems[("one.xml", "object 3 (cat)")]
    assert "unknown class 'bird'" in problems[("one.xml", "object 4 (bird)")]
    assert "no <bndbox>" in problems[("one.xml", "object 5 (cat)")]
    assert "not a number" in problems[("one.xml", "object 6 (cat)")]
    assert "image file not found: two.png" in problems[("two.xml", None)]
    assert len(problems) == 6


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_xml("a.png", _obj("cat", (1, 1, 4, 4)))[:-5], "not valid XML"),
        (
            (
                '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                "<annotation><filename>&e;</filename></annotation>"
            ),
            "DTD|unsafe",
        ),
        ("<other/>", "not a VOC annotation"),
    ],
)
def test_unparseable_or_unsafe_xml_raises(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(FormatError, match=f"bad.xml.*({match})"):
        read_annotations(path)
