"""ALBL (Hsu & Lin 2015): the bandit learns from rewards, weights items 1/pi, resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exemplar.errors import ConfigError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies import ALBL, get_strategy
from exemplar.strategies.albl import DEFAULT_ARMS

N, C = 200, 3


def _pool(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(N, 4)).astype(np.float32)
    y = rng.integers(0, C, N)
    return emb, y


def _predictions(emb: np.ndarray, y: np.ndarray, level: float, seed: int) -> Predictions:
    """Probabilities putting ``level`` on the true class, the rest on the others."""
    rng = np.random.default_rng(seed)
    proba = np.full((N, C), (1.0 - level) / (C - 1))
    proba[np.arange(N), y] = level
    proba += rng.uniform(0, 1e-4, size=proba.shape)  # break ties for margin
    proba /= proba.sum(axis=1, keepdims=True)
    return Predictions(proba=proba, embeddings=emb, classes=np.arange(C))


def _loop(
    albl: ALBL, rounds: int, *, good: str, seed: int = 0, batch: int = 5, start: int = 0
) -> tuple[list[str], list[list[int]], list[float]]:
    """Drive ``albl``: each batch the arm ``good`` picks makes the next model 0.03 more
    accurate (soft accuracy); other arms' batches change nothing. Returns the arms drawn,
    the batches and the accuracy levels the queries saw."""
    emb, y = _pool(seed)
    labeled = list(range(10))
    level = 0.3
    arms, batches, levels = [], [], []
    for r in range(rounds):
        levels.append(level)
        pred = _predictions(emb, y, level, seed=r)
        unl = np.setdiff1d(np.arange(N), labeled)
        picks = albl.query(
            pred, unl, np.asarray(labeled), batch, y_labeled=y[labeled], random_state=[seed, r]
        )
        labeled += picks.tolist()
        albl.observe(np.asarray(labeled), y[labeled])  # the loop's hook after retraining
        assert albl.last_arm is not None
        arms.append(albl.last_arm)
        batches.append(picks.tolist())
        if albl.last_arm == good:
            level = min(level + 0.03, 0.99)
    return arms, batches, levels


def _mean_p(albl: ALBL, arm: int, after: int = 10) -> float:
    """The arm's mean draw probability over the rounds after the first ``after``
    (EXP4.P's variance bonus makes the last round's probabilities oscillate)."""
    return float(np.mean([h["p"][arm] for h in albl.state_dict()["history"][after:]]))


def test_bandit_shifts_weight_to_the_arm_that_earns_reward() -> None:
    albl = ALBL(arms="margin,random", eta=0.5, estimator="hajek")
    arms, _, _ = _loop(albl, 30, good="margin")
    assert _mean_p(albl, 0) > 0.6
    assert arms.count("margin") > 15
    history = albl.state_dict()["history"]
    rewards = {"margin": [], "random": []}
    for h in history:
        if "reward" in h:
            rewards[h["arm"]].append(h["reward"])
    # Rewards lie in [0, 1]: a gain of 0.03 (x20, clipped) maps to 0.8, no gain to 0.5.
    assert all(0.0 <= r <= 1.0 for r in rewards["margin"] + rewards["random"])
    assert np.mean(rewards["margin"]) == pytest.approx(0.8, abs=0.01)
    assert np.mean(rewards["random"]) == pytest.approx(0.5, abs=0.01)


def test_the_rewarded_arm_wins_whichever_arm_it_is() -> None:
    albl = ALBL(arms="margin,random", eta=0.5, estimator="hajek")
    arms, _, _ = _loop(albl, 30, good="random")
    assert _mean_p(albl, 1) > 0.55
    assert arms.count("random") > 15


def test_rewards_are_bounded_to_the_unit_interval() -> None:
    """EXP4.P needs rewards in [0, 1]: a large loss maps to 0, a large gain to 1, and the
    update adds eta r / p to the drawn arm's log weight (plus the shared variance bonus)."""
    emb, y = _pool()
    labeled = np.arange(10)
    unl = np.setdiff1d(np.arange(N), labeled)
    for before, after, expected in ((0.9, 0.1, 0.0), (0.1, 0.9, 1.0), (0.5, 0.5, 0.5)):
        albl = ALBL(arms="margin,random", eta=0.5, estimator="hajek")
        albl.query(_predictions(emb, y, before, 0), unl, labeled, 5, random_state=1)
        picks = albl.query(_predictions(emb, y, after, 1), unl, labeled, 5, random_state=2)
        entry = albl.state_dict()["history"][0]
        log_w = np.asarray(albl.state_dict()["log_weights"])
        rows = np.concatenate([labeled, picks])
        assert albl.observe(rows, y[rows]) == pytest.approx(expected, abs=1e-3)
        p = np.asarray(entry["p"])
        bonus = np.sqrt(np.log(2 / albl.delta) / (2 * albl.horizon)) / p
        step = np.asarray(albl.state_dict()["log_weights"]) - log_w
        r_hat = np.zeros(2)
        r_hat[entry["arm_index"]] = expected / p[entry["arm_index"]]
        want = albl.eta * (r_hat + bonus)
        np.testing.assert_allclose(step - step.max(), want - want.max(), atol=1e-3)


