"""Tests of BatchBald (Kirsch, van Amersfoort & Gal, 2019)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import entropy

from exemplar.errors import MissingPredictionsError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies import Bald, BatchBald, ReducedSamples, batchbald, get_strategy
from exemplar.strategies.batchbald import _JointEntropy, greedy_batchbald


def _random_samples(t: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, 0.3), size=(t, n))


def _confident(votes: list[int], p: float, c: int = 2) -> np.ndarray:
    """(t, c): member k puts ``p`` on class ``votes[k]``."""
    out = np.full((len(votes), c), (1.0 - p) / (c - 1))
    out[np.arange(len(votes)), votes] = p
    return out


def _duplicates_and_independent() -> np.ndarray:
    """Items 0 and 1 identical (highest BALD); item 2 lower BALD, independent of them."""
    a = _confident([0, 1, 0, 1], 0.99)
    b = _confident([0, 0, 1, 1], 0.95)  # splits the members the other way
    filler = _confident([0, 0, 0, 0], 0.7)
    return np.stack([a, a, b, filler, filler], axis=1)  # (t=4, n=5, c=2)


def _brute_force_mi(samples: np.ndarray, items: list[int]) -> float:
    """I(y_items; w) by enumerating every label configuration."""
    c = samples.shape[2]
    joint = 0.0
    for config in itertools.product(range(c), repeat=len(items)):
        per_sample = np.prod([samples[:, i, y] for i, y in zip(items, config, strict=True)], axis=0)
        p = per_sample.mean()
        joint -= p * np.log(p) if p > 0 else 0.0
    conditional = sum(entropy(samples[:, i], axis=1).mean() for i in items)
    return float(joint - conditional)


def test_picks_one_duplicate_and_the_independent_item_where_bald_takes_both() -> None:
    preds = Predictions(samples=_duplicates_and_independent())
    bald = Bald().utility(preds)
    assert bald[0] == bald[1] > bald[2] > bald[3]
    assert sorted(Bald().query(preds, batch_size=2).tolist()) == [0, 1]
    picked = BatchBald().query(preds, batch_size=2, random_state=0)
    assert picked[0] in (0, 1) and picked[1] == 2


def test_batch_mutual_information_matches_enumeration() -> None:
    samples = _random_samples(6, 30, 3, seed=4)
    picks, mutual_info = greedy_batchbald(samples, 4, 10_000, np.random.default_rng(0))
    for size in range(1, 5):  # 3^3 = 27 configurations: exact throughout
        expected = _brute_force_mi(samples, picks[:size].tolist())
        assert mutual_info[size - 1] == pytest.approx(expected, abs=1e-5)
    # With confident samples, a copy of an item adds almost nothing to what it tells.
    item = _confident([0, 1, 2, 0, 1, 2], 0.999, c=3)[:, None, :]
    _, mi_dup = greedy_batchbald(
        np.concatenate([item, item], axis=1), 2, 10_000, np.random.default_rng(0)
    )
    assert mi_dup[0] > 1.0 and mi_dup[1] - mi_dup[0] < 0.02


def test_lazy_evaluation_picks_what_evaluating_every_candidate_picks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for seed in range(3):
        samples = _random_samples(10, 300, 4, seed=seed)
        lazy = greedy_batchbald(samples, 6, 10**5, np.random.default_rng(0))  # 4^6: exact
        monkeypatch.setattr(batchbald, "_LAZY_BLOCK", 10**9)
        eager = greedy_batchbald(samples, 6, 10**5, np.random.default_rng(0))
        monkeypatch.undo()
        assert lazy[0].tolist() == eager[0].tolist()
        np.testing.assert_allclose(lazy[1], eager[1], atol=1e-6)


def test_batch_of_one_is_balds_top_item() -> None:
    for seed in range(5):
        preds = Predictions(samples=_random_samples(8, 200, 4, seed=seed))
        top = Bald().query(preds, batch_size=1)
        assert BatchBald().query(preds, batch_size=1, random_state=seed).tolist() == top.tolist()


def test_sampled_estimate_is_close_to_the_exact_one() -> None:
    samples = _random_samples(10, 40, 3, seed=5)
    picks, exact = greedy_batchbald(samples, 6, 10**6, np.random.default_rng(0))
    # 3^3 > 20: configurations are sampled from the fourth pick on.
    sampled = [
        greedy_batchbald(samples[:, picks], 6, 20, np.random.default_rng(s))[1][-1]
        for s in range(3)
    ]
    brute = _brute_force_mi(samples, picks.tolist())
    assert exact[-1] == pytest.approx(brute, abs=1e-5)
    assert all(abs(est - brute) < 0.25 * brute for est in sampled)
    assert len(set(sampled)) > 1  # the seeded generator draws the configurations


def test_configuration_count_is_bounded() -> None:
    samples = _random_samples(20, 60, 10, seed=6)
    for bound in (50, 1_000, 10_000):
        joint = _JointEntropy(samples, bound, np.random.default_rng(0))
        for pick in range(12):
            joint.add(pick)
            assert joint.log_joint.shape[0] <= bound
            assert joint.weights.shape[0] == joint.log_joint.shape[0]


def test_deterministic_under_seed_and_respects_the_candidate_pool() -> None:
    preds = Predictions(samples=_random_samples(10, 300, 5, seed=7))
    strategy = BatchBald(candidate_pool=40, max_joint_samples=200)
    a = strategy.query(preds, batch_size=10, random_state=3)
    assert a.tolist() == strategy.query(preds, batch_size=10, random_state=3).tolist()
    top40 = set(Bald().query(preds, batch_size=40).tolist())
    assert set(a.tolist()) <= top40
    assert len(set(a.tolist())) == 10
    # A batch larger than the candidate pool widens it.
    assert len(set(strategy.query(preds, batch_size=60, random_state=0).tolist())) == 60


def test_reduced_samples_give_the_in_memory_batch_and_fill_when_candidates_are_taken() -> None:
    samples = _random_samples(6, 120, 3, seed=8)
    preds = Predictions(samples=samples)
    strategy = BatchBald(candidate_pool=15)
    unlabeled = np.arange(10, 120)
    expected, scores = strategy.query(
        preds, unlabeled, np.arange(10), 5, random_state=1, return_scores=True
    )
    utility = Bald().utility(preds)
    rows = unlabeled[np.argsort(-utility[unlabeled], kind="stable")[:15]]
    reduced = ReducedSamples(utility, rows, samples[:, rows].astype(np.float32))
    proba_only = Predictions(proba=samples.mean(axis=0))
    got, got_scores = strategy.query(
        proba_only,
        unlabeled,
        np.arange(10),
        5,
        random_state=1,
        return_scores=True,
        reduced=reduced,
    )
    assert got.tolist() == expected.tolist()
    np.testing.assert_allclose(got_scores, scores)
    # All but two candidates labeled meanwhile: the rest of the batch is the next best BALD.
    still = np.setdiff1d(unlabeled, rows[2:])
    got = strategy.query(proba_only, still, None, 5, random_state=1, reduced=reduced)
    assert set(got[:2].tolist()) == set(rows[:2].tolist())
    rest = np.setdiff1d(still, rows[:2])
    assert got[2:].tolist() == rest[np.argsort(-utility[rest], kind="stable")[:3]].tolist()


def test_bad_parameters_and_missing_candidate_samples() -> None:
    preds = Predictions(samples=_random_samples(4, 20, 3))
    for params in ({"candidate_pool": 0}, {"max_joint_samples": -1}, {"candidate_pool": 2.5}):
        with pytest.raises(StrategyError, match="positive integer"):
            BatchBald(**params).query(preds, batch_size=2)  # type: ignore[arg-type]
    reduced = ReducedSamples(Bald().utility(preds))
    with pytest.raises(MissingPredictionsError, match="samples of its candidates"):
        BatchBald().query(Predictions(proba=preds.proba), batch_size=2, reduced=reduced)
    assert get_strategy("batchbald", candidate_pool=5).candidate_pool == 5
