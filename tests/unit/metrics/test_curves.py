"""Learning-curve statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exemplar.metrics import labels_to_reach, normalized_aulc, paired_difference, win_tie_loss


def test_normalized_aulc_is_mean_height_of_curve() -> None:
    assert normalized_aulc([10, 20, 30], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # Linear 0 -> 1 over the range: area 0.5 of the unit box.
    assert normalized_aulc([0, 50, 100], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    # Early gains count more than late ones.
    assert normalized_aulc([0, 10, 100], [0.2, 0.9, 0.9]) > normalized_aulc(
        [0, 90, 100], [0.2, 0.2, 0.9]
    )


def test_normalized_aulc_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        normalized_aulc([1, 2], [0.5])


def test_labels_to_reach() -> None:
    assert labels_to_reach([10, 20, 30], [0.5, 0.8, 0.9], 0.8) == 20
    assert labels_to_reach([10, 20, 30], [0.5, 0.8, 0.9], 0.95) is None


def test_paired_difference_ci_contains_mean_and_detects_consistent_gain() -> None:
    a = [0.80, 0.82, 0.81, 0.83, 0.80]
    b = [0.75, 0.78, 0.76, 0.77, 0.76]
    d = paired_difference(a, b)
    assert d.ci_low < d.mean < d.ci_high
    assert d.ci_low > 0
    assert d.p_value < 0.01
    assert d.n_pairs == 5


def test_paired_difference_uses_pairing() -> None:
    # Large between-seed variance, tiny consistent within-pair gain: paired test must see it.
    base = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    d = paired_difference(base + 0.01, base)
    assert d.ci_low == pytest.approx(0.01) and d.p_value == 0.0


def test_single_pair_has_no_interval() -> None:
    d = paired_difference([0.8], [0.7])
    assert d.mean == pytest.approx(0.1)
    assert math.isnan(d.ci_low) and d.to_dict()["ci_low"] is None


def test_win_tie_loss_is_antisymmetric() -> None:
    res = win_tie_loss(
        {
            "good": [0.9, 0.91, 0.92, 0.9, 0.93],
            "bad": [0.7, 0.72, 0.71, 0.69, 0.7],
            "noisy": [0.9, 0.7, 0.92, 0.69, 0.8],
        }
    )
    assert res["good"]["bad"] == "win" and res["bad"]["good"] == "loss"
    assert res["good"]["noisy"] == "tie" and res["noisy"]["good"] == "tie"
    assert res["good"]["good"] == "-"
