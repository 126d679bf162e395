"""Tests of ValidationPlateau."""

from __future__ import annotations

import json

import pytest

from exemplar.errors import ConfigError
from exemplar.stopping import (
    InvalidObservationError,
    MissingObservationError,
    Observation,
    ValidationPlateau,
)


def _run(crit: ValidationPlateau, values: list[float], start: int = 0) -> list[bool]:
    return [
        crit.update(Observation(r, 10 * r, metrics={"accuracy": v})).stop
        for r, v in enumerate(values, start=start)
    ]


def test_stops_after_patience_rounds_without_improvement() -> None:
    crit = ValidationPlateau(patience=3)
    assert _run(crit, [0.5, 0.6, 0.6, 0.59, 0.6]) == [False, False, False, False, True]
    assert crit.best_ == 0.6 and crit.best_round_ == 1 and crit.wait_ == 3


def test_improvement_resets_the_count() -> None:
    crit = ValidationPlateau(patience=2)
    assert _run(crit, [0.5, 0.5, 0.7, 0.6, 0.65]) == [False, False, False, False, True]


def test_min_delta() -> None:
    crit = ValidationPlateau(patience=2, min_delta=0.01)
    # +0.005 steps are not improvements by more than 0.01.
    assert _run(crit, [0.80, 0.805, 0.81]) == [False, False, True]
    crit = ValidationPlateau(patience=2, min_delta=0.01)
    assert _run(crit, [0.80, 0.82, 0.84, 0.86]) == [False, False, False, False]


def test_min_mode_for_losses() -> None:
    crit = ValidationPlateau(metric="loss", patience=2, mode="min")
    values = [1.0, 0.8, 0.9, 0.85]
    stops = [crit.update(Observation(r, r, metrics={"loss": v})).stop for r, v in enumerate(values)]
    assert stops == [False, False, False, True]
    assert crit.best_ == 0.8


def test_missing_and_nan_metric_raise() -> None:
    crit = ValidationPlateau(metric="f1")
    with pytest.raises(MissingObservationError, match="'accuracy'"):
        crit.update(Observation(0, 5, metrics={"accuracy": 0.5}))
    with pytest.raises(InvalidObservationError):
        crit.update(Observation(0, 5, metrics={"f1": float("nan")}))


@pytest.mark.parametrize(
    "kwargs",
    [{"patience": 0}, {"min_delta": -0.1}, {"mode": "up"}, {"metric": ""}, {"patience": 1.5}],
)
def test_invalid_params(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ValidationPlateau(**kwargs)  # type: ignore[arg-type]


def test_state_round_trip_mid_run() -> None:
    values = [0.5, 0.7, 0.69, 0.7, 0.68, 0.71]
    expected = _run(ValidationPlateau(patience=3), values)
    assert expected == [False, False, False, False, True, False]
    crit = ValidationPlateau(patience=3)
    got = _run(crit, values[:3])
    resumed = ValidationPlateau(patience=3)
    resumed.load_state_dict(json.loads(json.dumps(crit.state_dict())))
    assert resumed.wait_ == 1 and resumed.best_ == 0.7
    got += _run(resumed, values[3:], start=3)
    assert got == expected
