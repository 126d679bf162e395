"""Helpers for the annotation format tests: tiny images made with Pillow, mask codecs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from exemplar.formats import AnnotatedImage

CLASSES = ["cat", "dog", "traffic light"]


def make_image(path: Path, width: int, height: int) -> Path:
    """Write a small RGB image of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :, 0] = np.arange(width, dtype=np.uint8)[None, :]
    Image.fromarray(pixels).save(path)
    return path


def rle_of(mask: np.ndarray) -> dict:
    """A compressed COCO RLE with string counts."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict) -> np.ndarray:
    return np.asarray(mask_utils.decode(rle))


def polygon_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    return np.asarray(
        mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))
    )


def by_name(images: list[AnnotatedImage]) -> dict[str, AnnotatedImage]:
    """Images keyed by file stem (a written copy keeps the stem)."""
    return {im.path.stem: im for im in images}


def assert_boxes(got: AnnotatedImage, want: AnnotatedImage, tol: float) -> None:
    """Same objects (label and box within ``tol`` pixels), in order."""
    assert (got.width, got.height) == (want.width, want.height)
    assert [o.label for o in got.objects] == [o.label for o in want.objects]
    for g, w in zip(got.objects, want.objects, strict=True):
        np.testing.assert_allclose(g.box, w.box, atol=tol)