def test_a_portfolio_without_the_random_arm_is_refused() -> None:
    with pytest.raises(ConfigError, match="random"):
        ALBL(arms="margin,uncertain_diverse")


def test_requires_is_the_union_of_the_arms() -> None:
    assert ALBL(arms="margin,random").requires == frozenset({"proba"})
    assert "embeddings" in ALBL(arms="margin,typiclust,random").requires
    assert "embeddings" in ALBL().requires  # default arms: uncertain_diverse, typiclust


def test_items_the_previous_model_never_scored_are_left_out_of_the_reward() -> None:
    """Items imported into a running project: the pool grows between two queries, and the
    previous model's probabilities cover only the old rows."""
    rng = np.random.default_rng(0)

    def pred(n: int) -> Predictions:
        proba = rng.dirichlet(np.ones(C), n)
        emb = rng.normal(size=(n, 4)).astype(np.float32)
        return Predictions(proba=proba, embeddings=emb, classes=np.arange(C))

    labeled = np.arange(10)
    for arms in ("margin,random", "random,margin"):
        albl = ALBL(arms=arms)
        albl.query(pred(100), np.arange(10, 100), labeled, 5, random_state=0)
        # Only new rows are left: no reward can be judged, and none is pending.
        albl.query(pred(200), np.arange(100, 200), labeled, 5, random_state=1)
        assert albl.state_dict()["pending"] is None and albl.state_dict()["rounds"] == 2
        # Old and new rows: the pending evaluation keeps only the rows scored before.
        unl = np.arange(40, 300)
        picks = albl.query(pred(300), unl, labeled, 20, random_state=3)
        pending = albl.state_dict()["pending"]
        old = picks[picks < 200]
        assert pending["rows"] == old.tolist() and len(pending["weights"]) == old.size
        if old.size:
            rows = np.concatenate([labeled, picks])
            reward = albl.observe(rows, rng.integers(0, C, rows.size))
            assert reward is not None and 0.0 <= reward <= 1.0


def test_no_reward_keeps_the_arms_balanced() -> None:
    """Without any accuracy gain every reward is 1/2 (r̂ = 1/(2p), equal in expectation)
    and EXP4.P's variance bonus pulls the weights toward each other."""
    albl = ALBL(arms="margin,random")
    emb, y = _pool()
    labeled = list(range(10))
    pred = _predictions(emb, y, 0.6, seed=0)
    for r in range(20):
        unl = np.setdiff1d(np.arange(N), labeled)
        picks = albl.query(pred, unl, np.asarray(labeled), 5, y_labeled=y[labeled], random_state=r)
        labeled += picks.tolist()
    history = albl.state_dict()["history"]
    assert all(h.get("gain", 0.0) == 0.0 for h in history)
    assert all(h["reward"] == 0.5 for h in history if "reward" in h)
    assert abs(_mean_p(albl, 0, after=0) - 0.5) < 0.1


def test_importance_weights_are_one_over_inclusion_probability() -> None:
    emb, y = _pool()
    labeled = np.arange(10)
    unl = np.setdiff1d(np.arange(N), labeled)
    pred = _predictions(emb, y, 0.6, seed=0)
    seen = set()
    for seed in range(20):
        albl = ALBL(arms="margin,random")
        albl.query(pred, unl, labeled, 5, y_labeled=y[labeled], random_state=seed)
        first = albl.last_arm
        albl.query(pred, np.setdiff1d(unl, unl[:5]), labeled, 5, random_state=seed + 100)
        pending = albl.state_dict()["pending"]
        size = unl.size - 5
        p = albl.state_dict()["history"][-1]["p"]  # 0.5 each: no reward credited yet
        share = 0.5 * 5 / size
        expected = 1 / share if albl.last_arm == "random" else 1 / (0.5 + share)
        assert p == [0.5, 0.5]
        np.testing.assert_allclose(pending["weights"], [expected] * 5)
        assert pending["pool"] == size and pending["credit"] == 0
        seen.add((first, albl.last_arm))
    assert {a for _, a in seen} == {"margin", "random"}  # both cases were checked


