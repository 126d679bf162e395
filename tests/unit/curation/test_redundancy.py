"""Tests of redundancy proposals (issue #12, step 5): near duplicates, confident items, plans."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from exemplar.curation.redundancy import (
    REASONS,
    PrunePlan,
    Removal,
    near_duplicates,
    prune_plan,
    redundant_by_margin,
    validate_plan,
)
from exemplar.errors import UsageError


def _with_copies(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """60 spread-out items, plus exact copies of 0-9 and jittered copies of 10-19."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(60, 32))
    exact = base[:10].copy()
    jitter = base[10:20] + rng.normal(scale=1e-3, size=(10, 32))
    x = np.vstack([base, exact, jitter])
    labels = np.concatenate([np.arange(60) % 3, np.arange(20) % 3])
    copy_of = {60 + i: i for i in range(20)}
    return x, labels, copy_of


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_and_jittered_copies_are_grouped_with_one_representative(metric: str) -> None:
    x, labels, copy_of = _with_copies()
    groups = near_duplicates(x, labels, metric=metric)  # default radius
    found = {frozenset(g.members) for g in groups}
    assert found == {frozenset({orig, copy}) for copy, orig in copy_of.items()}
    for g in groups:
        assert g.representative in g.members
        assert len(g.removable) == len(g.members) - 1
        assert g.representative not in g.removable


def test_representative_is_the_member_closest_to_the_centroid_or_the_first() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 32))
    e = rng.normal(scale=1e-3, size=32)
    x[5] = x[20] + e
    x[9] = x[20] - e  # x[20] is the group's mean, but not its lowest row
    (group,) = near_duplicates(x, metric="euclidean", radius=0.01)
    assert group.members == (5, 9, 20)
    assert group.representative == 20
    (first,) = near_duplicates(x, metric="euclidean", radius=0.01, keep="first")
    assert first.representative == 5


def test_different_labels_are_not_merged_when_same_label() -> None:
    x, labels, copy_of = _with_copies()
    labels = labels.copy()
    relabeled = [60, 61, 70]  # copies whose label now differs from their original's
    for c in relabeled:
        labels[c] = (labels[copy_of[c]] + 1) % 3
    groups = near_duplicates(x, labels, same_label=True)
    grouped = {m for g in groups for m in g.members}
    for c in relabeled:
        assert c not in grouped and copy_of[c] not in grouped
    assert len(groups) == 20 - len(relabeled)
    merged = near_duplicates(x, labels, same_label=False)
    assert len(merged) == 20


def test_exact_copies_beyond_k_are_found() -> None:
    rng = np.random.default_rng(2)
    x = np.vstack([rng.normal(size=(40, 32)), np.repeat(rng.normal(size=(1, 32)), 12, axis=0)])
    groups = near_duplicates(x, k=3)
    assert [g.members for g in groups] == [tuple(range(40, 52))]


def test_margin_candidates_are_correct_with_margin_at_least_threshold() -> None:
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.full(4, 0.3), size=500)
    classes = np.array([10, 20, 30, 40])
    labels = classes[rng.integers(0, 4, size=500)]
    cand = redundant_by_margin(proba, labels, classes, margin=0.4)
    pos = np.searchsorted(classes, labels)
    part = np.sort(proba, axis=1)
    correct = proba.argmax(axis=1) == pos
    margin = part[:, -1] - part[:, -2]
    expected = np.flatnonzero(correct & (margin >= 0.4))
    assert expected.size > 0
    assert sorted(cand.tolist()) == expected.tolist()
    assert np.all(np.diff(margin[cand]) <= 0)  # largest margin first


