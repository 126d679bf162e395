"""Confident learning finds injected label errors (Northcutt et al. 2021), written here."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from exemplar.curation import (
    LabelErrors,
    find_label_errors,
    out_of_fold_proba,
    rank_by_self_confidence,
)
from exemplar.errors import ConfigError, InvalidPredictionsError, StrategyError

METHODS = ["prune_by_noise_rate", "confident_joint_off_diagonal"]


def _flip(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``share`` of them moved to another class uniformly; the flipped indices."""
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    flipped = rng.choice(y.size, round(share * y.size), replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, flipped.size)) % n_classes
    return noisy, flipped


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def noisy_digits(
    digits: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = digits
    noisy, flipped = _flip(y, 0.10, seed=0)
    proba, classes = out_of_fold_proba(X, noisy, recipe="logreg", folds=5, seed=0)
    return proba, classes, noisy, flipped


def test_out_of_fold_proba_shape_and_rows(noisy_digits: tuple[np.ndarray, ...]) -> None:
    proba, classes, noisy, _ = noisy_digits
    assert proba.shape == (noisy.size, 10)
    np.testing.assert_array_equal(classes, np.arange(10))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_ranking_top_twice_budget_finds_most_injected_errors(
    noisy_digits: tuple[np.ndarray, ...],
) -> None:
    proba, classes, noisy, flipped = noisy_digits
    order = rank_by_self_confidence(proba, noisy, classes)
    assert sorted(order.tolist()) == list(range(noisy.size))
    found = np.isin(flipped, order[: 2 * flipped.size]).mean()
    assert found >= 0.7


@pytest.mark.parametrize("method", METHODS)
def test_flagged_items_are_mostly_injected_errors(
    noisy_digits: tuple[np.ndarray, ...], method: str
) -> None:
    proba, classes, noisy, flipped = noisy_digits
    errors = find_label_errors(proba, noisy, classes, method=method)
    assert isinstance(errors, LabelErrors)
    precision = np.isin(errors.indices, flipped).mean()
    recall = np.isin(flipped, errors.indices).mean()
    assert precision >= 0.7
    assert recall >= 0.7
    # The estimate is of the right size (179 flips were injected).
    assert 0.5 * flipped.size <= errors.n_estimated_errors <= 1.5 * flipped.size


@pytest.mark.parametrize("method", METHODS)
def test_flagged_ranked_by_self_confidence_with_reasons(
    noisy_digits: tuple[np.ndarray, ...], method: str
) -> None:
    proba, classes, noisy, _ = noisy_digits
    errors = find_label_errors(proba, noisy, classes, method=method)
    conf = proba[errors.indices, noisy[errors.indices]]
    np.testing.assert_allclose(errors.self_confidence, conf)
    assert np.all(np.diff(conf) >= 0)
    assert len(errors.reasons) == len(errors) == errors.suggested.size
    assert np.all(errors.suggested != noisy[errors.indices])
    k, s = int(errors.indices[0]), int(errors.suggested[0])
    assert errors.reasons[0] == (
        f"labeled '{noisy[k]}', model says '{s}' with p={proba[k, s]:.2f} "
        f"(threshold {errors.thresholds[s]:.2f})"
    )


def test_clean_dataset_flags_few(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    proba, classes = out_of_fold_proba(X, y, seed=0)
    for method in METHODS:
        errors = find_label_errors(proba, y, classes, method=method)
        assert len(errors) <= 0.02 * y.size
        assert errors.n_estimated_errors <= 0.02 * y.size


def test_confident_joint_diagonal_dominates(noisy_digits: tuple[np.ndarray, ...]) -> None:
    proba, classes, noisy, _ = noisy_digits
    joint = find_label_errors(proba, noisy, classes).confident_joint
    assert joint.shape == (10, 10)
    diag = np.diag(joint)
    off = joint - np.diag(diag)
    assert np.all(diag > off.sum(axis=0))
    assert np.all(diag > off.sum(axis=1))


def test_thresholds_are_per_class_mean_self_confidence() -> None:
    proba = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5]])
    labels = np.array(["a", "a", "b", "b", "b"])
    errors = find_label_errors(proba, labels, np.array(["a", "b"]))
    np.testing.assert_allclose(errors.thresholds, [0.8, (0.8 + 0.6 + 0.5) / 3])


