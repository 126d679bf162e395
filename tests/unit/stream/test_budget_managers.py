"""Budget managers: the budget is never overspent, each rule does what its paper says,
and a manager's state round-trips so a resumed stream decides exactly as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exemplar.errors import ConfigError
from exemplar.stream import (
    MANAGERS,
    BalancedIncremental,
    FixedUncertainty,
    Split,
    VariableUncertainty,
    make_manager,
    uncertainty,
)

NAMES = sorted(MANAGERS)


def _streams() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {
        "uniform": rng.random(2000),
        "all_max": np.ones(2000),
        "rising": np.linspace(0, 1, 2000),
        "bursts": np.where(rng.random(2000) < 0.05, 1.0, 0.01),
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("budget", [0.05, 0.2])
def test_never_overspends(name: str, budget: float) -> None:
    for label, utilities in _streams().items():
        manager = make_manager(name, budget, random_state=3)
        asked = 0
        for n, u in enumerate(utilities, start=1):
            decision = manager.decide(float(u))
            asked += decision.asked
            assert asked <= budget * n + 1.0 + 1e-9, (label, n)
            assert decision.state["asked"] == asked and decision.state["arrivals"] == n
        assert asked >= 0.5 * budget * len(utilities) or label == "bursts", (label, asked)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "random"])
def test_uncertainty_managers_prefer_high_utility(name: str) -> None:
    utilities = np.random.default_rng(7).random(4000)
    manager = make_manager(name, 0.1)
    asked = np.array([manager.decide(float(u)).asked for u in utilities])
    assert 0.08 <= asked.mean() <= 0.101
    assert utilities[asked].mean() > 0.65  # random asks would average 0.5


def test_random_ignores_utility() -> None:
    utilities = np.random.default_rng(7).random(4000)
    manager = make_manager("random", 0.1, random_state=1)
    decisions = [manager.decide(float(u)) for u in utilities]
    asked = np.array([d.asked for d in decisions])
    # The balance term spends the budget on target (a plain coin drifts below it).
    assert 0.097 <= asked.mean() <= 0.101
    spent = np.cumsum(asked) / np.arange(1, asked.size + 1)
    assert np.all(np.abs(spent[200:] - 0.1) < 0.02)
    assert abs(utilities[asked].mean() - 0.5) < 0.06
    assert all(d.threshold is None for d in decisions)


def test_fixed_threshold_asks_only_above_it() -> None:
    manager = FixedUncertainty(0.5, threshold=0.7)
    for u in np.random.default_rng(0).random(500):
        decision = manager.decide(float(u))
        assert decision.threshold == 0.7
        if decision.asked:
            assert u >= 0.7


def test_variable_threshold_moves_by_step() -> None:
    """Žliobaitė et al. (2014) Alg. 3 on the top-posterior scale, from θ = 1: ask when the
    confidence is below θ, then θ(1 − s); after a pass θ(1 + s)."""
    assert VariableUncertainty().threshold == 1.0
    manager = VariableUncertainty(0.5, step=0.1, window=10)
    first = manager.decide(0.9, confidence=0.3)  # 0.3 < 1: asked, θ falls
    assert first.asked and first.threshold == 1.0
    assert first.state["threshold"] == pytest.approx(0.9)
    second = manager.decide(0.1, confidence=0.95)  # 0.95 >= 0.9: passed, θ rises
    assert not second.asked and second.state["threshold"] == pytest.approx(0.99)
    third = manager.decide(0.2, confidence=0.98)  # 0.98 < 0.99: asked
    assert third.asked and third.state["threshold"] == pytest.approx(0.891)
    # Without a confidence the rule reads 1 - utility (the rescaled top probability).
    fourth = VariableUncertainty(0.5).decide(0.01)
    assert fourth.asked  # 0.99 < 1


def test_variable_uncertainty_spends_the_budget_on_the_least_confident() -> None:
    rng = np.random.default_rng(3)
    confidence = 0.5 + 0.5 * rng.random(5000)  # a binary model's top probability
    utility = (1.0 - confidence) / 0.5
    manager = VariableUncertainty(0.1)
    asked = np.array(
        [manager.decide(float(u), confidence=float(c)).asked for u, c in zip(utility, confidence)]
    )
    assert 0.08 <= asked.mean() <= 0.101
    assert confidence[asked].mean() < confidence.mean() - 0.1


def test_variable_threshold_recovers_after_calm_period() -> None:
    """Žliobaitė et al.: in a calm stream the threshold drifts down until items are asked."""
    manager = VariableUncertainty(0.1, threshold=0.9, step=0.01)
    decisions = [manager.decide(0.2) for _ in range(1000)]
    assert sum(d.asked for d in decisions[500:]) > 0
    fixed = FixedUncertainty(0.1, threshold=0.9)
    assert not any(fixed.decide(0.2).asked for _ in range(1000))


def test_split_share_of_coin_decisions() -> None:
    manager = Split(0.1, random_share=0.3, random_state=5)
    decisions = [manager.decide(0.0) for _ in range(3000)]
    coins = [d for d in decisions if d.threshold is None]
    assert 0.26 <= len(coins) / 3000 <= 0.34
    # Confidence 1 passes the uncertainty rule only once θ climbed above 1 (calm stream).
    assert all(d.threshold is None or d.threshold > 1.0 for d in decisions if d.asked)
    assert sum(d.asked for d in decisions) > 0


def test_balanced_incremental_follows_the_scale_of_utilities() -> None:
    """A quantile filter asks for the top share whatever the scale; a fixed threshold not."""
    rng = np.random.default_rng(1)
    low = 0.1 * rng.random(1500)  # a confident model: every utility is small
    manager = BalancedIncremental(0.1, window=100, tolerance_window=50)
    asked = np.array([manager.decide(float(u)).asked for u in low])
    assert 0.08 <= asked.mean() <= 0.101
    assert low[asked].mean() > np.quantile(low, 0.7)
    fixed = FixedUncertainty(0.1, threshold=0.5)
    assert not any(fixed.decide(float(u)).asked for u in low)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_the_same_decisions(name: str) -> None:
    utilities = np.random.default_rng(11).random(600)
    whole = make_manager(name, 0.15, random_state=9)
    expected = [whole.decide(float(u)) for u in utilities]
    first = make_manager(name, 0.15, random_state=9)
    for u in utilities[:300]:
        first.decide(float(u))
    saved = json.loads(json.dumps(first.state_dict()))
    resumed = make_manager(name, 0.15, random_state=123)  # the state carries the generator
    resumed.load_state_dict(saved)
    rest = [resumed.decide(float(u)) for u in utilities[300:]]
    assert [(d.asked, d.threshold, d.state) for d in rest] == [
        (d.asked, d.threshold, d.state) for d in expected[300:]
    ]


def test_state_of_another_manager_is_refused() -> None:
    state = make_manager("split", 0.1).state_dict()
    with pytest.raises(ConfigError, match="written by manager 'split'"):
        make_manager("variable_uncertainty", 0.1).load_state_dict(state)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown budget manager"):
        make_manager("nope", 0.1)
    with pytest.raises(ConfigError, match="budget must be in"):
        make_manager("random", 0.0)
    with pytest.raises(ConfigError, match="bad parameters"):
        make_manager("random", 0.1, {"threshold": 0.3})
    with pytest.raises(ConfigError, match="step must be in"):
        make_manager("variable_uncertainty", 0.1, {"step": 2.0})
    with pytest.raises(ConfigError, match="finite"):
        make_manager("random", 0.1).decide(float("nan"))


def test_uncertainty_is_normalized_least_confidence() -> None:
    proba = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]])
    np.testing.assert_allclose(uncertainty(proba), [0.0, 1.0, 0.75])
    np.testing.assert_allclose(uncertainty(np.array([0.5, 0.5])), [1.0])


def test_parameters_of_the_wrong_type_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="window must be a number"):
        make_manager("variable_uncertainty", 0.1, {"window": "abc"})
    with pytest.raises(ConfigError, match="threshold must be a number"):
        make_manager("fixed_uncertainty", 0.1, {"threshold": "high"})
    with pytest.raises(ConfigError, match="threshold must be a number"):
        make_manager("fixed_uncertainty", 0.1, {"threshold": None})
    with pytest.raises(ConfigError, match="finite"):
        make_manager("fixed_uncertainty", 0.1, {"threshold": float("inf")})
