"""Tests of LabelBudget."""

from __future__ import annotations

import json

import pytest

from exemplar.errors import ConfigError
from exemplar.stopping import LabelBudget, Observation


def test_stops_exactly_at_budget() -> None:
    crit = LabelBudget(200)
    decisions = [crit.update(Observation(r, n)) for r, n in enumerate([50, 100, 150, 199, 200])]
    assert [d.stop for d in decisions] == [False, False, False, False, True]
    assert decisions[-1].reason == "budget of 200 labels reached (200 labeled)"
    assert decisions[-1].fired == ("label_budget",)
    assert decisions[0].fired == ()
    assert "150 left" in decisions[0].reason


def test_overshoot_stops() -> None:
    assert LabelBudget(10).update(Observation(0, 25)).stop


@pytest.mark.parametrize("budget", [0, -5, 2.5, True, "100", None])
def test_invalid_budget(budget: object) -> None:
    with pytest.raises(ConfigError, match="budget"):
        LabelBudget(budget)  # type: ignore[arg-type]


def test_state_round_trip() -> None:
    crit = LabelBudget(30)
    crit.update(Observation(0, 10))
    state = json.loads(json.dumps(crit.state_dict()))
    restored = LabelBudget(30)
    restored.load_state_dict(state)
    assert restored.state_dict() == crit.state_dict()
    assert not restored.update(Observation(1, 20)).stop
    assert restored.update(Observation(2, 30)).stop
