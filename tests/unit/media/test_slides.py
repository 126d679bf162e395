"""Whole-slide reading (exemplar.media.slides) on the fixture slide, a pyramidal TIFF
built from real microscopy tiles (exemplar.data.slide_fixture), read by real OpenSlide."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from exemplar.data.slide_fixture import SlideFixture, build_slide_fixture
from exemplar.errors import DatasetError
from exemplar.media.slides import (
    SlideInfo,
    is_slide,
    open_slide,
    plan_regions,
    read_region,
    scale_for,
    slide_info,
    tissue_fraction,
)


@pytest.fixture(scope="module")
def fixture_slide(tmp_path_factory: pytest.TempPathFactory) -> SlideFixture:
    return build_slide_fixture(tmp_path_factory.mktemp("slide") / "nuclei.tif")


@pytest.fixture(scope="module")
def generic_slide(tmp_path_factory: pytest.TempPathFactory) -> SlideFixture:
    return build_slide_fixture(
        tmp_path_factory.mktemp("generic") / "nuclei.tif", objective_power=None, mpp=0.25
    )


def test_fixture_is_a_pyramid_of_real_tiles(fixture_slide: SlideFixture) -> None:
    info = slide_info(fixture_slide.path)
    assert (info.width, info.height) == (fixture_slide.width, fixture_slide.height) == (2607, 2304)
    assert info.levels == 5 and info.level_dimensions[1] == (1304, 1152)
    assert info.objective_power == 20.0 and info.mpp_x == info.mpp_y == 0.5
    assert info.vendor == "aperio"
    # every box lies inside the slide, in the placed cells (the blank cell has none)
    boxes = fixture_slide.boxes
    assert len(boxes) > 1000 and (fixture_slide.labels == 0).sum() > 500
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= info.width).all()
    assert (boxes[:, 3] <= info.height).all()
    blank_x, blank_y = 2 * 869, 2 * 768
    assert not ((boxes[:, 0] >= blank_x) & (boxes[:, 1] >= blank_y)).any()
    # a nucleus box holds bright pixels; the blank cell is black
    x0, y0, x1, y1 = boxes[fixture_slide.labels == 0][0].astype(int)
    nucleus = read_region(fixture_slide.path, (x0, y0), 1.0, (x1 - x0, y1 - y0))
    assert nucleus.max() > 100
    blank = read_region(fixture_slide.path, (blank_x + 10, blank_y + 10), 1.0, 256)
    assert blank.max() == 0


def test_generic_tiff_records_resolution_but_no_objective(generic_slide: SlideFixture) -> None:
    info = slide_info(generic_slide.path)
    assert info.vendor == "generic-tiff" and info.objective_power is None
    assert info.mpp_x == pytest.approx(0.25) and info.levels == 5
    with pytest.raises(DatasetError, match="no objective power.*without a magnification"):
        scale_for(info, 10)
    assert scale_for(info, None) == 1.0


def test_is_slide(fixture_slide: SlideFixture, tmp_path: Path) -> None:
    assert is_slide(fixture_slide.path)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((300, 300, 3), np.uint8), photometric="rgb")
    assert not is_slide(plain)
    one_level = tmp_path / "tiled.tif"
    tifffile.imwrite(one_level, np.zeros((600, 600, 3), np.uint8), tile=(256, 256))
    assert not is_slide(one_level)  # tiled, but one level: an ordinary image
    png = tmp_path / "a.png"
    Image.new("RGB", (10, 10)).save(png)
    assert not is_slide(png)
    assert is_slide(tmp_path / "anything.svs")  # by suffix


def test_scale_for() -> None:
    info = SlideInfo(1000, 800, 1, ((1000, 800),), (1.0,), 0.25, 0.25, 40.0, "aperio")
    assert scale_for(info, 20) == 2.0 and scale_for(info, 40) == 1.0
    with pytest.raises(DatasetError, match="exceeds the slide's objective power 40x"):
        scale_for(info, 60)
    with pytest.raises(DatasetError, match="positive"):
        scale_for(info, 0)


def test_read_region_scales_from_the_best_level(fixture_slide: SlideFixture) -> None:
    full = read_region(fixture_slide.path, (0, 0), 1.0, 512)
    assert full.shape == (512, 512, 3) and full.dtype == np.uint8
    half = read_region(fixture_slide.path, (0, 0), 2.0, (256, 200))
    assert half.shape == (200, 256, 3)
    # level 1 downsampled matches a downsample of level 0 closely
    expected = np.asarray(Image.fromarray(full).reduce(2))[:200]
    assert np.abs(half.astype(int) - expected.astype(int)).mean() < 6
    # outside the slide: white
    edge = read_region(fixture_slide.path, (2500, 2200), 1.0, 200)
    assert (edge[150:, 150:] == 255).all() and edge[:50, :50].max() < 255


def test_plan_regions_cover_the_slide_shifting_edges_inward() -> None:
    info = SlideInfo(1000, 600, 1, ((1000, 600),), (1.0,), None, None, 20.0, None)
    origins = plan_regions(info, 1.0, 256)
    xs, ys = sorted({x for x, _ in origins}), sorted({y for _, y in origins})
    assert xs == [0, 256, 512, 744] and ys == [0, 256, 344]
    assert origins[:4] == [(0, 0), (256, 0), (512, 0), (744, 0)]  # row by row
    assert plan_regions(info, 2.0, 256) == [(0, 0), (488, 0), (0, 88), (488, 88)]
    overlapped = plan_regions(info, 1.0, 256, overlap=56)
    assert sorted({x for x, _ in overlapped}) == [0, 200, 400, 600, 744]
    small = SlideInfo(100, 80, 1, ((100, 80),), (1.0,), None, None, None, None)
    assert plan_regions(small, 1.0, 256) == [(0, 0)]
    with pytest.raises(DatasetError, match="overlap"):
        plan_regions(info, 1.0, 256, overlap=256)


def test_tissue_fraction() -> None:
    white = np.full((64, 64, 3), 245, np.uint8)
    assert tissue_fraction(white) == 0.0
    assert tissue_fraction(np.zeros((64, 64, 3), np.uint8)) == 0.0
    pink = white.copy()
    pink[:32] = (200, 120, 170)  # H&E-like stain on half the region
    assert tissue_fraction(pink, stride=1) == pytest.approx(0.5)
    assert tissue_fraction(np.zeros((0, 0, 3), np.uint8)) == 0.0


def test_plain_images_open_as_one_level(tmp_path: Path) -> None:
    rgba = np.zeros((300, 400, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :200, 3] = 255  # left half opaque red, right half transparent -> white
    path = tmp_path / "big.png"
    Image.fromarray(rgba).save(path)
    info = slide_info(path)
    assert (info.width, info.height, info.levels, info.vendor) == (400, 300, 1, None)
    pixels = read_region(path, (100, 0), 1.0, (200, 100))
    assert (pixels[:, :100] == (200, 0, 0)).all() and (pixels[:, 100:] == 255).all()
    grey16 = tmp_path / "g16.png"
    Image.fromarray(np.full((50, 60), 4000, np.uint16)).save(grey16)
    assert read_region(grey16, (0, 0), 1.0, 10).min() == 255  # scaled by its maximum


def test_unreadable_slides_raise_clear_errors(tmp_path: Path, fixture_slide: SlideFixture) -> None:
    junk = tmp_path / "junk.svs"
    junk.write_bytes(b"not a slide at all" * 100)
    with pytest.raises(DatasetError, match="cannot read slide .*junk.svs"):
        slide_info(junk)
    with pytest.raises(DatasetError, match="cannot read slide .*missing.svs"):
        open_slide(tmp_path / "missing.svs")
    truncated = tmp_path / "truncated.tif"
    data = fixture_slide.path.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match="cannot read slide .*truncated.tif"):
        slide_info(truncated)
        read_region(truncated, (2000, 2000), 1.0, 256)


def test_reads_from_many_threads_agree(fixture_slide: SlideFixture) -> None:
    expected = read_region(fixture_slide.path, (1000, 900), 1.5, 128)
    results: list[np.ndarray] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(5):
            got = read_region(fixture_slide.path, (1000, 900), 1.5, 128)
            with lock:
                results.append(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(np.array_equal(r, expected) for r in results)


def test_fixture_is_deterministic(fixture_slide: SlideFixture, tmp_path: Path) -> None:
    again = build_slide_fixture(tmp_path / "again.tif")
    assert again.path.read_bytes() == fixture_slide.path.read_bytes()
    assert np.array_equal(again.boxes, fixture_slide.boxes)
    with pytest.raises(DatasetError, match="needs 10 images"):
        build_slide_fixture(tmp_path / "big.tif", grid=(5, 2), blank=())
