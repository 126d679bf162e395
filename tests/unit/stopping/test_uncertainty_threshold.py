"""Tests of UncertaintyThreshold (Zhu, Wang & Hovy, 2008).

Named test_uncertainty_threshold.py, not test_uncertainty.py, so that it does not clash
with tests/unit/strategies/test_uncertainty.py under pytest's default import mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exemplar.errors import ConfigError
from exemplar.stopping import (
    InvalidObservationError,
    MissingObservationError,
    Observation,
    UncertaintyThreshold,
)


def _pool(confidence: float, n: int = 50, c: int = 4) -> np.ndarray:
    """Every row puts `confidence` on one class and spreads the rest evenly."""
    proba = np.full((n, c), (1 - confidence) / (c - 1))
    proba[np.arange(n), np.arange(n) % c] = confidence
    return proba


def _entropy01(confidence: float, c: int = 4) -> float:
    p = _pool(confidence, 1, c)[0]
    return float(-(p * np.log(p)).sum() / np.log(c))


def test_stops_when_mean_entropy_falls_below_threshold() -> None:
    crit = UncertaintyThreshold(threshold=0.2)
    confidences = [0.4, 0.7, 0.9, 0.97, 0.99]
    stops = [
        crit.update(Observation(r, 10 * r, pool_proba=_pool(c))).stop
        for r, c in enumerate(confidences)
    ]
    expected = [_entropy01(c) < 0.2 for c in confidences]
    assert stops == expected
    assert expected.index(True) == 3  # sanity: the threshold is crossed at 0.97


def test_max_is_stricter_than_mean() -> None:
    pool = _pool(0.999)
    pool[0] = 0.25  # one uniformly uncertain item
    mean = UncertaintyThreshold(threshold=0.1, aggregate="mean")
    worst = UncertaintyThreshold(threshold=0.1, aggregate="max")
    assert mean.update(Observation(0, 5, pool_proba=pool)).stop
    decision = worst.update(Observation(0, 5, pool_proba=pool))
    assert not decision.stop and "max normalized entropy" in decision.reason
    assert worst.pool_uncertainty(pool) == pytest.approx(1.0)


def test_least_confidence_measure_and_normalization() -> None:
    pool = _pool(0.8, c=5)  # least confidence 0.2 everywhere; max possible 0.8
    raw = UncertaintyThreshold(measure="least_confidence", normalize=False)
    norm = UncertaintyThreshold(measure="least_confidence")
    assert raw.pool_uncertainty(pool) == pytest.approx(0.2)
    assert norm.pool_uncertainty(pool) == pytest.approx(0.25)
    assert (
        not UncertaintyThreshold(0.19, measure="least_confidence", normalize=False)
        .update(Observation(0, 1, pool_proba=pool))
        .stop
    )
    assert (
        UncertaintyThreshold(0.21, measure="least_confidence", normalize=False)
        .update(Observation(0, 1, pool_proba=pool))
        .stop
    )


def test_float32_and_memmap_pool(tmp_path: Path) -> None:
    pool = _pool(0.9, n=1000).astype(np.float32)
    path = tmp_path / "pool.npy"
    np.save(path, pool)
    mm = np.load(path, mmap_mode="r")
    crit = UncertaintyThreshold()
    assert crit.pool_uncertainty(mm) == pytest.approx(_entropy01(0.9), rel=1e-5)


def test_empty_pool_stops() -> None:
    d = UncertaintyThreshold().update(Observation(0, 5, pool_proba=np.empty((0, 3))))
    assert d.stop and "empty" in d.reason


def test_missing_pool_raises() -> None:
    with pytest.raises(MissingObservationError, match="pool_proba"):
        UncertaintyThreshold().update(Observation(0, 5))


def test_invalid_pool_raises() -> None:
    crit = UncertaintyThreshold()
    bad = _pool(0.9)
    bad[3, 1] = np.nan
    with pytest.raises(InvalidObservationError, match="NaN"):
        crit.update(Observation(0, 5, pool_proba=bad))
    with pytest.raises(InvalidObservationError, match="sums to"):
        crit.update(Observation(1, 5, pool_proba=_pool(0.9) * 2))
    with pytest.raises(InvalidObservationError, match="two classes"):
        crit.update(Observation(2, 5, pool_proba=np.ones((4, 1))))


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0}, {"measure": "margin"}, {"aggregate": "median"}, {"normalize": "yes"}],
)
def test_invalid_params(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        UncertaintyThreshold(**kwargs)  # type: ignore[arg-type]


def test_state_round_trip() -> None:
    crit = UncertaintyThreshold(0.2)
    crit.update(Observation(0, 5, pool_proba=_pool(0.5)))
    restored = UncertaintyThreshold(0.2)
    restored.load_state_dict(json.loads(json.dumps(crit.state_dict())))
    assert restored.state_dict() == crit.state_dict()
    assert restored.update(Observation(1, 9, pool_proba=_pool(0.99))).stop
