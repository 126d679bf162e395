"""A small whole-slide image for tests and demos, built from real microscopy tiles.

:func:`build_slide_fixture` lays real fluorescence images of DNA-stained nuclei (the
mnfinder wheel's RPE-1 images, see :mod:`exemplar.data.nuclei`) out as a mosaic, converts
the grey pixels to RGB and writes a **pyramidal tiled TIFF** that OpenSlide reads as a
whole-slide image: 256x256 tiles, deflate compression (lossless, and available without
imagecodecs), level 0 followed by levels halved until the image fits in one tile, each a
TIFF directory of its own. It returns the nuclei (and micronuclei) boxes from the masks, in
the slide's level-0 pixels, as ground truth.

Defaults: a 3x3 grid of 869x768 images with the last cell left empty (black, like the
background of a fluorescence image), so the slide is 2607x2304 pixels and has regions with
no cells in them. With ``objective_power`` set (20 by default) the first directory carries
an Aperio-style description (``Aperio Image Library ...|AppMag = 20|MPP = 0.5``), the
convention through which OpenSlide reads a slide's objective power and resolution; with
None the file is a generic tiled TIFF whose resolution tags give the microns per pixel. The
objective power and ``mpp`` are nominal (the images' own optics vary), chosen so the
fixture exercises magnification handling.

The pixels and masks are real; only the layout is made up. Building takes about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from exemplar.data.detection import to_uint8
from exemplar.data.nuclei import NUCLEI_CLASSES, decode_instances, nuclei_files
from exemplar.errors import DatasetError

__all__ = ["FIXTURE_IMAGES", "SlideFixture", "build_slide_fixture"]

#: The mnfinder images the mosaic is made of, in order (8-bit RPE-1 images, 869x768).
FIXTURE_IMAGES = (
    "training/2022-03-18_RPE1/3",
    "training/2022-03-18_RPE1/4",
    "training/2022-03-18_RPE1/5",
    "training/2022-04-14_RPE1/2",
    "training/2022-04-14_RPE1/2198",
    "training/2022-04-14_RPE1/5",
    "training/2022-05-25_RPE1/1",
    "training/2022-05-25_RPE1/2",
    "training/2022-05-25_RPE1/3",
)
TILE = 256


@dataclass(frozen=True)
class SlideFixture:
    """A fixture slide and its ground truth.

    Attributes
    ----------
    path : Path
        The pyramidal TIFF.
    width, height : int
        Level-0 size in pixels.
    boxes : ndarray of shape (n, 4)
        ``(x0, y0, x1, y1)`` of every object in level-0 pixels (float32).
    labels : ndarray of shape (n,)
        Index into ``classes`` of each box.
    classes : list of str
        ``["nucleus", "micronucleus"]``.
    cells : list of (str, int, int)
        ``(mnfinder image name, x, y)`` of each image placed in the mosaic.
    objective_power, mpp : float or None
        What the file records (see the module docstring).
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    classes: list[str]
    cells: list[tuple[str, int, int]]
    objective_power: float | None
    mpp: float


def _boxes(nucleus_mask: Path, mn_mask: Path, shape: tuple[int, int]) -> list[list[tuple]]:
    masks = []
    for path in (nucleus_mask, mn_mask):
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGBA"))
        if arr.shape[:2] != shape:
            raise DatasetError(f"{path}: mask size {arr.shape[:2]} differs from image {shape}")
        masks.append(arr)
    per_class = decode_instances(masks[0], masks[1])
    out = []
    for instances in per_class:
        boxes = []
        for top, left, crop in instances:
            rows = np.flatnonzero(crop.any(axis=1))
            cols = np.flatnonzero(crop.any(axis=0))
            boxes.append((left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1))
        out.append(boxes)
    return out


