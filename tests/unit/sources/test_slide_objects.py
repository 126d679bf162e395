"""A slide's objects cut to its regions (item px) and mapped back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exemplar.errors import DatasetError, FormatError
from exemplar.formats.base import ObjectRecord, polygon_area
from exemplar.sources.base import ProblemList
from exemplar.sources.slide_objects import (
    SlideObjects,
    find_sidecar,
    region_objects,
    slide_annotations,
    to_slide,
)


def _box(x0: float, y0: float, x1: float, y1: float, label: str = "nucleus") -> ObjectRecord:
    return ObjectRecord(label, (x0, y0, x1, y1))


def test_objects_are_kept_clipped_and_scaled() -> None:
    objects = [
        _box(1010, 2010, 1030, 2030),  # wholly inside
        _box(990, 2010, 1030, 2030),  # 3/4 inside: kept, clipped at the left edge
        _box(970, 2010, 1010, 2030),  # 1/4 inside: left out
        _box(1600, 2600, 1700, 2700),  # outside
        _box(1100, 2100, 1120, 2120, "micronucleus"),
    ]
    # region at (1000, 2000), 2 level-0 px per item px, 256 item px: level-0 1000..1512
    got = region_objects(objects, (1000, 2000), 2.0, 256)
    assert [(o.label, o.box) for o in got] == [
        ("nucleus", (5.0, 5.0, 15.0, 15.0)),
        ("nucleus", (0.0, 5.0, 15.0, 15.0)),
        ("micronucleus", (50.0, 50.0, 60.0, 60.0)),
    ]
    # min_visible 0 keeps any object that reaches in; 1 only whole ones
    assert len(region_objects(objects, (1000, 2000), 2.0, 256, min_visible=0.0)) == 4
    assert len(region_objects(objects, (1000, 2000), 2.0, 256, min_visible=1.0)) == 2


def test_the_tile_rule_at_the_far_edges_and_touching() -> None:
    # the region covers level-0 [0, 100) x [0, 50) at scale 1: (width, height) = (100, 50)
    objects = [
        _box(90, 40, 110, 60),  # a quarter inside the bottom-right corner: out
        _box(80, 40, 100, 60),  # half inside: kept (>= 0.5), clipped at the bottom
        _box(100, 0, 120, 10),  # touches the right edge only: out even with min_visible 0
    ]
    got = region_objects(objects, (0, 0), 1.0, (100, 50))
    assert [o.box for o in got] == [(80.0, 40.0, 100.0, 50.0)]
    assert len(region_objects(objects, (0, 0), 1.0, (100, 50), min_visible=0.0)) == 2


def test_status_score_and_provenance_are_kept() -> None:
    proposal = ObjectRecord(
        "nucleus",
        (10.0, 10.0, 20.0, 20.0),
        score=0.4,
        status="proposed",
        source="model",
        model_version="m1",
        extra={"geojson": {"id": "x"}},
    )
    (got,) = region_objects([proposal], (0, 0), 0.5, 64)
    assert got.box == (20.0, 20.0, 40.0, 40.0)
    assert (got.score, got.status, got.source, got.model_version) == (
        0.4,
        "proposed",
        "model",
        "m1",
    )
    assert got.extra == {}


def test_polygons_are_clipped_to_the_region() -> None:
    # a diamond centred on the region's left edge (x = 100 level-0): 2/3 of its box inside
    diamond = ObjectRecord(
        "nucleus",
        (80.0, 0.0, 140.0, 40.0),
        polygons=[[80.0, 20.0, 110.0, 0.0, 140.0, 20.0, 110.0, 40.0]],
    )
    (got,) = region_objects([diamond], (100, 0), 2.0, 100)
    assert got.polygons is not None and len(got.polygons) == 1
    xs, ys = got.polygons[0][0::2], got.polygons[0][1::2]
    assert min(xs) == 0.0 and max(xs) == 20.0  # (140 - 100) / 2
    assert min(ys) == 0.0 and max(ys) == 20.0  # the top and bottom corners, inside
    crossings = sorted(y for x, y in zip(xs, ys, strict=True) if x == 0.0)
    assert crossings == pytest.approx([10.0 / 3, 50.0 / 3])  # where the edges cross x = 100
    assert got.box == (min(xs), min(ys), max(xs), max(ys))
    # the part right of x = 100, in item px (level-0 area / scale^2)
    full = polygon_area(diamond.polygons[0])  # type: ignore[index]
    left_part = 0.5 * 20 * (2 * 20 * 20 / 30)  # the triangle left of x = 100
    assert polygon_area(got.polygons[0]) == pytest.approx((full - left_part) / 4)


def test_an_outline_that_misses_the_region_is_dropped() -> None:
    # an L-shaped outline whose box covers the region's corner but whose ink does not
    ell = ObjectRecord(
        "nucleus",
        (0.0, 0.0, 100.0, 100.0),
        polygons=[[0.0, 0.0, 100.0, 0.0, 100.0, 10.0, 10.0, 10.0, 10.0, 100.0, 0.0, 100.0]],
    )
    assert region_objects([ell], (50, 50), 1.0, 100, min_visible=0.0) == []
    # a multi-part object keeps only the parts inside
    two = ObjectRecord(
        "nucleus",
        (0.0, 0.0, 30.0, 30.0),
        polygons=[[0.0, 0.0, 10.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 20.0, 30.0, 30.0]],
    )
    (got,) = region_objects([two], (15, 15), 1.0, 50, min_visible=0.0)
    assert got.polygons == [[5.0, 5.0, 15.0, 5.0, 15.0, 15.0]]
    assert got.box == (5.0, 5.0, 15.0, 15.0)


def test_to_slide_inverts_region_objects() -> None:
    rng = np.random.default_rng(0)
    objects = []
    for _ in range(50):
        x, y = rng.uniform(1000, 1400, 2)
        w, h = rng.uniform(5, 30, 2)
        objects.append(
            ObjectRecord("nucleus", (x, y, x + w, y + h), polygons=[[x, y, x + w, y, x, y + h]])
        )
    inside = region_objects(objects, (1000, 1000), 2.0, 256, min_visible=1.0)
    assert inside
    back = sorted((to_slide(o, (1000, 1000), 2.0) for o in inside), key=lambda o: o.box)
    expected = sorted(objects, key=lambda o: o.box)  # all lie within level-0 1000..1512
    assert len(back) == len(expected)
    for a, b in zip(back, expected, strict=True):
        assert a.box == pytest.approx(b.box)
        assert a.polygons is not None and b.polygons is not None
        assert a.polygons[0] == pytest.approx(b.polygons[0])


@pytest.mark.parametrize("min_visible", [0.0, 0.5])
def test_index_matches_a_full_scan_on_many_regions(min_visible: float) -> None:
    rng = np.random.default_rng(1)
    objects = []
    for _ in range(400):
        x, y = rng.uniform(0, 2000, 2)
        w, h = rng.uniform(2, 80, 2)
        objects.append(_box(x, y, x + w, y + h))
    objects.append(_box(0, 0, 1500, 1500, "micronucleus"))  # a tall object far above
    index = SlideObjects(objects)
    assert len(index) == 401
    for top in range(0, 2000, 300):
        for left in range(0, 2000, 300):
            got = index.region((left, top), 1.5, 200, min_visible)
            expected = []
            for o in objects:  # the rule, written out
                x0, y0, x1, y1 = o.box
                cx0, cx1 = min(max(x0, left), left + 300), min(max(x1, left), left + 300)
                cy0, cy1 = min(max(y0, top), top + 300), min(max(y1, top), top + 300)
                inside = (cx1 - cx0) * (cy1 - cy0)
                if inside > 0 and inside / ((x1 - x0) * (y1 - y0)) >= min_visible:
                    expected.append(((cx0 - left) / 1.5, (cy0 - top) / 1.5))
            np.testing.assert_allclose(
                np.asarray(sorted(o.box[:2] for o in got)).reshape(-1, 2),
                np.asarray(sorted(expected)).reshape(-1, 2),
            )


def test_bad_arguments_raise() -> None:
    with pytest.raises(DatasetError, match="scale must be positive"):
        region_objects([], (0, 0), 0.0, 10)
    with pytest.raises(DatasetError, match="min_visible"):
        region_objects([], (0, 0), 1.0, 10, min_visible=1.5)
    mask = ObjectRecord("nucleus", (0.0, 0.0, 1.0, 1.0), rle={"size": [2, 2], "counts": "04"})
    with pytest.raises(DatasetError, match="is a mask"):
        SlideObjects([mask])


def _feature(x: float, y: float, label: str) -> dict[str, object]:
    ring = [[x, y], [x + 10, y], [x + 10, y + 10], [x, y + 10], [x, y]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation", "classification": {"name": label}},
    }


def test_sidecar_and_explicit_file(tmp_path: Path) -> None:
    slide = tmp_path / "case1.svs"
    slide.write_bytes(b"")
    assert find_sidecar(slide) is None
    log = ProblemList()
    assert slide_annotations(slide, ["nucleus"], log) is None
    stem = tmp_path / "case1.geojson"
    stem.write_text(json.dumps([_feature(0, 0, "nucleus"), _feature(5, 5, "tumor")]))
    assert find_sidecar(slide) == stem
    full = tmp_path / "case1.svs.geojson"
    full.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert find_sidecar(slide) == full  # the full name wins
    objects = slide_annotations(slide, ["nucleus"], log, stem)
    assert objects is not None and [o.label for o in objects] == ["nucleus"]
    assert [(p.where, p.kind) for p in log.problems] == [(f"{stem}#feature 1", "unknown class")]
    assert "1 object(s) read" in log.notes[-1]
    bad = tmp_path / "bad.geojson"
    bad.write_text("{")
    with pytest.raises(FormatError, match="not valid JSON"):
        slide_annotations(slide, ["nucleus"], log, bad)
