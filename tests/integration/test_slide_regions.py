"""A slide with its nuclei drawn on it (QuPath GeoJSON) in and out of a detection project.

The fixture slide is a pyramidal TIFF built from real microscopy tiles (mnfinder RPE-1
nuclei, :mod:`exemplar.data.slide_fixture`) whose nuclei boxes are known in level-0
pixels. Written as a GeoJSON sidecar, they import with the slide: each region carries the
nuclei inside it (in its item pixels), as hidden ground truth for the simulated oracle, which
then labels the regions a detection cycle picks; or as labels, exported back to one
GeoJSON per slide in level-0 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from exemplar.data.slide_fixture import SlideFixture, build_slide_fixture
from exemplar.errors import ConfigError
from exemplar.formats.base import ObjectRecord
from exemplar.formats.geojson import read_geojson, write_geojson
from exemplar.objects import box_iou
from exemplar.project import Project
from exemplar.sources.slide_objects import region_objects
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationStatus, current_annotations
from exemplar.store.labels import current_labels
from exemplar.store.schema import Annotation, Item

pytest.importorskip("openslide")

#: 10x of the 20x fixture: 2 level-0 px per item px, regions of 128 item px (256 level-0)
MAGNIFICATION, REGION = 10.0, 128


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> SlideFixture:
    # 2 x 1 cells (1738 x 768 level-0 px): 7 x 3 regions, a few hundred nuclei
    return build_slide_fixture(
        tmp_path_factory.mktemp("slide") / "nuclei.tif", grid=(2, 1), blank=()
    )


def _truth(slide: SlideFixture) -> list[ObjectRecord]:
    return [
        ObjectRecord(slide.classes[int(c)], (x0, y0, x1, y1))
        for (x0, y0, x1, y1), c in zip(slide.boxes.tolist(), slide.labels, strict=True)
    ]


def _project(root: Path, slide: SlideFixture) -> Project:
    return Project.init(
        root,
        slide.classes,
        task="detection",
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={
            "candidates": [{"recipe": "centernet", "params": {"epochs": 1}}],
            "proposal_threshold": 0.0,
        },
        selection={"batch_size": 3, "initial_size": 4},
        stopping={"criteria": [{"name": "label_budget", "budget": 10}]},
    )


def test_nuclei_as_ground_truth_let_the_oracle_label_regions(
    slide: SlideFixture, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    truth = _truth(slide)
    case = tmp_path / "case"
    case.mkdir()
    (case / "nuclei.tif").symlink_to(slide.path)
    write_geojson(case / "nuclei.geojson", truth)  # the sidecar QuPath scripts write
    with _project(tmp_path / "proj", slide) as project:
        report = project.import_(
            case / "nuclei.tif",
            labels_as="ground_truth",
            magnification=MAGNIFICATION,
            region_size=REGION,
        )
        assert report.added == 20 and not report.skipped  # 1 of 21 is background
        assert any(f"{len(truth)} object(s) read" in note for note in report.notes)
        with project.db.read() as s:
            items = list(s.scalars(select(Item).order_by(Item.id)))
            hidden = current_annotations(s, None, statuses=(AnnotationStatus.GROUND_TRUTH,))
            assert not current_labels(s)  # the truth is hidden
        # every region, even one without nuclei, has truth for the oracle
        assert {i.ground_truth for i in items} == {OBJECTS_LABEL}
        assert report.objects == len(hidden) > len(truth)  # regions overlap at the edge
        for item in items:  # each region holds exactly its share of the slide's nuclei
            assert item.origin_x is not None and item.origin_y is not None and item.scale
            expected = region_objects(truth, (item.origin_x, item.origin_y), item.scale, REGION)
            mine = [a for a in hidden if a.item_id == item.id]
            _assert_same(mine, expected)

        outcome = project.run(max_cycles=1)
        assert outcome.status == "max_cycles", outcome
        with project.db.read() as s:
            labels = current_labels(s)
            verified = current_annotations(s, None, statuses=(AnnotationStatus.VERIFIED,))
        assert len(labels) == 4 and {c.label for c in labels} == {OBJECTS_LABEL}
        # the oracle drew each labeled region's nuclei from its hidden truth
        for label in labels:
            mine = [a for a in verified if a.item_id == label.item_id]
            theirs = [a for a in hidden if a.item_id == label.item_id]
            assert len(mine) == len(theirs)


def _assert_same(mine: Sequence[Annotation], expected: Sequence[ObjectRecord]) -> None:
    got = sorted((a.label, a.x0, a.y0, a.x1, a.y1) for a in mine)
    want = sorted((o.label, *o.box) for o in expected)
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose(
        np.asarray([g[1:] for g in got]).reshape(-1, 4),
        np.asarray([w[1:] for w in want]).reshape(-1, 4),
        atol=1e-3,
    )


def test_nuclei_as_labels_export_back_to_one_geojson_per_slide(
    slide: SlideFixture, tmp_path: Path
) -> None:
    truth = _truth(slide)
    given = tmp_path / "qupath" / "objects.geojson"
    write_geojson(given, truth)
    with _project(tmp_path / "proj", slide) as project:
        report = project.import_(
            slide.path, magnification=MAGNIFICATION, region_size=REGION, objects=given
        )
        assert report.added == 20 and report.labeled == 20
        out = project.export_objects(tmp_path / "export", "geojson")
    assert out.images == 1
    back, problems = read_geojson(tmp_path / "export" / "nuclei.geojson", slide.classes)
    assert not problems
    assert {o.status for o in back} == {"verified"} and {o.source for o in back} == {"import"}
    # each exported nucleus is one of the slide's (clipped by at most half its box) ...
    for cls in slide.classes:
        mine = np.asarray([o.box for o in back if o.label == cls]).reshape(-1, 4)
        theirs = np.asarray([o.box for o in truth if o.label == cls]).reshape(-1, 4)
        if not len(mine):
            continue
        iou = box_iou(mine, theirs)
        assert (iou.max(axis=1) >= 0.5 - 1e-6).all()
        # ... once: the last row and column of regions overlap the others, and a nucleus
        # both hold is written once
        own = box_iou(mine, mine)
        np.fill_diagonal(own, 0)
        assert not (own > 0.5).any()
    # almost all of them come back (a nucleus cut in four by region corners may not)
    assert len(back) >= 0.95 * len(truth)


def test_objects_for_something_that_is_not_a_slide_are_refused(
    slide: SlideFixture, tmp_path: Path
) -> None:
    given = tmp_path / "objects.geojson"
    write_geojson(given, _truth(slide))
    png = tmp_path / "images"
    png.mkdir()
    with _project(tmp_path / "proj", slide) as project, pytest.raises(ConfigError, match="slide"):
        project.import_(png, objects=given)


def test_the_cli_imports_a_slide_with_its_objects_and_exports_geojson(
    slide: SlideFixture, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from exemplar.cli.main import app

    given = tmp_path / "objects.geojson"
    write_geojson(given, _truth(slide))
    _project(tmp_path / "proj", slide).close()
    runner = CliRunner()
    common = ["--project", str(tmp_path / "proj")]
    result = runner.invoke(
        app,
        [
            "import",
            str(slide.path),
            *common,
            "--objects",
            str(given),
            "--magnification",
            "10",
            "--region-size",
            "128",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(tmp_path / "out"), *common, "--format", "geojson"])
    assert result.exit_code == 0, result.output
    assert "on 1 slide(s) as geojson" in result.output
    back, problems = read_geojson(tmp_path / "out" / "nuclei.geojson")
    assert back and not problems
    result = runner.invoke(app, ["import", str(slide.path), *common, "--objects", "nowhere.json"])
    assert result.exit_code != 0 and "nowhere.json: file not found" in result.output