def test_horvitz_thompson_gain_is_scaled_by_the_pool() -> None:
    albl = ALBL(arms="margin,random", estimator="ht", reward_gain=1.0)
    emb, y = _pool()
    labeled = np.arange(10)
    unl = np.setdiff1d(np.arange(N), labeled)
    albl.query(_predictions(emb, y, 0.1, 0), unl, labeled, 5, random_state=1)
    picks = albl.query(_predictions(emb, y, 0.8, 1), unl, labeled, 5, random_state=2)
    pending = albl.state_dict()["pending"]
    rows = np.concatenate([labeled, picks])
    reward = albl.observe(rows, y[rows])
    acc_gain = 0.8 - 0.1  # soft accuracy: 0.8 on the true class after, 0.1 before
    expected = pending["weights"][0] * 5 * acc_gain / pending["pool"]
    assert reward == pytest.approx((min(expected, 1.0) + 1) / 2, rel=1e-2)  # in [0, 1]
    assert albl.observe(rows, y[rows]) is None  # credited once


def test_state_round_trips_and_a_resumed_bandit_continues_identically() -> None:
    emb, y = _pool()
    ref = ALBL(arms="margin,random,uncertain_diverse", eta=0.5, estimator="hajek")
    arms_ref, batches_ref, levels = _loop(ref, 12, good="margin")

    first = ALBL(arms="margin,random,uncertain_diverse", eta=0.5, estimator="hajek")
    _, batches_a, _ = _loop(first, 6, good="margin")
    state = json.loads(json.dumps(first.state_dict()))  # what a project records
    assert state == first.state_dict()

    resumed = ALBL(arms="margin,random,uncertain_diverse", eta=0.5, estimator="hajek")
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    np.testing.assert_allclose(resumed.probabilities(), first.probabilities())
    # The model the last query saw, handed back as a fresh process would (see remember).
    resumed.remember(_predictions(emb, y, levels[5], seed=5))
    labeled = list(range(10)) + [i for b in batches_a for i in b]
    for r in range(6, 12):
        pred = _predictions(emb, y, levels[r], seed=r)
        unl = np.setdiff1d(np.arange(N), labeled)
        picks = resumed.query(
            pred, unl, np.asarray(labeled), 5, y_labeled=y[labeled], random_state=[0, r]
        )
        labeled += picks.tolist()
        resumed.observe(np.asarray(labeled), y[labeled])
        assert picks.tolist() == batches_ref[r] and resumed.last_arm == arms_ref[r]
    assert resumed.state_dict() == ref.state_dict()


def test_same_seed_same_batch_and_arm() -> None:
    emb, y = _pool()
    pred = _predictions(emb, y, 0.6, 0)
    labeled = np.arange(10)
    runs = []
    for _ in range(2):
        albl = get_strategy("albl")
        picks = albl.query(pred, None, labeled, 8, y_labeled=y[labeled], random_state=42)
        assert isinstance(albl, ALBL)
        runs.append((picks.tolist(), albl.last_arm, albl.state_dict()))
    assert runs[0] == runs[1]
    assert len(set(runs[0][0])) == 8 and not set(runs[0][0]) & set(labeled.tolist())


def test_bad_configuration_is_a_clear_error() -> None:
    emb, y = _pool()
    pred = _predictions(emb, y, 0.6, 0)
    for params, match in (
        ({"arms": "margin"}, "at least two arms"),
        ({"arms": "margin,nope"}, "unknown strategy"),
        ({"arms": "margin,margin"}, "distinct"),
        ({"arms": "margin,bald"}, "reads samples"),
        ({"p_min": 0.5}, "p_min"),
        ({"estimator": "mean"}, "estimator"),
    ):
        with pytest.raises(ConfigError, match=match):
            ALBL(**params).query(pred, None, np.arange(10), 5, random_state=0)
    with pytest.raises(StrategyError, match="arms"):
        ALBL(arms="margin,random").load_state_dict(ALBL(arms="entropy,random").state_dict())
    with pytest.raises(StrategyError, match="not an albl state"):
        ALBL().load_state_dict({"version": 99})


def test_simulator_records_the_arm_of_each_round() -> None:
    from exemplar.data import load_dataset
    from exemplar.simulate import SimulationConfig, run_simulation

    config = SimulationConfig(
        dataset="wine", strategies=("albl", "margin"), seeds=1, initial=10, batch_size=5, cycles=4
    )
    result = run_simulation(config, load_dataset("wine"))
    arms = {r["strategy"]: [] for r in result.rows}
    for row in result.rows:
        arms[str(row["strategy"])].append(row["arm"])
    assert arms["albl"][0] == "" and all(a in DEFAULT_ARMS for a in arms["albl"][1:])
    assert arms["margin"] == [""] * 5
