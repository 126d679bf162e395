"""Detection datasets: the dataset type and its helpers, synthetic cells, mnfinder nuclei."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exemplar.data import nuclei as nuclei_module
from exemplar.data.cells import synthetic_cells
from exemplar.data.detection import (
    DetectionDataset,
    box_of_mask,
    crop_rle,
    dataset_from_arrays,
    dataset_to_arrays,
    decode_rle,
    encode_mask,
    fit_to_side,
    grid_tiles,
    letterbox_dataset,
    normalize_intensity,
    rle_from_crop,
    scale_objects,
    split,
    tile,
    tile_starts,
    to_rows,
)
from exemplar.data.nuclei import (
    INSTALL_HINT,
    load_nuclei,
    mnfinder_root,
    nuclei_files,
    nuclei_tiles,
)
from exemplar.errors import DatasetError
from exemplar.objects import Objects

HAS_MNFINDER = importlib.util.find_spec("mnfinder") is not None
needs_mnfinder = pytest.mark.skipif(
    not HAS_MNFINDER, reason=f"mnfinder is not installed ({INSTALL_HINT})"
)


def assert_masks_match_boxes(ds: DetectionDataset) -> None:
    for image, objs in zip(ds.images, ds.objects, strict=True):
        h, w = image.shape[:2]
        assert objs.masks is not None
        if len(objs):
            assert objs.boxes.min() >= 0
            assert (objs.boxes[:, 2] <= w).all() and (objs.boxes[:, 3] <= h).all()
        for box, rle in zip(objs.boxes, objs.masks, strict=True):
            assert list(rle["size"]) == [h, w]
            assert box_of_mask(decode_rle(rle)) == tuple(float(v) for v in box)


@pytest.fixture(scope="module")
def cells() -> DetectionDataset:
    return synthetic_cells(12, size=96, objects_per_image=(4, 12), seed=5)


# --- synthetic cells ----------------------------------------------------------------------


def test_synthetic_cells_are_deterministic_for_a_seed() -> None:
    a = synthetic_cells(4, size=64, seed=3)
    b = synthetic_cells(4, size=64, seed=3)
    c = synthetic_cells(4, size=64, seed=4)
    prefix = synthetic_cells(2, size=64, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))
    assert all(
        np.array_equal(x.boxes, y.boxes) and x.masks == y.masks
        for x, y in zip(a.objects, b.objects, strict=True)
    )
    assert not np.array_equal(a.images[0], c.images[0])
    assert np.array_equal(prefix.images[1], a.images[1])
    assert a.synthetic and a.classes == ["nucleus", "micronucleus"]


def test_synthetic_masks_match_boxes_inside_the_image(cells: DetectionDataset) -> None:
    assert_masks_match_boxes(cells)
    counts = cells.class_counts()
    assert counts["nucleus"] > 0 and counts["micronucleus"] > 0
    assert all(im.shape == (96, 96) and im.dtype == np.uint8 for im in cells.images)
    # micronuclei are smaller than nuclei
    areas = np.concatenate([o.areas for o in cells.objects])
    classes = np.concatenate([o.classes for o in cells.objects])
    assert np.median(areas[classes == 1]) < np.median(areas[classes == 0]) / 4


def test_synthetic_objects_are_brighter_than_background(cells: DetectionDataset) -> None:
    image, objs = cells.images[0], cells.objects[0]
    inside = np.zeros(image.shape, bool)
    for rle in objs.masks or []:
        inside |= decode_rle(rle)
    assert image[inside].mean() > image[~inside].mean() + 40


def test_clutter_is_drawn_but_never_annotated() -> None:
    clean = synthetic_cells(3, size=96, seed=9, clutter=False)
    busy = synthetic_cells(3, size=96, seed=9, clutter=True)
    for a, b in zip(clean.objects, busy.objects, strict=True):
        assert np.array_equal(a.boxes, b.boxes) and a.masks == b.masks
    changed = [not np.array_equal(x, y) for x, y in zip(clean.images, busy.images, strict=True)]
    assert all(changed)


def test_synthetic_classes_and_channels_are_configurable() -> None:
    ds = synthetic_cells(3, size=64, classes=("a", "b", "c", "d"), channels=3, seed=1)
    assert ds.classes == ["a", "b", "c", "d"]
    assert all(im.shape == (64, 64, 3) for im in ds.images)
    assert_masks_match_boxes(ds)
    with pytest.raises(DatasetError, match="classes"):
        synthetic_cells(1, classes=("a", "b", "c", "d", "e"))
    with pytest.raises(DatasetError, match="size"):
        synthetic_cells(1, size=8)


# --- masks and the dataset type -----------------------------------------------------------


def test_rle_from_crop_equals_full_frame_encoding() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        ch, cw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = rng.random((ch, cw)) < rng.random()
        full = np.zeros((h, w), bool)
        full[top : top + ch, left : left + cw] = crop
        rle = rle_from_crop(crop, top, left, h, w)
        assert rle == encode_mask(full)
        assert isinstance(rle["counts"], str)
        assert np.array_equal(decode_rle(rle), full)


def test_crop_rle_pads_outside_the_frame() -> None:
    full = np.zeros((10, 10), bool)
    full[7:10, 8:10] = True
    cropped = decode_rle(crop_rle(encode_mask(full), 6, 6, 6, 6))
    assert cropped.shape == (6, 6)
    assert np.array_equal(np.argwhere(cropped), np.argwhere(full[6:, 6:]))


def test_dataset_rejects_bad_images_and_classes() -> None:
    box = Objects(np.array([[0, 0, 2, 2]]), np.array([1]))
    with pytest.raises(DatasetError, match="uint8"):
        DetectionDataset([np.zeros((4, 4), np.float32)], [Objects.empty()], ["a"], ["x"], True)
    with pytest.raises(DatasetError, match="class index"):
        DetectionDataset([np.zeros((4, 4), np.uint8)], [box], ["a"], ["x"], True)
    with pytest.raises(DatasetError, match="must match"):
        DetectionDataset([np.zeros((4, 4), np.uint8)], [], ["a"], ["x"], True)


def test_arrays_round_trip(cells: DetectionDataset) -> None:
    back = dataset_from_arrays(dataset_to_arrays(cells))
    assert back.names == cells.names and back.classes == cells.classes and back.synthetic
    for a, b, x, y in zip(back.images, cells.images, back.objects, cells.objects, strict=True):
        assert np.array_equal(a, b)
        assert np.array_equal(x.boxes, y.boxes) and np.array_equal(x.classes, y.classes)
        assert x.masks == y.masks


# --- tiling, splitting, rows --------------------------------------------------------------


def test_tile_starts_shift_the_last_tile_inward() -> None:
    assert tile_starts(100, 64, 64) == [0, 36]
    assert tile_starts(128, 64, 48) == [0, 48, 64]
    assert tile_starts(50, 64, 64) == [0]


def _expected_kept(ds: DetectionDataset, size: int, min_visible: float) -> int:
    """Objects each tile should keep, by the clipping rule applied independently."""
    kept = 0
    for image, objs in zip(ds.images, ds.objects, strict=True):
        h, w = image.shape[:2]
        for top in tile_starts(h, size, size):
            for left in tile_starts(w, size, size):
                for box, rle in zip(objs.boxes, objs.masks or [], strict=True):
                    x0, y0 = max(box[0], left), max(box[1], top)
                    x1, y1 = min(box[2], left + size), min(box[3], top + size)
                    inside = max(x1 - x0, 0) * max(y1 - y0, 0)
                    area = (box[2] - box[0]) * (box[3] - box[1])
                    mask = decode_rle(rle)[top : top + size, left : left + size]
                    if inside > 0 and inside / area >= min_visible and mask.any():
                        kept += 1
    return kept


@pytest.mark.parametrize("min_visible", [0.0, 0.5, 1.0])
def test_tiling_keeps_objects_by_the_clipping_rule(
    cells: DetectionDataset, min_visible: float
) -> None:
    ds = cells.take(range(4))
    tiles = tile(ds, 40, min_visible=min_visible)
    assert len(tiles) == 4 * 9  # 96 px: starts 0, 40, 56
    assert all(im.shape == (40, 40) for im in tiles.images)
    assert tiles.n_objects == _expected_kept(ds, 40, min_visible)
    assert_masks_match_boxes(tiles)
    if min_visible == 0.0:
        assert tiles.n_objects >= ds.n_objects  # every object is seen at least once


def test_tiles_keep_whole_objects_unchanged(cells: DetectionDataset) -> None:
    ds = cells.take([0])
    tiles = tile(ds, 48, overlap=8)
    objs = ds.objects[0]
    for name, tile_objs in zip(tiles.names, tiles.objects, strict=True):
        top, left = (int(v) for v in name.split("@y")[1].split("x"))
        b = objs.boxes
        whole = (
            (b[:, 0] >= left) & (b[:, 2] <= left + 48) & (b[:, 1] >= top) & (b[:, 3] <= top + 48)
        )
        shifted = b[whole] - np.array([left, top, left, top], np.float32)
        for box in shifted:
            assert (np.abs(tile_objs.boxes - box).sum(axis=1) == 0).any()


def test_small_images_are_zero_padded_into_the_tile() -> None:
    image = np.full((20, 30), 200, np.uint8)
    objs = Objects(
        np.array([[2, 3, 12, 9]]),
        np.array([0]),
        masks=[encode_mask(np.pad(np.ones((6, 10), bool), ((3, 11), (2, 18))))],
    )
    ds = DetectionDataset([image], [objs], ["a"], ["img"], False)
    tiles = tile(ds, 32)
    assert len(tiles) == 1 and tiles.images[0].shape == (32, 32)
    assert tiles.images[0][20:].max() == 0 and tiles.images[0][:, 30:].max() == 0
    assert np.array_equal(tiles.objects[0].boxes, objs.boxes)
    assert_masks_match_boxes(tiles)


def test_grid_tiles_and_fit_to_side(cells: DetectionDataset) -> None:
    ds = cells.take([0, 1])
    grid = grid_tiles(ds, 2, 3)
    assert len(grid) == 12 and all(im.shape == (48, 32) for im in grid.images)
    small = fit_to_side(grid, 24)
    assert all(im.shape == (24, 16) for im in small.images)
    for a, b in zip(grid.objects, small.objects, strict=True):
        np.testing.assert_allclose(b.boxes, a.boxes * 0.5, atol=1e-5)
        assert all(list(m["size"]) == [24, 16] for m in b.masks or [])


def test_split_partitions_the_images(cells: DetectionDataset) -> None:
    parts = split(cells, (0.5, 0.25, 0.25), seed=1)
    assert [len(p) for p in parts] == [6, 3, 3]
    names = [n for p in parts for n in p.names]
    assert sorted(names) == sorted(cells.names)
    assert [p.names for p in split(cells, (0.5, 0.25, 0.25), seed=1)] == [p.names for p in parts]
    assert [p.names for p in split(cells, (0.5, 0.25, 0.25), seed=2)] != [p.names for p in parts]
    with pytest.raises(DatasetError, match="sum to 1"):
        split(cells, (0.5, 0.2))


def test_to_rows_letterboxes_top_left_with_scales() -> None:
    wide = np.full((10, 20), 255, np.uint8)
    tall = np.full((30, 15), 65535, np.uint16)
    X, scales = to_rows([wide, tall], 16, channels=2)
    assert X.shape == (2, 2 * 16 * 16) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    np.testing.assert_allclose(scales, [16 / 20, 16 / 30])
    rows = X.reshape(2, 2, 16, 16)
    assert np.allclose(rows[0, :, :8, :16], 1.0) and rows[0, :, 8:].max() == 0.0
    assert np.allclose(rows[1, :, :16, :8], 1.0) and rows[1, :, :, 8:].max() == 0.0


def test_to_rows_resizes_content_bilinearly() -> None:
    image = np.zeros((40, 40), np.uint8)
    image[:, 20:] = 255
    X, scales = to_rows([image], 20)
    row = X.reshape(20, 20)
    assert scales[0] == 0.5
    assert row[:, :9].max() < 0.05 and row[:, 11:].min() > 0.95


def test_sixteen_bit_normalization() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(1000, 3000, (32, 32)).astype(np.uint16)
    image[0, 0] = 65535  # one saturated pixel
    by_dtype = normalize_intensity(image, "dtype")
    np.testing.assert_allclose(by_dtype, image / 65535.0, rtol=1e-6)
    robust = normalize_intensity(image, "percentile")
    assert robust.min() == 0.0 and robust.max() == 1.0
    assert np.median(robust) > 0.3  # the bright outlier does not crush the range
    X, _ = to_rows([image], 32, normalize="percentile")
    np.testing.assert_allclose(X.reshape(32, 32), robust, atol=1e-6)


def test_letterboxed_objects_follow_the_image(cells: DetectionDataset) -> None:
    X, objects, scales = letterbox_dataset(cells.take([0, 1]), 64)
    assert X.shape == (2, 64 * 64)
    for objs, original, s in zip(objects, cells.objects[:2], scales, strict=True):
        np.testing.assert_allclose(objs.boxes, original.boxes * s, atol=1e-4)
        for box, rle in zip(objs.boxes, objs.masks or [], strict=True):
            assert list(rle["size"]) == [64, 64]
            mask_box = box_of_mask(decode_rle(rle))
            assert mask_box is not None
            assert np.abs(np.array(mask_box) - box).max() <= 1.5


def test_scale_objects_without_masks() -> None:
    objs = Objects(np.array([[2, 4, 6, 8]]), np.array([0]))
    np.testing.assert_allclose(scale_objects(objs, 0.5).boxes, [[1, 2, 3, 4]])
    with pytest.raises(DatasetError, match="positive"):
        scale_objects(objs, 0)


# --- mnfinder nuclei ----------------------------------------------------------------------


def test_missing_mnfinder_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nuclei_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match="pip install --no-deps mnfinder==1.2.3"):
        mnfinder_root()


@needs_mnfinder
def test_nuclei_files_and_counts_match_the_wheel(tmp_path: Path) -> None:
    assert [len(nuclei_files([s])) for s in ("training", "validation", "test")] == [30, 3, 16]
    ds = load_nuclei(instances="ids", min_area=1, cache_dir=tmp_path)
    assert len(ds) == 49 and not ds.synthetic
    assert ds.class_counts() == {"nucleus": 3195, "micronucleus": 1800}
    widths = np.concatenate(
        [o.boxes[o.classes == 0, 2] - o.boxes[o.classes == 0, 0] for o in ds.objects]
    )
    assert 25 <= np.median(widths) <= 33
    assert "mnfinder" not in sys.modules  # read as files, never imported (TensorFlow)


@pytest.fixture(scope="module")
def validation(tmp_path_factory: pytest.TempPathFactory) -> DetectionDataset:
    if not HAS_MNFINDER:
        pytest.skip(f"mnfinder is not installed ({INSTALL_HINT})")
    return load_nuclei(["validation"], cache_dir=tmp_path_factory.mktemp("cache"))


@needs_mnfinder
def test_nuclei_masks_match_boxes(validation: DetectionDataset) -> None:
    assert len(validation) == 3
    assert validation.classes == ["nucleus", "micronucleus"]
    assert_masks_match_boxes(validation)
    assert all(o.areas.min() >= 4 for o in validation.objects)  # min_area=4


@needs_mnfinder
def test_components_split_ids_that_cover_separate_blobs(tmp_path: Path) -> None:
    ids = load_nuclei(["validation"], instances="ids", min_area=1, use_cache=False)
    parts = load_nuclei(["validation"], min_area=1, use_cache=False)
    assert parts.class_counts()["micronucleus"] > ids.class_counts()["micronucleus"]
    assert parts.class_counts()["nucleus"] >= ids.class_counts()["nucleus"]
    only = load_nuclei(["validation"], classes=("micronucleus",), min_area=1, use_cache=False)
    assert only.classes == ["micronucleus"]
    assert only.n_objects == parts.class_counts()["micronucleus"]
    with pytest.raises(DatasetError, match="classes"):
        load_nuclei(["validation"], classes=("cell",))
    with pytest.raises(DatasetError, match="unknown nuclei set"):
        load_nuclei(["train"])


@needs_mnfinder
def test_sixteen_bit_nuclei_image_is_normalized(validation: DetectionDataset) -> None:
    name = "validation/2022-10-14_U2OS/1"
    path = next(p for n, p, _, _ in nuclei_files(["validation"]) if n == name)
    raw = np.asarray(Image.open(path))
    assert raw.dtype == np.uint16
    image = validation.images[validation.names.index(name)]
    assert image.dtype == np.uint8 and image.shape == raw.shape
    lo, hi = np.percentile(raw.astype(np.float32), (1.0, 99.8))
    expected = np.round(np.clip((raw - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    assert np.abs(image.astype(int) - expected).max() <= 1
    by_dtype = load_nuclei(["validation"], normalize="dtype", use_cache=False)
    plain = by_dtype.images[by_dtype.names.index(name)]
    assert np.abs(plain.astype(int) - np.round(raw / 65535 * 255)).max() <= 1


@needs_mnfinder
def test_nuclei_cache_is_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_nuclei(["validation"], cache_dir=tmp_path)
    assert list(tmp_path.glob("nuclei-*.npz"))

    def fail(*args: object) -> DetectionDataset:
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(nuclei_module, "_decode_all", fail)
    again = load_nuclei(["validation"], cache_dir=tmp_path)
    assert again.names == first.names
    assert all(a.masks == b.masks for a, b in zip(again.objects, first.objects, strict=True))


@needs_mnfinder
def test_nuclei_tiles_recipe(tmp_path: Path, validation: DetectionDataset) -> None:
    tiles = nuclei_tiles(sets=["validation"], cache_dir=tmp_path)
    assert len(tiles) == 12
    assert all(max(im.shape) == 256 for im in tiles.images)
    assert_masks_match_boxes_loose(tiles)
    # 2x2 tiles drop or keep objects cut by the tile borders: counts stay close
    assert abs(tiles.n_objects - validation.n_objects) <= 0.1 * validation.n_objects
    tiled = load_nuclei(["validation"], tile=256, cache_dir=tmp_path)
    assert all(im.shape == (256, 256) for im in tiled.images)
    assert_masks_match_boxes(tiled)


def assert_masks_match_boxes_loose(ds: DetectionDataset) -> None:
    """After a downscale, masks (nearest) and boxes (scaled) agree within 1.5 pixels."""
    for image, objs in zip(ds.images, ds.objects, strict=True):
        h, w = image.shape[:2]
        assert objs.boxes.min(initial=0) >= 0
        assert (objs.boxes[:, 2] <= w + 1e-3).all() and (objs.boxes[:, 3] <= h + 1e-3).all()
        for box, rle in zip(objs.boxes, objs.masks or [], strict=True):
            assert list(rle["size"]) == [h, w]
            mask_box = box_of_mask(decode_rle(rle))
            assert mask_box is not None
            assert np.abs(np.array(mask_box) - box).max() <= 1.5
