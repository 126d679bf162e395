"""Tests of KPIReached."""

from __future__ import annotations

import json

import pytest

from exemplar.errors import ConfigError
from exemplar.stopping import KPIReached, MissingObservationError, Observation


def test_stops_when_target_reached_max_mode() -> None:
    crit = KPIReached(target=0.9)
    values = [0.5, 0.89, 0.9, 0.95]
    decisions = [
        crit.update(Observation(r, r, metrics={"accuracy": v})) for r, v in enumerate(values)
    ]
    assert [d.stop for d in decisions] == [False, False, True, True]
    assert decisions[2].fired == ("kpi_reached",)
    assert "accuracy 0.9 >= target 0.9" in decisions[2].reason


def test_min_mode() -> None:
    crit = KPIReached(target=0.05, metric="error_rate", mode="min")
    values = [0.2, 0.051, 0.05]
    stops = [
        crit.update(Observation(r, r, metrics={"error_rate": v})).stop for r, v in enumerate(values)
    ]
    assert stops == [False, False, True]


def test_missing_metric_raises() -> None:
    with pytest.raises(MissingObservationError, match="macro_f1"):
        KPIReached(0.8, metric="macro_f1").update(Observation(0, 1, metrics={"accuracy": 0.9}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": float("nan")},
        {"target": "high"},
        {"target": 0.9, "mode": "maximize"},
        {"target": 0.9, "metric": 3},
    ],
)
def test_invalid_params(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        KPIReached(**kwargs)  # type: ignore[arg-type]


def test_state_round_trip() -> None:
    crit = KPIReached(0.9)
    crit.update(Observation(0, 1, metrics={"accuracy": 0.5}))
    restored = KPIReached(0.9)
    restored.load_state_dict(json.loads(json.dumps(crit.state_dict())))
    assert restored.state_dict() == crit.state_dict()
    assert restored.update(Observation(1, 2, metrics={"accuracy": 0.91})).stop
