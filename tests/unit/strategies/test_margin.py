"""Margin picks the smallest top-2 gap, never the most confident items."""

from __future__ import annotations

import numpy as np
import pytest
from uncertainty_cases import query

from exemplar.predictions import Predictions
from exemplar.strategies import Margin


def test_margin_picks_smallest_top2_gap_not_most_confident() -> None:
    idx, scores = query(Margin(), 2)
    # Uniform (gap 0) and the near-tie (gap 0.01) have the smallest margins.
    assert set(idx.tolist()) == {1, 2}
    assert 0 not in idx
    assert scores[0] == pytest.approx(-0.97, abs=1e-6)


def test_margin_prefers_near_tie_over_low_max_with_clear_runner_up() -> None:
    proba = np.array([[0.40, 0.39, 0.21], [0.40, 0.10, 0.50]])
    # Row 1: max 0.5 but margin 0.10; row 0: max 0.4, margin 0.01 -> row 0 first.
    idx = Margin().query(Predictions(proba=proba), batch_size=1)
    assert idx.tolist() == [0]
