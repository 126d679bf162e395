"""ActiveLab-style relabel-or-new scores (Goh & Mueller 2023), written in curation/relabel.py."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.curation.relabel import (
    NO_LABEL,
    activelab_scores,
    consensus_labels,
    majority_vote,
    plan_batch,
)
from exemplar.errors import ConfigError

K = 3


def _crowd(n: int, accuracies: list[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True classes and every annotator's label of every item."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, size=n)
    right = rng.random((n, len(accuracies))) < np.asarray(accuracies)
    wrong = (y[:, None] + rng.integers(1, K, size=(n, len(accuracies)))) % K
    return y, np.where(right, y[:, None], wrong)


def _model_proba(y: np.ndarray, accuracy: float, seed: int = 1) -> np.ndarray:
    """A moderately good model: its top class is right with probability ``accuracy``."""
    rng = np.random.default_rng(seed)
    guess = np.where(rng.random(y.size) < accuracy, y, (y + 1) % K)
    proba = np.full((y.size, K), 0.15)
    proba[np.arange(y.size), guess] = 0.7
    return proba


def test_consensus_trusts_the_reliable_annotator_over_a_noisy_majority() -> None:
    y, labels = _crowd(600, [0.95, 0.5, 0.5])
    proba = _model_proba(y, 0.7)
    scores = activelab_scores(labels, proba)
    # The reliable annotator is found, and weighed most.
    assert np.argmax(scores.annotator_accuracy) == 0
    assert scores.annotator_weight[0] > 1.5 * scores.annotator_weight[1:].max()
    consensus_acc = (scores.consensus == y).mean()
    majority_acc = (majority_vote(labels, K) == y).mean()
    assert consensus_acc > majority_acc + 0.05
    assert consensus_acc > 0.9
    np.testing.assert_array_equal(consensus_labels(labels, proba), scores.consensus)


def test_disputed_items_score_below_unanimous_ones_and_doubtful_new_below_clear_new() -> None:
    y, labels = _crowd(300, [0.8, 0.8, 0.8], seed=2)
    proba = _model_proba(y, 0.8)
    single = np.full_like(labels, NO_LABEL)
    single[:, 0] = labels[:, 0]
    # Two annotators on every item: agreeing pairs vs disagreeing pairs.
    pair = np.full_like(labels, NO_LABEL)
    pair[:, :2] = labels[:, :2]
    unl = np.array([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33]])
    scores = activelab_scores(pair, proba, unl)
    agree = pair[:, 0] == pair[:, 1]
    assert scores.labeled[agree].mean() > scores.labeled[~agree].mean()
    assert scores.unlabeled[0] > scores.unlabeled[1]
    # An item one annotator labeled against the model scores below one the model backs.
    s1 = activelab_scores(single, proba)
    backed = proba.argmax(axis=1) == single[:, 0]
    assert s1.labeled[backed].mean() > s1.labeled[~backed].mean()
    assert np.all((scores.labeled > 0) & (scores.labeled <= 1))
    assert scores.quality.shape == (300,) and np.all(scores.quality >= 1 / K)


def test_plan_spends_the_batch_on_the_lowest_scores_and_skips_items_every_annotator_labeled() -> (
    None
):
    labels = np.array([[0, NO_LABEL], [1, 1], [2, NO_LABEL], [0, NO_LABEL]])
    proba = np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    unl = np.array([[0.5, 0.4, 0.1], [0.9, 0.05, 0.05], [0.34, 0.33, 0.33]])
    scores = activelab_scores(labels, proba, unl)
    plan = plan_batch(scores, labels, 3)
    assert len(plan.order) == 3
    assert 1 not in plan.relabel.tolist()  # both annotators labeled item 1 already
    # Item 0 (its label disputed by the model) and the most doubtful new item come first.
    assert ("relabel", 0) in plan.order and ("new", 2) in plan.order
    assert ("new", 1) not in plan.order  # the model is sure of it
    assert np.all(np.diff(plan.scores) >= 0)  # lowest first
    everything = plan_batch(scores, labels, 100)
    assert len(everything.order) == 3 + 3  # items 0, 2, 3 and the three new ones


@pytest.mark.parametrize(
    "labels, proba, match",
    [
        (np.array([[0.5, 1.0]]), np.ones((1, K)) / K, "integer matrix"),
        (np.array([[0, 1]]), np.ones((2, K)) / K, "shape"),
        (np.array([[0, 5]]), np.ones((1, K)) / K, "class indices"),
        (np.array([[NO_LABEL, NO_LABEL]]), np.ones((1, K)) / K, "at least one"),
        (np.array([[0, 1]]), np.array([[np.nan, 0.5, 0.5]]), "finite"),
        (np.array([[0]]), np.ones((1, 1)), "two classes"),
    ],
)
def test_bad_input_is_refused(labels: np.ndarray, proba: np.ndarray, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        activelab_scores(labels, proba)


def test_bad_batch_and_unlabeled_input_are_refused() -> None:
    labels = np.array([[0, NO_LABEL]])
    proba = np.array([[0.6, 0.2, 0.2]])
    with pytest.raises(ConfigError, match="proba_unlabeled"):
        activelab_scores(labels, proba, np.ones((2, K + 1)))
    scores = activelab_scores(labels, proba)
    with pytest.raises(ConfigError, match="at least 1"):
        plan_batch(scores, labels, 0)


def _two_of_three(n: int, k: int, accuracies: list[float], seed: int) -> np.ndarray:
    """Each item labeled by two of three annotators (right with their accuracy, else
    another class at random)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    labels = np.full((n, len(accuracies)), NO_LABEL)
    for i in range(n):
        for j in rng.choice(len(accuracies), 2, replace=False):
            right = rng.random() < accuracies[j]
            labels[i, j] = y[i] if right else (y[i] + rng.integers(1, k)) % k
    return labels


def test_annotator_accuracy_is_measured_against_the_other_annotators() -> None:
    """With a flat model only the annotators' agreement tells them apart: the estimates
    order correctly and sit near the truth (a vote that includes the annotator's own label
    gave 0.997 / 0.821 / 0.333 here)."""
    true = [0.9, 0.7, 0.4]
    labels = _two_of_three(3000, 10, true, seed=0)
    accuracy = activelab_scores(labels, np.full((3000, 10), 0.1)).annotator_accuracy
    assert accuracy[0] > accuracy[1] > accuracy[2]
    np.testing.assert_allclose(accuracy, true, atol=0.05)


def test_the_first_named_annotator_is_not_favoured() -> None:
    """Equal annotators get equal estimates, whichever column comes first: the estimate
    does not depend on the order of the annotators (ties once went to the first)."""
    labels = _two_of_three(1500, K, [0.6, 0.6, 0.6], seed=0)
    flat = np.full((1500, K), 1 / K)
    accuracy = activelab_scores(labels, flat).annotator_accuracy
    reversed_ = activelab_scores(labels[:, ::-1], flat).annotator_accuracy[::-1]
    np.testing.assert_allclose(accuracy, reversed_)
    np.testing.assert_allclose(accuracy, 0.6, atol=0.06)
    assert accuracy[0] < accuracy[1:].max() + 0.06