def build_slide_fixture(
    out: Path | str,
    *,
    grid: tuple[int, int] = (3, 3),
    blank: tuple[int, ...] = (8,),
    objective_power: float | None = 20.0,
    mpp: float = 0.5,
) -> SlideFixture:
    """Write a pyramidal tiled TIFF built from real microscopy tiles (see the module).

    Parameters
    ----------
    out : path-like
        The file to write (``.tif``); its folder is created.
    grid : (int, int)
        ``(columns, rows)`` of the mosaic; cells are 869x768 pixels.
    blank : tuple of int
        Cells (row-major indices) left empty; the others take :data:`FIXTURE_IMAGES` in
        order.
    objective_power : float, optional
        Recorded as the scan's objective power (Aperio-style description); None writes a
        generic tiled TIFF with no objective power.
    mpp : float
        Microns per level-0 pixel, recorded in the resolution tags (and the description).

    Returns
    -------
    SlideFixture
    """
    cols, rows = grid
    if cols < 1 or rows < 1:
        raise DatasetError(f"grid must be at least 1x1, got {grid}")
    placed = [k for k in range(cols * rows) if k not in set(blank)]
    if len(placed) > len(FIXTURE_IMAGES):
        raise DatasetError(
            f"a {cols}x{rows} grid with {len(blank)} blank cell(s) needs {len(placed)} images; "
            f"the fixture has {len(FIXTURE_IMAGES)}"
        )
    if not mpp > 0:
        raise DatasetError(f"mpp must be positive, got {mpp}")
    files = {name: (image, nuc, mn) for name, image, nuc, mn in nuclei_files(["training"])}
    cell_w, cell_h = 869, 768
    mosaic = np.zeros((rows * cell_h, cols * cell_w), np.uint8)
    boxes: list[tuple] = []
    labels: list[int] = []
    cells: list[tuple[str, int, int]] = []
    for name, index in zip(FIXTURE_IMAGES, placed, strict=False):
        if name not in files:
            raise DatasetError(f"the mnfinder image {name!r} is missing (not the 1.2.3 wheel?)")
        image, nuc, mn = files[name]
        with Image.open(image) as im:
            raw = np.asarray(im)
        if raw.shape != (cell_h, cell_w):
            raise DatasetError(f"{image}: expected {cell_w}x{cell_h}, got {raw.shape[::-1]}")
        x, y = (index % cols) * cell_w, (index // cols) * cell_h
        mosaic[y : y + cell_h, x : x + cell_w] = to_uint8(raw, "percentile")
        for label, found in enumerate(_boxes(nuc, mn, raw.shape)):
            boxes.extend((x0 + x, y0 + y, x1 + x, y1 + y) for x0, y0, x1, y1 in found)
            labels.extend([label] * len(found))
        cells.append((name, x, y))
    height, width = mosaic.shape
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_pyramid(out, np.repeat(mosaic[..., None], 3, axis=2), objective_power, mpp)
    return SlideFixture(
        path=out,
        width=width,
        height=height,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        classes=list(NUCLEI_CLASSES),
        cells=cells,
        objective_power=objective_power,
        mpp=mpp,
    )


def _write_pyramid(out: Path, rgb: np.ndarray, objective_power: float | None, mpp: float) -> None:
    height, width = rgb.shape[:2]
    description = None
    if objective_power is not None:
        description = (
            f"Aperio Image Library (exemplar slide fixture, real mnfinder tiles)\n"
            f"{width}x{height} [0,0 {width}x{height}] ({TILE}x{TILE}) RGB"
            f"|AppMag = {objective_power:g}|MPP = {mpp:g}"
        )
    per_cm = 1e4 / mpp
    tmp = out.with_name(f"{out.name}.tmp")
    with tifffile.TiffWriter(tmp) as tif:
        level = rgb
        first = True
        while True:
            tif.write(
                level,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="zlib",
                compressionargs={"level": 1},
                maxworkers=2,
                description=description if first else None,
                resolution=(per_cm, per_cm) if first else None,
                resolutionunit="CENTIMETER" if first else None,
                subfiletype=0 if first else 1,
                metadata=None,
            )
            first = False
            if max(level.shape[:2]) <= TILE:
                break
            small = Image.fromarray(level).reduce(2)
            level = np.asarray(small)
    tmp.replace(out)
