"""Tests of the AnyOf / AllOf combinators."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exemplar.errors import ConfigError
from exemplar.stopping import (
    AllOf,
    AnyOf,
    KPIReached,
    LabelBudget,
    MissingObservationError,
    Observation,
    StabilizingPredictions,
)

PREDS = np.arange(30) % 3


def _obs(r: int, n: int, acc: float) -> Observation:
    return Observation(r, n, stop_set_predictions=PREDS, metrics={"accuracy": acc})


def test_any_of_reports_the_firing_criterion() -> None:
    crit = AnyOf([KPIReached(0.95), LabelBudget(40)])
    assert not crit.update(_obs(0, 10, 0.5)).stop
    d = crit.update(_obs(1, 40, 0.6))
    assert d.stop and d.fired == ("label_budget",)
    assert d.reason.startswith("label_budget: budget of 40 labels reached")
    assert "kpi_reached" not in d.reason


def test_any_of_lists_all_that_fire() -> None:
    d = AnyOf([KPIReached(0.9), LabelBudget(10)]).update(_obs(0, 10, 0.95))
    assert d.fired == ("kpi_reached", "label_budget")


def test_any_of_updates_every_child_every_round() -> None:
    stab = StabilizingPredictions(window=2)
    crit = AnyOf([LabelBudget(20), stab])
    stops = [crit.update(_obs(r, 10 * (r + 1), 0.5)).stop for r in range(3)]
    # Budget fires at round 1, but stabilizing still saw every round.
    assert stops == [False, True, True]
    assert stab.kappas_ == [1.0, 1.0]


def test_all_of_waits_for_every_criterion() -> None:
    crit = AllOf([KPIReached(0.9), StabilizingPredictions(window=1)])
    d0 = crit.update(_obs(0, 10, 0.95))
    assert not d0.stop and d0.reason.startswith("waiting for stabilizing_predictions")
    d1 = crit.update(_obs(1, 20, 0.8))
    assert not d1.stop and "kpi_reached" in d1.reason
    d2 = crit.update(_obs(2, 30, 0.92))
    assert d2.stop and d2.fired == ("kpi_reached", "stabilizing_predictions")


def test_nested_combinators_flatten_fired() -> None:
    crit = AllOf([AnyOf([KPIReached(0.99), LabelBudget(5)]), LabelBudget(10)])
    d = crit.update(_obs(0, 10, 0.5))
    assert d.stop and d.fired == ("label_budget", "label_budget")


def test_missing_observation_propagates() -> None:
    crit = AnyOf([LabelBudget(100), StabilizingPredictions()])
    with pytest.raises(MissingObservationError):
        crit.update(Observation(0, 5))


@pytest.mark.parametrize("criteria", [[], [LabelBudget(3), "budget"], LabelBudget(3)])
def test_invalid_criteria(criteria: object) -> None:
    with pytest.raises(ConfigError):
        AnyOf(criteria)  # type: ignore[arg-type]


def test_same_object_twice_rejected() -> None:
    b = LabelBudget(3)
    with pytest.raises(ConfigError, match="twice"):
        AllOf([b, b])


def test_state_round_trip_mid_run() -> None:
    def build() -> AnyOf:
        return AnyOf([StabilizingPredictions(window=3), LabelBudget(1000)])

    preds = [PREDS, (PREDS + 1) % 3, PREDS, PREDS, PREDS, PREDS]
    reference = build()
    expected = [
        reference.update(Observation(r, 10 * r, stop_set_predictions=p)).stop
        for r, p in enumerate(preds)
    ]
    assert expected == [False] * 5 + [True]
    crit = build()
    for r, p in enumerate(preds[:3]):
        crit.update(Observation(r, 10 * r, stop_set_predictions=p))
    state = json.loads(json.dumps(crit.state_dict()))
    resumed = build()
    resumed.load_state_dict(state)
    got = [
        resumed.update(Observation(r, 10 * r, stop_set_predictions=p)).stop
        for r, p in enumerate(preds[3:], start=3)
    ]
    assert got == expected[3:]
    d = resumed.update(Observation(6, 60, stop_set_predictions=PREDS))
    assert d.fired == ("stabilizing_predictions",)


def test_state_of_wrong_shape_rejected() -> None:
    state = AnyOf([LabelBudget(3)]).state_dict()
    with pytest.raises(ConfigError, match="children"):
        AnyOf([LabelBudget(3), LabelBudget(4)]).load_state_dict(state)
    with pytest.raises(ConfigError):
        AllOf([LabelBudget(3)]).load_state_dict(state)


def test_reset_resets_children() -> None:
    stab = StabilizingPredictions(window=1)
    crit = AnyOf([stab])
    crit.update(_obs(0, 1, 0.5))
    assert crit.update(_obs(1, 2, 0.5)).stop
    crit.reset()
    assert stab.kappas_ == []
    assert not crit.update(_obs(0, 1, 0.5)).stop
