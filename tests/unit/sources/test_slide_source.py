"""Importing a whole-slide image into a detection project: the fixture slide (a pyramidal
TIFF built from real microscopy tiles) becomes region items with a media row; background
regions are left out with a note; importing again adds nothing; unreadable slides import
nothing and say why."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from exemplar.data.slide_fixture import SlideFixture, build_slide_fixture
from exemplar.errors import DatasetError
from exemplar.media.slides import read_region
from exemplar.project import Project
from exemplar.sources.base import ProblemList, SourceOptions
from exemplar.sources.slides import SlideSource, slide_uid
from exemplar.store.schema import Item, Media

CLASSES = ["nucleus", "micronucleus"]


@pytest.fixture(scope="module")
def fixture_slide(tmp_path_factory: pytest.TempPathFactory) -> SlideFixture:
    return build_slide_fixture(tmp_path_factory.mktemp("slide") / "nuclei.tif")


def _quickhash(fixture: SlideFixture) -> str:
    from exemplar.media.slides import open_slide

    return str(open_slide(fixture.path).properties["openslide.quickhash-1"])


def _grey_rows(images: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([im.mean(axis=2)[::64, ::64].ravel() for im in images]).astype(np.float32)


def test_source_cuts_regions_and_skips_background(fixture_slide: SlideFixture) -> None:
    log = ProblemList()
    options = SourceOptions(region_size=256, magnification=10.0, min_tissue=0.05)
    source = SlideSource(fixture_slide.path, options, _grey_rows, 16, log)
    assert source.scale == 2.0 and source.total == 30  # 6 x 5 regions of 512 level-0 px
    with ThreadPoolExecutor(2) as pool:
        chunks = list(source.chunks(8, pool))
        records = [r for c in chunks for r in c.records]
        done, X = chunks[0].featurize(chunks[0].records, pool)  # type: ignore[misc]
    # the blank (black) cell holds 4 whole regions: background, with a note, no problem
    assert source.background == 4 and len(records) == 26 and not log.problems
    assert any("4 of 30 region(s) are background" in n for n in log.notes)
    first = records[0]
    assert first.kind == "image" and first.origin == (0, 0) and first.scale == 2.0
    assert (first.width, first.height) == (256, 256)
    assert first.uri.endswith("nuclei.tif#region=0,0,512,512")
    assert first.media is not None and first.media.kind == "slide"
    assert first.media.properties == {
        "mpp_x": 0.5,
        "mpp_y": 0.5,
        "objective_power": 20.0,
        "vendor": "aperio",
        "levels": 5,
    }
    assert first.media.uid == slide_uid(fixture_slide.path.resolve(), _quickhash(fixture_slide))
    assert len({r.uid for r in records}) == 26
    assert chunks[-1].progress == 30
    # the rows are the regions' pixels at the region's scale
    assert done == list(range(len(chunks[0].records))) and X.shape == (len(done), 16)
    expected = _grey_rows([read_region(fixture_slide.path, (0, 0), 2.0, 256)])
    assert np.allclose(X[0], expected[0])


def test_import_into_a_detection_project(fixture_slide: SlideFixture, tmp_path: Path) -> None:
    with Project.init(tmp_path / "proj", CLASSES, task="detection") as project:
        report = project.import_(fixture_slide.path, magnification=10, region_size=256)
        assert report.added == 26 and report.kinds == {"image": 26} and not report.skipped
        assert any("background" in note for note in report.notes)
        with project.db.read() as s:
            media = s.scalars(select(Media)).all()
            assert len(media) == 1
            slide = media[0]
            assert (slide.kind, slide.width, slide.height) == ("slide", 2607, 2304)
            assert slide.uri == str(fixture_slide.path.resolve())
            assert slide.properties["objective_power"] == 20.0
            items = s.scalars(select(Item).order_by(Item.id)).all()
            assert all(i.media_id == slide.id and i.scale == 2.0 for i in items)
            assert all(i.width == i.height == 256 and i.file_id == slide.file_id for i in items)
            origins = {(i.origin_x, i.origin_y) for i in items}
            assert (0, 0) in origins and (2095, 1792) not in origins  # the blank cell
            assert (2095, 0) in origins  # the last column, shifted inward
        assert project.feature_dim is not None
        again = project.import_(fixture_slide.path, magnification=10, region_size=256)
        assert again.added == 0 and again.duplicates == 26
        # another magnification: other regions of the same slide (one media row)
        full = project.import_(fixture_slide.path, region_size=512)
        assert full.added > 0
        with project.db.read() as s:
            assert s.scalar(select(func.count()).select_from(Media)) == 1


def test_unreadable_slides_import_nothing(fixture_slide: SlideFixture, tmp_path: Path) -> None:
    junk = tmp_path / "scan.svs"
    junk.write_bytes(b"\x00garbage" * 5000)
    truncated = tmp_path / "cut.svs"  # a truncated .tif is not recognised as a slide
    data = fixture_slide.path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    generic = build_slide_fixture(tmp_path / "generic.tif", objective_power=None)
    with Project.init(tmp_path / "proj", CLASSES, task="detection") as project:
        with pytest.raises(DatasetError, match="cannot read slide .*scan.svs"):
            project.import_(junk)
        with pytest.raises(DatasetError, match="cannot read slide .*cut.svs"):
            project.import_(truncated)
        with pytest.raises(DatasetError, match="no objective power.*without a magnification"):
            project.import_(generic.path, magnification=10)
        with project.db.read() as s:
            assert s.scalar(select(func.count()).select_from(Item)) == 0
            assert s.scalar(select(func.count()).select_from(Media)) == 0


def test_damaged_tiles_are_reported_per_region(fixture_slide: SlideFixture, tmp_path: Path) -> None:
    """Garbage over the first rows of level 0's tiles: the header and the coarse levels
    read, so the regions over the damage are reported with OpenSlide's reason and the
    others imported."""
    data = bytearray(fixture_slide.path.read_bytes())
    n = len(data)
    data[n // 10 : n // 3] = b"\xff" * (n // 3 - n // 10)
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(bytes(data))
    with Project.init(tmp_path / "proj", CLASSES, task="detection") as project:
        report = project.import_(damaged, region_size=512)
        assert report.skipped and report.skipped_kinds == {"unreadable file": len(report.skipped)}
        where, why = report.skipped[0]
        assert where.startswith(f"{damaged}#region=") and "cannot read slide" in why
        assert report.added > 0 and report.added + len(report.skipped) <= 30
