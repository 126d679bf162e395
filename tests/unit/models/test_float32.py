"""Float32 probabilities (models/float32.py): same values and same picks as float64."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.extmath import softmax

from exemplar.models import CommitteeAdapter, SklearnAdapter, make_model
from exemplar.models.float32 import plan_float32, row_max
from exemplar.predictions import Predictions
from exemplar.strategies import get_strategy
from exemplar.strategies.base import top_k

K = 50


class Tempered(LogisticRegression):
    """Probabilities softened by a temperature of 2: not the softmax of the decision."""

    def predict_proba(self, X: Any) -> np.ndarray:
        return softmax(self.decision_function(X) / 2.0)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic pool: 20,000 rows, 64 features, 10 overlapping classes."""
    X, y = make_classification(
        20_000, 64, n_informative=20, n_classes=10, class_sep=0.7, random_state=0
    )
    return X, y


def _fit(X: np.ndarray, y: np.ndarray, pipeline: bool, binary: bool = False) -> object:
    model = LogisticRegression(max_iter=2000)
    est = make_pipeline(StandardScaler(), model) if pipeline else model
    if binary:
        y = (y % 2).astype(int)
    return est.fit(X[:400], y[:400])


@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("data", ["digits", "synthetic"])
def test_probabilities_match_predict_proba(data, pipeline, binary, request) -> None:
    X, y = request.getfixturevalue(data)
    est = _fit(X, y, pipeline, binary)
    adapter = SklearnAdapter.from_fitted(est, chunk_size=4096)
    got = adapter.predict_proba(X.astype(np.float32))
    assert adapter._float32_plan is not None  # the float32 path was taken
    reference = est.predict_proba(X)  # float64 rows, float64 model
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["least_confidence", "margin", "entropy"])
@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("data", ["digits", "synthetic"])
def test_top_k_picks_equal_float64_except_at_float32_ties(name, pipeline, data, request) -> None:
    X, y = request.getfixturevalue(data)
    est = _fit(X, y, pipeline)
    strategy = get_strategy(name)
    p64 = est.predict_proba(X)
    p32 = SklearnAdapter.from_fitted(est, chunk_size=4096).predict_proba(X.astype(np.float32))
    u64 = np.asarray(strategy.utility(Predictions(proba=p64)), dtype=np.float64)
    u32 = np.asarray(strategy.utility(Predictions(proba=p32)), dtype=np.float64)
    picks64, picks32 = top_k(u64, K), top_k(u32, K)
    kth = u64[picks64[-1]]
    differ = np.setxor1d(picks64, picks32)
    # A pick may differ only where its float64 score is within float32 noise of the k-th.
    assert np.all(np.abs(u64[differ] - kth) <= 1e-5), (name, differ, u64[differ] - kth)
    assert differ.size <= 4


def test_binary_decision_is_one_column_and_sigmoid(digits) -> None:
    X, y = digits
    est = LogisticRegression(max_iter=2000).fit(X, (y > 4).astype(int))
    assert est.decision_function(X[:3]).ndim == 1
    plan = plan_float32(est, X[:256].astype(np.float32))
    assert plan is not None and plan.link == "sigmoid"
    out = plan(X.astype(np.float32), np.empty((X.shape[0], 2), np.float32))
    np.testing.assert_allclose(out, est.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)


def test_other_decision_function_models_are_checked_before_use(digits) -> None:
    X, y = digits
    X32 = X.astype(np.float32)
    lda = LinearDiscriminantAnalysis().fit(X, y)  # predict_proba is softmax(decision_function)
    plan = plan_float32(lda, X32)
    assert plan is not None and plan.link == "softmax"
    # One-vs-rest SGD normalises sigmoids; the check picks that link.
    sgd = make_pipeline(
        StandardScaler(), SGDClassifier(loss="log_loss", random_state=0, max_iter=50, tol=None)
    ).fit(X, y)
    plan = plan_float32(sgd, X32)
    assert plan is not None and plan.link == "ovr"
    np.testing.assert_allclose(
        SklearnAdapter.from_fitted(sgd).predict_proba(X32), sgd.predict_proba(X), atol=1e-5
    )
    # Unscaled, its decision values reach thousands: every float32 sigmoid of a row
    # underflows to 0 where float64 still normalises. The check refuses that plan.
    wild = SGDClassifier(loss="log_loss", random_state=0, max_iter=50, tol=None).fit(X, y)
    assert np.abs(wild.decision_function(X)).max() > 500
    assert plan_float32(wild, X32) is None
    # Probabilities that are no link of the decision values (here tempered): no plan,
    # even for a LogisticRegression subclass, and the adapter keeps predict_proba.
    tempered = Tempered(max_iter=2000).fit(X, y)
    assert plan_float32(tempered, X32) is None
    adapter = SklearnAdapter.from_fitted(tempered)
    np.testing.assert_allclose(adapter.predict_proba(X32), tempered.predict_proba(X32), atol=1e-6)
    assert plan_float32(GaussianNB().fit(X, y), X32) is None  # no decision_function


def test_float64_rows_and_the_opt_out_use_predict_proba_exactly(digits) -> None:
    X, y = digits
    est = _fit(X, y, pipeline=True)
    exact = est.predict_proba(X).astype(np.float32)
    np.testing.assert_array_equal(SklearnAdapter.from_fitted(est).predict_proba(X), exact)
    off = SklearnAdapter.from_fitted(est, float32=False)
    np.testing.assert_array_equal(
        off.predict_proba(X.astype(np.float32)),
        est.predict_proba(X.astype(np.float32)).astype(np.float32),
    )


def test_no_float64_copy_of_the_pool(synthetic) -> None:
    X, y = synthetic
    est = LogisticRegression(max_iter=2000).fit(X[:400], y[:400])  # float64 coefficients
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    adapter = SklearnAdapter.from_fitted(est, chunk_size=X32.shape[0])
    adapter.predict_proba(X32[:10])  # make the plan
    tracemalloc.start()
    try:
        adapter.predict_proba(X32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Output (n x 10 float32) plus row temporaries; a float64 copy would be 2 x X32.nbytes.
    assert peak < X32.nbytes, (peak, X32.nbytes)


def test_committee_members_and_recipes_take_the_float32_path(digits) -> None:
    X, y = digits
    X32 = X.astype(np.float32)
    com = CommitteeAdapter(LogisticRegression(max_iter=2000), n_members=3, random_state=0)
    com.fit(X32[:400], y[:400])
    pred = com.predict(X32)
    assert all(m._float32_plan is not None for m in com.members_)
    for member, sample in zip(com.members_, pred.samples, strict=True):  # type: ignore[arg-type]
        np.testing.assert_allclose(sample, member.model_.predict_proba(X), atol=1e-5)
    model = make_model("logreg").fit(X32[:400], y[:400])
    np.testing.assert_allclose(model.predict(X32).proba, model.model_.predict_proba(X), atol=1e-5)


def test_adapters_with_a_plan_still_pickle(digits) -> None:
    import pickle

    X, y = digits
    adapter = SklearnAdapter.from_fitted(_fit(X, y, pipeline=True))
    before = adapter.predict_proba(X.astype(np.float32))
    again = pickle.loads(pickle.dumps(adapter))
    np.testing.assert_array_equal(again.predict_proba(X.astype(np.float32)), before)


@pytest.mark.parametrize("c", [1, 10, 64, 100])
def test_row_max_equals_numpy(c: int) -> None:
    a = np.random.default_rng(0).standard_normal((1000, c)).astype(np.float32)
    np.testing.assert_array_equal(row_max(a), a.max(axis=1))