def test_confident_joint_counts_by_hand() -> None:
    # Thresholds: cat 0.7 (mean of 0.9, 0.5), dog 0.6375 (mean of 0.8, 0.1, 0.8, 0.85).
    # Item 1 (cat, p_cat=0.5, p_dog=0.5) reaches neither threshold, so it is not counted;
    # item 3 (dog, p_cat=0.9 >= 0.7) counts as cat.
    proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.9, 0.1], [0.2, 0.8], [0.15, 0.85]])
    labels = np.array(["cat", "cat", "dog", "dog", "dog", "dog"])
    classes = np.array(["cat", "dog"])
    errors = find_label_errors(proba, labels, classes, method="confident_joint_off_diagonal")
    np.testing.assert_allclose(errors.thresholds, [0.7, (0.8 + 0.1 + 0.8 + 0.85) / 4])
    assert errors.confident_joint.tolist() == [[1, 0], [1, 3]]
    assert errors.indices.tolist() == [3]
    assert errors.suggested.tolist() == ["cat"]
    assert errors.reasons == ("labeled 'dog', model says 'cat' with p=0.90 (threshold 0.70)",)
    # Row dog already sums to its 4 labels, so calibration keeps its 1 off-diagonal count.
    assert errors.n_estimated_errors == 1


def test_labels_not_in_classes_raise() -> None:
    proba = np.full((3, 2), 0.5)
    with pytest.raises(StrategyError, match=r"labels \['emu'\] are not in classes"):
        find_label_errors(proba, np.array(["cat", "emu", "dog"]), np.array(["cat", "dog"]))
    with pytest.raises(StrategyError, match="not in classes"):
        rank_by_self_confidence(proba, np.array(["cat", "emu", "dog"]), np.array(["cat", "dog"]))


def test_bad_proba_and_method_raise() -> None:
    labels = np.array([0, 1, 1])
    with pytest.raises(InvalidPredictionsError, match="shape"):
        find_label_errors(np.full((3, 3), 1 / 3), labels, np.array([0, 1]))
    with pytest.raises(InvalidPredictionsError, match="NaN"):
        find_label_errors(np.array([[np.nan, 1], [0, 1], [0, 1]]), labels, np.array([0, 1]))
    with pytest.raises(ConfigError, match="unknown method"):
        find_label_errors(np.full((3, 2), 0.5), labels, np.array([0, 1]), method="vote")  # type: ignore[arg-type]


def test_out_of_fold_falls_back_to_fewer_folds(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    keep = np.flatnonzero((y == 0) | (y == 1))
    keep = np.concatenate([keep[y[keep] == 0], keep[y[keep] == 1][:3]])
    proba, classes = out_of_fold_proba(X[keep], y[keep], folds=5, seed=0)
    assert proba.shape == (keep.size, 2)
    assert classes.tolist() == [0, 1]
    # Every row was predicted by a model (3 folds), so it is a distribution.
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_out_of_fold_single_item_class_raises(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    keep = np.concatenate([np.flatnonzero(y == 0)[:10], np.flatnonzero(y == 1)[:1]])
    with pytest.raises(ConfigError, match=r"classes \[1\] have a single item"):
        out_of_fold_proba(X[keep], y[keep])
    with pytest.raises(ConfigError, match="folds must be at least 2"):
        out_of_fold_proba(X, y, folds=1)


def test_prune_by_noise_rate_fills_calibrated_quota_by_margin() -> None:
    # Labeled a: three sure, item 3 confidently b, items 4-6 reach no threshold. Row a of the
    # joint is [3, 1] over 7 labels, so the calibrated off-diagonal is 1 * 7 / 4 = 1.75 -> 2.
    p_a = np.array([0.9, 0.9, 0.9, 0.1, 0.4, 0.45, 0.5, 0.2, 0.2, 0.2, 0.2])
    proba = np.column_stack([p_a, 1 - p_a])
    labels = np.array(["a"] * 7 + ["b"] * 4)
    classes = np.array(["a", "b"])
    off_diagonal = find_label_errors(proba, labels, classes, method="confident_joint_off_diagonal")
    assert off_diagonal.confident_joint.tolist() == [[3, 1], [0, 4]]
    assert off_diagonal.indices.tolist() == [3]
    pruned = find_label_errors(proba, labels, classes, method="prune_by_noise_rate")
    assert pruned.n_estimated_errors == 2
    # The two items labeled a with the largest margin p_b - p_a (0.8, then 0.2).
    assert pruned.indices.tolist() == [3, 4]
    assert pruned.suggested.tolist() == ["b", "b"]
