"""Tests of the stopping contract (base.py) and the registry (__init__.py).

Named test_stopping_base.py, not test_base.py, so that it does not clash with
tests/unit/strategies/test_base.py under pytest's default import mode.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from exemplar.errors import ConfigError, ExemplarError
from exemplar.stopping import (
    STOPPING_CRITERIA,
    AnyOf,
    InvalidObservationError,
    KPIReached,
    LabelBudget,
    Observation,
    StabilizingPredictions,
    StopDecision,
    StoppingCriterion,
    StoppingError,
    ValidationPlateau,
    make_criterion,
)


def test_registry_names_and_metadata() -> None:
    assert set(STOPPING_CRITERIA) == {
        "label_budget",
        "stabilizing_predictions",
        "uncertainty_threshold",
        "validation_plateau",
        "kpi_reached",
        "any_of",
        "all_of",
    }
    for name, cls in STOPPING_CRITERIA.items():
        assert cls.name == name
        assert issubclass(cls, StoppingCriterion)
        assert cls.summary and cls.reference and cls.__doc__


def test_errors_are_exemplar_errors() -> None:
    assert issubclass(StoppingError, ExemplarError)
    assert issubclass(InvalidObservationError, StoppingError)


@pytest.mark.parametrize("kwargs", [{"round": -1, "n_labeled": 0}, {"round": 0, "n_labeled": 1.5}])
def test_observation_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidObservationError):
        Observation(**kwargs)  # type: ignore[arg-type]


def test_replaying_the_last_round_returns_the_same_decision() -> None:
    crit = StabilizingPredictions(window=1)
    preds = np.arange(10) % 2
    crit.update(Observation(0, 5, stop_set_predictions=preds))
    first = crit.update(Observation(1, 10, stop_set_predictions=(preds + 1) % 2))
    again = crit.update(Observation(1, 10, stop_set_predictions=(preds + 1) % 2))
    assert again == first and crit.kappas_ == [-1.0]
    # A resumed loop that replays the round after restoring state gets the same answer.
    resumed = StabilizingPredictions(window=1)
    resumed.load_state_dict(json.loads(json.dumps(crit.state_dict())))
    assert resumed.update(Observation(1, 10, stop_set_predictions=preds)) == first


def test_rounds_must_not_go_back() -> None:
    crit = LabelBudget(10)
    crit.update(Observation(3, 5))
    with pytest.raises(InvalidObservationError, match="rounds must increase"):
        crit.update(Observation(2, 5))
    crit.reset()
    assert not crit.update(Observation(0, 5)).stop


def test_stop_decision_round_trips() -> None:
    d = StopDecision(True, "why", ("a", "b"))
    assert StopDecision.from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_load_state_of_another_criterion_fails() -> None:
    with pytest.raises(ConfigError, match="label_budget"):
        KPIReached(0.9).load_state_dict(LabelBudget(3).state_dict())
    with pytest.raises(ConfigError, match="malformed"):
        ValidationPlateau().load_state_dict({"criterion": "validation_plateau"})


def test_get_params_and_repr() -> None:
    crit = ValidationPlateau(metric="f1", patience=5)
    assert crit.get_params() == {"metric": "f1", "patience": 5, "min_delta": 0.0, "mode": "max"}
    assert repr(crit) == "ValidationPlateau(metric='f1', patience=5, min_delta=0.0, mode='max')"


def test_make_criterion_builds_nested_specs() -> None:
    crit = make_criterion(
        {
            "name": "any_of",
            "criteria": [
                {"name": "stabilizing_predictions", "window": 2},
                {"name": "label_budget", "budget": 50},
            ],
        }
    )
    assert isinstance(crit, AnyOf)
    assert [type(c) for c in crit.criteria] == [StabilizingPredictions, LabelBudget]
    assert crit.criteria[0].get_params() == {"threshold": 0.99, "window": 2}
    budget = LabelBudget(5)
    assert make_criterion(budget) is budget


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"name": "patience"}, "unknown stopping criterion"),
        ({"budget": 3}, "unknown stopping criterion"),
        ({"name": "label_budget", "budjet": 3}, "budjet"),
        ({"name": "label_budget"}, "budget"),
        ({"name": "label_budget", "budget": 0}, "budget"),
        ({"name": "any_of", "criteria": {"name": "label_budget"}}, "list"),
        ("label_budget", "table"),
    ],
)
def test_make_criterion_errors(spec: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_criterion(spec)  # type: ignore[arg-type]
