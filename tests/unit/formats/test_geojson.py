"""GeoJSON objects of slides (QuPath's export): reading, writing back, bad features reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exemplar.errors import FormatError
from exemplar.formats.base import ObjectRecord
from exemplar.formats.geojson import read_geojson, write_geojson

#: What QuPath 0.5 writes with File > Export objects as GeoJSON (pretty-printed, trimmed):
#: an annotation, a detection with a hole, a MultiPolygon, and a point it cannot outline.
QUPATH_SAMPLE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "0b6f5b4e-7d55-4b0b-9a4e-1c2e0f9d6a11",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[1000, 2000], [1040, 2000], [1040, 2030], [1000, 2030], [1000, 2000]]
                ],
            },
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "nucleus", "color": [255, 0, 0]},
                "isLocked": False,
            },
        },
        {
            "type": "Feature",
            "id": "9c0de2a0-3bb4-4c55-8f7a-2d1c9e5b0a22",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[10.5, 20.5], [60.5, 20.5], [60.5, 70.5], [10.5, 70.5], [10.5, 20.5]],
                    [[30, 40], [40, 40], [40, 50], [30, 50], [30, 40]],
                ],
            },
            "properties": {
                "objectType": "detection",
                "classification": {"name": "micronucleus", "colorRGB": -3670016},
                "measurements": {"Area px^2": 2400.0},
            },
        },
        {
            "type": "Feature",
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [
                    [[[0, 0, 0], [8, 0, 0], [8, 8, 0], [0, 0, 0]]],
                    [[[100, 100], [120, 100], [110, 130], [100, 100]]],
                ],
            },
            "properties": {"objectType": "annotation", "name": "nucleus"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [5, 5]},
            "properties": {"objectType": "detection", "classification": {"name": "nucleus"}},
        },
    ],
}


def _write(tmp_path: Path, doc: object, name: str = "slide.geojson") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2))
    return path


def test_reads_qupath_export(tmp_path: Path) -> None:
    objects, problems = read_geojson(_write(tmp_path, QUPATH_SAMPLE), ["nucleus", "micronucleus"])
    assert [o.label for o in objects] == ["nucleus", "micronucleus", "nucleus"]
    first, second, third = objects
    assert first.box == (1000.0, 2000.0, 1040.0, 2030.0)
    assert first.polygons == [[1000.0, 2000.0, 1040.0, 2000.0, 1040.0, 2030.0, 1000.0, 2030.0]]
    assert (first.status, first.source, first.score) == ("verified", "import", None)
    assert first.extra["geojson"]["id"] == "0b6f5b4e-7d55-4b0b-9a4e-1c2e0f9d6a11"
    assert second.box == (10.5, 20.5, 60.5, 70.5)
    assert second.extra["geojson"]["holes"] == [[[30.0, 40.0, 40.0, 40.0, 40.0, 50.0, 30.0, 50.0]]]
    assert second.extra["geojson"]["objectType"] == "detection"
    assert third.polygons is not None and len(third.polygons) == 2  # the z values dropped
    assert third.box == (0.0, 0.0, 120.0, 130.0)
    assert len(problems) == 1
    assert problems[0].object == "feature 3"
    assert "Point has no outline" in problems[0].message


def test_unknown_class_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    objects, problems = read_geojson(_write(tmp_path, QUPATH_SAMPLE), ["nucleus"])
    assert [o.label for o in objects] == ["nucleus", "nucleus"]
    messages = [p.message for p in problems]
    assert any("unknown class 'micronucleus'" in m for m in messages)
    assert problems[0].object == "feature 1 (id 9c0de2a0-3bb4-4c55-8f7a-2d1c9e5b0a22)"


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (None, "no geometry"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "'LineString' is not read"),
        ({"type": "Polygon", "coordinates": []}, "needs a list of rings"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}, "2 distinct points"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, "x"], [2, 0]]]}, "not a number"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1], [2, 0]]]}, "not [x, y]"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]}, "zero area"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1e400, 1], [2, 0]]]}, "non-finite"),
        ({"type": "MultiPolygon", "coordinates": []}, "non-empty list of polygons"),
    ],
)
def test_bad_geometry_is_reported(tmp_path: Path, geometry: object, message: str) -> None:
    good = QUPATH_SAMPLE["features"][0]
    bad = {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"classification": {"name": "nucleus"}},
    }
    path = _write(tmp_path, [good, bad])
    text = path.read_text().replace("Infinity", "1e400")
    path.write_text(text)
    objects, problems = read_geojson(path, ["nucleus"])
    assert len(objects) == 1
    assert len(problems) == 1 and message in problems[0].message, problems
    assert problems[0].object == "feature 1"


def test_bad_features_are_reported(tmp_path: Path) -> None:
    square = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]}
    features = [
        "not a feature",
        {"type": "Feature", "geometry": square, "properties": {}},
        {"type": "Feature", "geometry": square, "properties": ["nucleus"]},
        {"type": "Feature", "geometry": square, "properties": {"classification": {"name": ""}}},
        {"type": "Feature", "geometry": square, "properties": {"classification": "nucleus"}},
    ]
    objects, problems = read_geojson(
        _write(tmp_path, {"type": "FeatureCollection", "features": features})
    )
    assert [o.label for o in objects] == ["nucleus"]
    assert [p.object for p in problems] == ["feature 0", "feature 1", "feature 2", "feature 3"]
    assert "not a GeoJSON Feature" in problems[0].message
    assert "missing or empty class name" in problems[1].message
    assert "'properties' must be an object" in problems[2].message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "Topology"}', "not GeoJSON"),
        ('{"type": "FeatureCollection", "features": 3}', "needs a 'features' list"),
        ("42", "not GeoJSON"),
    ],
)
def test_a_file_that_is_not_geojson_raises(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.geojson"
    path.write_text(text)
    with pytest.raises(FormatError, match=message):
        read_geojson(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="file not found"):
        read_geojson(tmp_path / "absent.geojson")


def test_round_trip_keeps_outlines_classes_and_provenance(tmp_path: Path) -> None:
    objects, _ = read_geojson(_write(tmp_path, QUPATH_SAMPLE))
    extra = [
        ObjectRecord(
            "nucleus", (5.0, 6.0, 25.0, 16.0), status="verified", source="human", annotator="ana"
        ),
        ObjectRecord(
            "micronucleus",
            (1.0, 1.0, 3.0, 3.0),
            polygons=[[1.0, 1.0, 3.0, 1.0, 2.0, 3.0]],
            score=0.75,
            status="proposed",
            source="model",
            model_version="m3",
        ),
    ]
    out = write_geojson(tmp_path / "out" / "slide.geojson", [*objects, *extra])
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection"
    features = doc["features"]
    # QuPath's view: polygons with closed rings, the class, annotation or detection
    assert features[0]["id"] == "0b6f5b4e-7d55-4b0b-9a4e-1c2e0f9d6a11"
    assert (
        features[0]["geometry"]["coordinates"][0][0]
        == features[0]["geometry"]["coordinates"][0][-1]
    )
    assert features[1]["geometry"]["coordinates"][1] == [
        [30.0, 40.0],
        [40.0, 40.0],
        [40.0, 50.0],
        [30.0, 50.0],
        [30.0, 40.0],
    ]
    assert features[2]["geometry"]["type"] == "MultiPolygon"
    assert features[3]["geometry"] == {
        "type": "Polygon",
        "coordinates": [[[5.0, 6.0], [25.0, 6.0], [25.0, 16.0], [5.0, 16.0], [5.0, 6.0]]],
    }
    assert [f["properties"]["objectType"] for f in features] == ["annotation"] * 4 + ["detection"]
    assert features[4]["properties"]["classification"]["name"] == "micronucleus"
    assert features[1]["properties"]["measurements"] == {"Area px^2": 2400.0}
    back, problems = read_geojson(out, ["nucleus", "micronucleus"])
    assert problems == []
    assert [(o.label, o.box, o.polygons, o.status, o.source) for o in back[:3]] == [
        (o.label, o.box, o.polygons, o.status, o.source) for o in objects
    ]
    assert back[1].extra["geojson"]["holes"] == objects[1].extra["geojson"]["holes"]
    assert back[3].polygons == [[5.0, 6.0, 25.0, 6.0, 25.0, 16.0, 5.0, 16.0]]
    assert (back[3].status, back[3].source, back[3].annotator) == ("verified", "human", "ana")
    assert (back[4].status, back[4].source, back[4].score, back[4].model_version) == (
        "proposed",
        "model",
        0.75,
        "m3",
    )
    # deterministic: the same objects give the same bytes
    again = write_geojson(tmp_path / "again.geojson", [*objects, *extra])
    assert again.read_bytes() == out.read_bytes()


def test_writing_a_mask_raises(tmp_path: Path) -> None:
    mask = ObjectRecord("nucleus", (0.0, 0.0, 2.0, 2.0), rle={"size": [4, 4], "counts": "04L4"})
    with pytest.raises(FormatError, match="is a mask"):
        write_geojson(tmp_path / "m.geojson", [mask])
    assert not (tmp_path / "m.geojson").exists()
