"""The scikit-learn and committee adapters."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from exemplar.errors import ModelError, SingleClassError
from exemplar.models import CommitteeAdapter, SklearnAdapter, make_estimator

X, Y = load_iris(return_X_y=True)
NAMES = np.array(["setosa", "versicolor", "virginica"])[Y]


def test_probabilities_are_chunked_but_identical() -> None:
    whole = SklearnAdapter(make_estimator("logreg")).fit(X, Y)
    chunked = SklearnAdapter(make_estimator("logreg"), chunk_size=7).fit(X, Y)
    np.testing.assert_allclose(whole.predict_proba(X), chunked.predict_proba(X), atol=1e-6)
    p = chunked.predict(X).proba
    assert p is not None and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_pipeline_embeddings_are_the_final_estimators_input() -> None:
    model = SklearnAdapter(make_estimator("logreg")).fit(X, Y)
    emb = model.predict(X, embeddings=True).embeddings
    assert emb is not None and emb.shape == X.shape
    np.testing.assert_allclose(emb.mean(axis=0), 0.0, atol=1e-6)  # standardized


def test_bare_estimator_embeddings_are_a_view_of_the_input() -> None:
    model = SklearnAdapter(GaussianNB()).fit(X, Y)
    assert model.predict(X, embeddings=True).embeddings is X


def test_user_transform_embeddings() -> None:
    model = SklearnAdapter(GaussianNB(), transform=lambda a: a[:, :2] * 2).fit(X, Y)
    emb = model.predict(X, embeddings=True).embeddings
    np.testing.assert_allclose(emb, X[:, :2] * 2)


def test_fit_retrains_from_scratch() -> None:
    adapter = SklearnAdapter(LogisticRegression(max_iter=500))
    adapter.fit(X[Y < 2], Y[Y < 2])
    assert adapter.classes_.tolist() == [0, 1]
    adapter.fit(X, Y)
    assert adapter.classes_.tolist() == [0, 1, 2]


def test_single_class_raises_clear_error() -> None:
    with pytest.raises(SingleClassError, match="only class 0"):
        SklearnAdapter(make_estimator("logreg")).fit(X[:10], Y[:10])


def test_model_without_predict_proba_is_rejected() -> None:
    with pytest.raises(ModelError, match="predict_proba"):
        SklearnAdapter(LinearSVC()).fit(X, Y)


def test_unfitted_and_no_samples_errors() -> None:
    with pytest.raises(ModelError, match="not fitted"):
        SklearnAdapter(GaussianNB()).predict(X)
    with pytest.raises(ModelError, match="CommitteeAdapter"):
        SklearnAdapter(GaussianNB()).fit(X, Y).predict(X, samples=True)


def test_committee_samples_shape_and_members_differ() -> None:
    com = CommitteeAdapter(DecisionTreeClassifier(random_state=0), n_members=4, random_state=0).fit(
        X, Y
    )
    pred = com.predict(X)
    assert pred.samples is not None and pred.samples.shape == (4, 150, 3)
    assert not np.allclose(pred.samples[0], pred.samples[1])
    np.testing.assert_allclose(pred.samples.sum(axis=2), 1.0, atol=1e-5)


def test_committee_with_string_labels_and_missing_class_in_a_member() -> None:
    # 3 'virginica' among 40: some bootstrap members miss it; columns must still align by label.
    rows = np.r_[np.arange(0, 20), np.arange(50, 67), np.arange(100, 103)]
    com = CommitteeAdapter(GaussianNB(), n_members=8, random_state=1).fit(X[rows], NAMES[rows])
    assert com.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    samples = com.predict(X).samples
    assert samples is not None
    setosa_rows = samples[:, :50, 0]
    assert (setosa_rows > 0.9).mean() > 0.95  # column 0 is setosa for every member


def test_committee_of_different_estimators() -> None:
    com = CommitteeAdapter(
        make_estimator("logreg"), members=[GaussianNB(), DecisionTreeClassifier()]
    ).fit(X, Y)
    assert com.predict(X).samples.shape == (2, 150, 3)  # type: ignore[union-attr]
    assert com.predict_labels(X[:1]).tolist() == [0]
