"""Fixtures for the annotation format tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from formats_helpers import make_image, rle_of

from exemplar.formats import AnnotatedImage, ObjectRecord


@pytest.fixture
def sample(tmp_path: Path) -> list[AnnotatedImage]:
    """Three images: boxes with provenance, a polygon and an RLE mask, a prediction, none."""
    src = tmp_path / "src"
    a = make_image(src / "a.png", 64, 48)
    b = make_image(src / "sub" / "b.jpg", 80, 60)
    c = make_image(src / "c.png", 32, 32)
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 20:45] = 1
    polygon = [[5.0, 5.0, 30.25, 5.0, 30.25, 20.5, 5.0, 20.5]]
    return [
        AnnotatedImage(
            a,
            64,
            48,
            [
                ObjectRecord(
                    "cat",
                    (1.5, 2.25, 20.75, 30.0),
                    status="verified",
                    source="human",
                    annotator="ann@example.org",
                ),
                ObjectRecord(
                    "traffic light",
                    (30.0, 10.0, 63.0, 47.5),
                    score=0.875,
                    status="proposed",
                    source="model",
                    model_version="det-3",
                ),
            ],
        ),
        AnnotatedImage(
            b,
            80,
            60,
            [
                ObjectRecord("dog", (5.0, 5.0, 30.25, 20.5), polygons=polygon, source="human"),
                ObjectRecord("cat", (20.0, 10.0, 45.0, 30.0), rle=rle_of(mask)),
            ],
        ),
        AnnotatedImage(c, 32, 32, []),
    ]
