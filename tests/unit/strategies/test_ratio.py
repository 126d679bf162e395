"""Ratio of confidence prefers a top-2 ratio near one."""

from __future__ import annotations

import pytest
from uncertainty_cases import query

from exemplar.strategies import RatioOfConfidence


def test_ratio_prefers_top2_ratio_close_to_one() -> None:
    idx, scores = query(RatioOfConfidence(), 4)
    assert idx[0] == 2 and scores[2] == pytest.approx(1.0)
    assert idx[-1] == 0
