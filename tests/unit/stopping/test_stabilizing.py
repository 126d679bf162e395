"""Tests of StabilizingPredictions (Bloodgood & Vijay-Shanker, 2009)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from exemplar.errors import ConfigError
from exemplar.stopping import (
    InvalidObservationError,
    MissingObservationError,
    Observation,
    StabilizingPredictions,
)
from exemplar.stopping.stabilizing import cohen_kappa

RNG = np.random.default_rng(0)
BASE = RNG.integers(0, 3, size=200)


def _obs(r: int, preds: np.ndarray) -> Observation:
    return Observation(round=r, n_labeled=10 * (r + 1), stop_set_predictions=preds)


def test_identical_predictions_stop_after_window_comparisons() -> None:
    crit = StabilizingPredictions()  # window=3, threshold=0.99
    stops = [crit.update(_obs(r, BASE.copy())).stop for r in range(6)]
    # Round 0 has nothing to compare; rounds 1, 2, 3 give the 3 comparisons.
    assert stops == [False, False, False, True, True, True]
    d = crit.update(_obs(6, BASE.copy()))
    assert d.fired == ("stabilizing_predictions",) and "mean kappa 1.0000" in d.reason
    assert crit.kappas_ == [1.0] * 6


def test_alternating_predictions_never_stop() -> None:
    other = (BASE + 1) % 3
    crit = StabilizingPredictions()
    for r in range(20):
        assert not crit.update(_obs(r, BASE if r % 2 == 0 else other)).stop


def test_one_unstable_round_in_window_blocks_stop() -> None:
    changed = BASE.copy()
    changed[:30] = (changed[:30] + 1) % 3
    crit = StabilizingPredictions(threshold=0.99, window=3)
    seq = [BASE, BASE, changed, changed, changed, changed]
    stops = [crit.update(_obs(r, p)).stop for r, p in enumerate(seq)]
    # Comparisons: 1, <1, 1, 1, 1 -> the window is clean only at the last round.
    assert stops == [False, False, False, False, False, True]


def test_threshold_and_window_are_used() -> None:
    slightly = BASE.copy()
    slightly[:4] = (slightly[:4] + 1) % 3
    kappa = cohen_kappa(BASE, slightly)
    assert 0.9 < kappa < 0.99
    strict = StabilizingPredictions(threshold=0.99, window=1)
    loose = StabilizingPredictions(threshold=0.9, window=1)
    for crit in (strict, loose):
        crit.update(_obs(0, BASE))
    assert not strict.update(_obs(1, slightly)).stop
    assert loose.update(_obs(1, slightly)).stop


def test_kappa_matches_sklearn_and_handles_labels() -> None:
    a = RNG.integers(0, 4, size=100)
    b = np.where(RNG.random(100) < 0.7, a, RNG.integers(0, 4, size=100))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    names = np.array(["cat", "dog", "eel", "fox"])
    assert cohen_kappa(names[a], names[b]) == pytest.approx(cohen_kappa_score(a, b))
    constant = np.zeros(10, dtype=int)
    assert cohen_kappa(constant, constant) == 1.0  # undefined in sklearn; perfect agreement


def test_missing_stop_set_raises() -> None:
    crit = StabilizingPredictions()
    with pytest.raises(MissingObservationError, match="stop set"):
        crit.update(Observation(round=0, n_labeled=10))


def test_stop_set_size_change_raises() -> None:
    crit = StabilizingPredictions()
    crit.update(_obs(0, BASE))
    with pytest.raises(InvalidObservationError, match="changed size"):
        crit.update(_obs(1, BASE[:-1]))


@pytest.mark.parametrize(
    "kwargs", [{"threshold": 1.5}, {"threshold": -1.0}, {"window": 0}, {"window": 2.0}]
)
def test_invalid_params(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        StabilizingPredictions(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("labels", [np.array(["a", "b", "c"]), np.array([10, 20, 30])])
def test_state_round_trip_mid_run(labels: np.ndarray) -> None:
    seq = [labels[(BASE + (r < 2)) % 3] for r in range(7)]  # changes until round 2
    reference = StabilizingPredictions()
    expected = [reference.update(_obs(r, p)).stop for r, p in enumerate(seq)]
    assert expected == [False, False, False, False, False, True, True]

    crit = StabilizingPredictions()
    got = [crit.update(_obs(r, p)).stop for r, p in enumerate(seq[:4])]
    state = json.loads(json.dumps(crit.state_dict()))
    resumed = StabilizingPredictions()
    resumed.load_state_dict(state)
    got += [resumed.update(_obs(r, p)).stop for r, p in enumerate(seq[4:], start=4)]
    assert got == expected
    assert resumed.kappas_ == reference.kappas_


def test_reset_forgets() -> None:
    crit = StabilizingPredictions(window=1)
    crit.update(_obs(0, BASE))
    assert crit.update(_obs(1, BASE)).stop
    crit.reset()
    assert not crit.update(_obs(0, BASE)).stop
    assert crit.kappas_ == []
