"""Class-balanced selection mines the classes with the fewest labels."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.errors import ConfigError
from exemplar.predictions import Predictions
from exemplar.strategies import ClassBalanced, Margin


def _predictions() -> Predictions:
    # 60 items predicted class 0 (very uncertain), 20 predicted class 1, 20 class 2 (less so).
    rows = [[0.51, 0.49, 0.0]] * 60 + [[0.2, 0.7, 0.1]] * 20 + [[0.1, 0.2, 0.7]] * 20
    proba = np.asarray(rows) + np.linspace(0, 1e-3, 100)[:, None] * [1, -1, 0]
    return Predictions(proba=proba, classes=np.array(["a", "b", "c"]))


def test_rare_class_gets_the_largest_share() -> None:
    pred = _predictions()
    labeled = np.arange(100, 100)  # none of the pool; counts come from y_labeled below
    y = np.array(["a"] * 30 + ["b"] * 5)
    full = Predictions(
        proba=np.vstack([pred.proba, np.tile([0.9, 0.05, 0.05], (35, 1))]), classes=pred.classes
    )
    idx = ClassBalanced().query(
        full, np.arange(100), np.arange(100, 135), 10, y_labeled=y, random_state=0
    )
    predicted = full.proba[idx].argmax(axis=1)  # type: ignore[index]
    # Plain margin would take all 10 from class 'a'; quotas favour 'c' (0 labels) then 'b'.
    assert (predicted == 2).sum() > (predicted == 1).sum() > (predicted == 0).sum()
    assert set(Margin().query(full, np.arange(100), np.arange(100, 135), 10).tolist()) <= set(
        range(60)
    )
    del labeled


def test_within_class_ranked_by_base_utility() -> None:
    pred = _predictions()
    idx = ClassBalanced().query(pred, batch_size=3, random_state=0)
    # Equal quotas without labels: one per class, the most uncertain of each.
    assert sorted(pred.proba[idx].argmax(axis=1).tolist()) == [0, 1, 2]  # type: ignore[index]


def test_unfilled_quota_goes_to_best_remaining() -> None:
    proba = np.array([[0.5, 0.5]] * 10 + [[0.1, 0.9]])
    idx = ClassBalanced().query(Predictions(proba=proba), batch_size=6)
    assert len(set(idx.tolist())) == 6 and 10 in idx


def test_non_scoring_base_rejected() -> None:
    with pytest.raises(ConfigError, match="scoring strategy"):
        ClassBalanced(base="random").query(_predictions(), batch_size=2)