def test_plan_indices_are_unique_sorted_by_reason_and_respect_caps() -> None:
    x, labels, copy_of = _with_copies()
    n = labels.size
    rng = np.random.default_rng(4)
    proba = np.full((n, 3), 0.05)
    proba[np.arange(n), labels] = 0.9  # every item confidently correct
    proba[:5] = rng.dirichlet(np.ones(3), size=5)
    plan = prune_plan(
        x, labels, proba=proba, classes=np.arange(3), max_confident_share=0.2, min_per_class=15
    )
    idx = plan.indices
    assert len(set(idx.tolist())) == idx.size == len(plan)
    keys = [(REASONS.index(r.reason), r.index) for r in plan.removals]
    assert keys == sorted(keys)
    dup = [r for r in plan.removals if r.reason == "near_duplicate"]
    conf = [r.index for r in plan.removals if r.reason == "confident"]
    assert len(dup) == 20
    kept = plan.keep_mask()
    for r in dup:
        assert kept[r.kept]  # the representative stays
        assert copy_of.get(r.index) == r.kept or copy_of.get(r.kept) == r.index
    assert 0 < len(conf) <= int(0.2 * n)
    assert not set(conf) & {r.kept for r in dup}
    for c in range(3):
        assert kept[labels == c].sum() >= 15
    assert plan.share == pytest.approx(len(plan) / n)


def test_plan_without_proba_has_only_duplicates_and_bad_input_is_refused() -> None:
    x, labels, _ = _with_copies()
    plan = prune_plan(x, labels)
    assert plan.count("near_duplicate") == len(plan) == 20 and plan.radius is not None
    with pytest.raises(UsageError, match="proba and classes"):
        prune_plan(x, labels, proba=np.ones((labels.size, 3)) / 3)
    with pytest.raises(UsageError, match="margin"):
        redundant_by_margin(np.ones((2, 2)) / 2, np.array([0, 1]), np.arange(2), margin=0)
    with pytest.raises(UsageError, match="classes"):
        redundant_by_margin(np.ones((2, 2)) / 2, np.array([0, 5]), np.arange(2))
    with pytest.raises(UsageError, match="metric"):
        near_duplicates(x, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="shape"):
        near_duplicates(x, labels[:-1])


def test_validate_plan_on_digits_with_injected_duplicates_keeps_accuracy() -> None:
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    n_dup = int(0.3 * len(y))
    src = rng.choice(len(y), n_dup, replace=False)
    copies = X[src] + rng.normal(scale=0.1, size=(n_dup, X.shape[1])) * X.std(axis=0)
    Xa = np.vstack([X, copies])
    ya = np.concatenate([y, y[src]])
    proba = cross_val_predict(
        LogisticRegression(max_iter=300), Xa / 16.0, ya, cv=3, method="predict_proba"
    )
    plan = prune_plan(Xa, ya, proba=proba, classes=np.arange(10))
    # Almost every injected copy is grouped with its original, and one of the two is kept.
    dup = {r.index for r in plan.removals if r.reason == "near_duplicate"}
    pairs = [(int(s), len(y) + i) for i, s in enumerate(src)]
    caught = sum((a in dup) != (b in dup) or (a in dup and b in dup) for a, b in pairs)
    assert caught >= 0.9 * n_dup
    assert plan.share >= 0.25
    check = validate_plan(Xa, ya, plan, seed=0)
    assert check.n_train_after < 0.8 * check.n_train_before
    assert check.accuracy_after >= check.accuracy_before - 0.02


def test_validate_plan_refuses_a_plan_for_other_rows() -> None:
    plan = PrunePlan((Removal(0, "confident"),), n_items=5)
    with pytest.raises(UsageError, match="plan's 5 rows"):
        validate_plan(np.zeros((4, 2)), np.zeros(4), plan)


@pytest.mark.parametrize("n", [50, 600])
def test_faiss_and_sklearn_find_the_same_neighbours(n: int) -> None:

    from exemplar.curation.redundancy import _knn

    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[1] = x[0]  # an exact duplicate is still its twin's neighbour
    d_sk, i_sk = _knn(x, 4, backend="sklearn")
    d_fa, i_fa = _knn(x, 4, backend="faiss")
    np.testing.assert_allclose(d_fa, d_sk, atol=1e-4)
    assert (i_fa == i_sk).mean() > 0.99  # ties may order differently
    assert i_fa[0, 0] == 1 and i_fa[1, 0] == 0


def test_unknown_knn_backend_is_refused() -> None:
    from exemplar.curation.redundancy import _knn
    from exemplar.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown k-NN backend"):
        _knn(np.zeros((3, 2)), 1, backend="annoy")
