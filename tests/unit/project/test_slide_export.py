"""Slide export helpers: one object where neighbouring regions both hold it; masks as outlines."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from exemplar.formats.base import ObjectRecord
from exemplar.project.slide_export import _outline, dedupe


def _obj(
    box: tuple[float, float, float, float], label: str = "nucleus", status: str = "verified"
) -> ObjectRecord:
    return ObjectRecord(label, box, status=status)


def test_dedupe_keeps_one_per_object_across_regions() -> None:
    whole = _obj((100.0, 100.0, 120.0, 120.0))
    clipped = _obj((100.0, 100.0, 115.0, 120.0))  # the same nucleus, cut by region 2's edge
    other_class = _obj((100.0, 100.0, 120.0, 120.0), "micronucleus")
    proposal = _obj((300.0, 300.0, 320.0, 320.0), status="proposed")
    same_place = _obj((301.0, 300.0, 321.0, 320.0))
    objects = [(2, clipped), (1, whole), (1, other_class), (3, proposal), (4, same_place)]
    kept = dedupe(objects)
    # the larger copy, the other class, and the verified object over the proposal; in order
    assert kept == [whole, other_class, same_place]


def test_dedupe_keeps_overlapping_objects_of_one_region() -> None:
    a, b = _obj((0.0, 0.0, 10.0, 10.0)), _obj((1.0, 0.0, 11.0, 10.0))
    assert dedupe([(1, a), (1, b)]) == [a, b]
    assert dedupe([(1, a), (2, b)]) == [a]
    assert dedupe([]) == []
    # IoU exactly at the threshold is not above it
    c = _obj((5.0, 0.0, 15.0, 10.0))  # IoU with a: 50 / 150
    assert dedupe([(1, a), (2, c)]) == [a, c]


def test_dedupe_finds_neighbours_across_grid_cells() -> None:
    a = _obj((500.0, 500.0, 530.0, 530.0))  # spans the 512 px cell boundary
    b = _obj((505.0, 505.0, 530.0, 530.0))
    assert dedupe([(1, a), (2, b)]) == [a]


def test_mask_outline() -> None:
    pytest.importorskip("cv2")
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 4:12] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle = {"size": [20, 30], "counts": rle["counts"].decode("ascii")}
    (poly,) = _outline(rle) or [[]]
    xs, ys = poly[0::2], poly[1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (4.5, 11.5, 5.5, 9.5)  # edge pixel centres
    empty = mask_utils.encode(np.asfortranarray(np.zeros((4, 4), np.uint8)))
    assert _outline({"size": [4, 4], "counts": empty["counts"].decode("ascii")}) is None
