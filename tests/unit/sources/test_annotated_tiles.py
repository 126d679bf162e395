"""Importing large annotated images as tiles ([data] tile_size, issue #11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exemplar.formats import AnnotatedImage, ObjectRecord, write_annotations
from exemplar.project import Project
from exemplar.store.annotations import AnnotationStatus, current_annotations
from exemplar.store.schema import Item

CLASSES = ["cell", "speck"]


def _big_image(folder: Path, dtype: type = np.uint8) -> Path:
    """A 128x96 image with four annotated objects, one per quadrant, one of them outlined."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    top = 60000 if dtype is np.uint16 else 250
    pixels = rng.integers(0, 20, size=(96, 128)).astype(dtype)
    boxes = [(10, 10, 30, 30), (80, 12, 100, 28), (12, 60, 28, 80), (90, 70, 110, 88)]
    for x0, y0, x1, y1 in boxes:
        pixels[y0:y1, x0:x1] = top
    path = folder / "slide.png"
    Image.fromarray(pixels).save(path)
    records = [ObjectRecord("cell", tuple(map(float, b))) for b in boxes[:3]]
    x0, y0, x1, y1 = boxes[3]
    records.append(
        ObjectRecord(
            "speck",
            (float(x0), float(y0), float(x1), float(y1)),
            polygons=[[x0, y0, x1, y0, x1, y1, x0, y1]],
        )
    )
    return write_annotations([AnnotatedImage(path, 128, 96, records)], CLASSES, folder, "coco")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_large_image_imports_as_tiles_with_its_objects(tmp_path: Path, dtype: type) -> None:
    coco = _big_image(tmp_path / "in", dtype)
    with Project.init(
        tmp_path / "p",
        CLASSES,
        task="detection",
        data={"image_side": 64, "tile_size": 64},
    ) as project:
        report = project.import_(coco)
        # 128 x 96 in tiles of 64: columns at 0 and 64, rows at 0 and 32 (shifted inward)
        assert report.added == 4 and report.labeled == 4
        with project.db.read() as s:
            rows = s.query(Item).all()
            found = current_annotations(s, None, statuses=(AnnotationStatus.VERIFIED,))
        assert {(i.width, i.height) for i in rows} == {(64, 64)}
        assert all(Path(i.uri).parent == project.root / "tiles" for i in rows)
        for item in rows:
            with Image.open(item.uri) as im:
                assert im.size == (64, 64)
                assert np.asarray(im).dtype == np.dtype(dtype)  # 16-bit stays 16-bit
        # every object lies whole inside some tile, in that tile's pixels
        assert {a.label for a in found} == {"cell", "speck"}
        assert all(0 <= a.x0 < a.x1 <= 64 and 0 <= a.y0 < a.y1 <= 64 for a in found)
        speck = [a for a in found if a.label == "speck"]
        assert speck and all(a.geometry == "mask" for a in speck)
        assert all(a.geometry == "box" for a in found if a.label == "cell")
        assert report.objects == len(found) >= 4
        # the same image again adds nothing: the tiles are the same bytes
        again = project.import_(coco)
        assert again.added == 0 and again.duplicates == 4


def test_an_image_within_the_tile_size_is_imported_whole(tmp_path: Path) -> None:
    coco = _big_image(tmp_path / "in")
    with Project.init(
        tmp_path / "p", CLASSES, task="detection", data={"image_side": 64, "tile_size": 256}
    ) as project:
        assert project.import_(coco).added == 1
        assert not (project.root / "tiles").exists()


def test_tile_overlap_must_be_below_the_tile(tmp_path: Path) -> None:
    from exemplar.errors import ConfigError

    with pytest.raises(ConfigError, match="tile_overlap"):
        Project.init(
            tmp_path / "p", CLASSES, task="detection", data={"tile_size": 64, "tile_overlap": 64}
        )


def test_tiles_of_an_image_with_only_proposals_stay_unlabeled(tmp_path: Path) -> None:
    """A model's proposals do not label an image, nor its empty tiles; their scores stay."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "slide.png"
    noise = np.random.default_rng(3).integers(0, 255, size=(96, 128)).astype(np.uint8)
    Image.fromarray(noise).save(path)  # four different tiles (equal tiles are one item)
    proposal = ObjectRecord(
        "cell", (10.0, 10.0, 30.0, 30.0), score=0.75, status="proposed", source="model"
    )
    coco = write_annotations([AnnotatedImage(path, 128, 96, [proposal])], CLASSES, folder, "coco")
    with Project.init(
        tmp_path / "p", CLASSES, task="detection", data={"image_side": 64, "tile_size": 64}
    ) as project:
        report = project.import_(coco)
        assert report.added == 4 and report.labeled == 0
        with project.db.read() as s:
            found = current_annotations(s, None, statuses=(AnnotationStatus.PROPOSED,))
        assert len(found) == 1 and found[0].confidence == pytest.approx(0.75)


def test_an_image_whose_file_differs_from_its_annotations_is_skipped(tmp_path: Path) -> None:
    """Objects placed by a declared size that is not the file's would be misplaced."""
    folder = tmp_path / "in"
    folder.mkdir()
    good, bad = folder / "good.png", folder / "bad.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(good)
    Image.fromarray(np.zeros((80, 80), np.uint8)).save(bad)
    box = ObjectRecord("cell", (1.0, 1.0, 9.0, 9.0))
    coco = write_annotations(
        [AnnotatedImage(good, 40, 40, [box]), AnnotatedImage(bad, 40, 40, [box])],
        CLASSES,
        folder,
        "coco",
    )
    with Project.init(tmp_path / "p", CLASSES, task="detection", data={"image_side": 64}) as p:
        report = p.import_(coco)
        assert report.added == 1
        assert [w for w, _ in report.skipped] == [str(bad)]
        assert "40x40, the file is 80x80" in report.skipped[0][1]


def test_ground_truth_keeps_only_verified_objects(tmp_path: Path) -> None:
    """Rejected objects and hard negatives in an imported file are no truth of the image."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "a.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(path)
    objs = [
        ObjectRecord("cell", (1.0, 1.0, 9.0, 9.0)),
        ObjectRecord("cell", (20.0, 20.0, 30.0, 30.0), status="hard_negative", source="human"),
        ObjectRecord("speck", (10.0, 20.0, 14.0, 24.0), status="rejected", source="human"),
    ]
    coco = write_annotations([AnnotatedImage(path, 40, 40, objs)], CLASSES, folder, "coco")
    with Project.init(tmp_path / "p", CLASSES, task="detection", data={"image_side": 64}) as p:
        assert p.import_(coco, labels_as="ground_truth").objects == 1
