"""The labeled pool and the simulated oracle."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.errors import ConfigError, InvalidIndicesError
from exemplar.loop import LabeledPool, SimulatedOracle


def test_label_relabel_ignore_undo() -> None:
    pool = LabeledPool(6)
    pool.label(np.array([4, 1]), np.array(["a", "b"]))
    assert pool.labeled.tolist() == [4, 1] and pool.y_labeled.tolist() == ["a", "b"]
    assert pool.unlabeled.tolist() == [0, 2, 3, 5]
    pool.relabel(np.array([1]), np.array(["c"]))
    assert pool.labels_of(np.array([1])).tolist() == ["c"]
    pool.ignore(np.array([5]))
    assert pool.unlabeled.tolist() == [0, 2, 3]
    pool.undo()
    assert 5 in pool.unlabeled
    pool.undo()
    assert pool.labels_of(np.array([1])).tolist() == ["b"]
    pool.undo()
    assert pool.labeled.size == 0
    with pytest.raises(InvalidIndicesError, match="nothing to undo"):
        pool.undo()


def test_pool_rejects_double_labels_and_bad_indices() -> None:
    pool = LabeledPool(3)
    pool.label(np.array([0]), np.array([1]))
    with pytest.raises(InvalidIndicesError, match="already labeled"):
        pool.label(np.array([0]), np.array([1]))
    with pytest.raises(InvalidIndicesError, match="not labeled"):
        pool.relabel(np.array([2]), np.array([1]))
    with pytest.raises(InvalidIndicesError):
        pool.label(np.array([3]), np.array([1]))
    with pytest.raises(InvalidIndicesError, match="duplicate"):
        pool.label(np.array([1, 1]), np.array([1, 1]))


def test_oracle_reveals_truth_and_counts_cost() -> None:
    y = np.array([3, 1, 4, 1, 5])
    oracle = SimulatedOracle(y, cost_per_label=2.5)
    assert oracle.query(np.array([2, 0])).tolist() == [4, 3]
    assert oracle.n_queries == 2 and oracle.total_cost == 5.0


def test_oracle_noise_rate_flips_about_that_fraction_to_other_classes() -> None:
    y = np.repeat(np.arange(4), 2500)
    oracle = SimulatedOracle(y, noise_rate=0.2, random_state=0)
    got = oracle.query(np.arange(y.size))
    flipped = got != y
    assert 0.17 < flipped.mean() < 0.23
    assert set(np.unique(got)) <= set(range(4))


def test_oracle_rejects_bad_params() -> None:
    with pytest.raises(ConfigError):
        SimulatedOracle(np.zeros(3), noise_rate=1.0)
    with pytest.raises(InvalidIndicesError):
        SimulatedOracle(np.zeros(3)).query(np.array([3]))
