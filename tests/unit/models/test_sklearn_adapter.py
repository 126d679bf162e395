"""The scikit-learn and committee adapters."""

from __future__ import annotations

from typing import Any

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


class CountingGNB(GaussianNB):
    """A Gaussian naive Bayes that counts the fits of all its instances."""

    fits = 0

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> CountingGNB:
        type(self).fits += 1
        return super().fit(X, y, sample_weight)


def test_from_fitted_wraps_without_refit_and_predicts_like_the_estimator() -> None:
    CountingGNB.fits = 0
    est = CountingGNB().fit(X, Y)
    adapter = SklearnAdapter.from_fitted(est, chunk_size=7)
    assert CountingGNB.fits == 1
    assert adapter.model_ is est
    np.testing.assert_allclose(adapter.predict_proba(X), est.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(adapter.predict_labels(X), est.predict(X))
    adapter.fit(X[Y < 2], Y[Y < 2])  # fit retrains a fresh clone, the given one is untouched
    assert adapter.model_ is not est and est.classes_.tolist() == [0, 1, 2]


def test_from_fitted_refuses_an_unfitted_estimator_or_one_without_proba() -> None:
    with pytest.raises(ModelError, match="not fitted"):
        SklearnAdapter.from_fitted(GaussianNB())
    with pytest.raises(ModelError, match="predict_proba"):
        SklearnAdapter.from_fitted(LinearSVC().fit(X, Y))


def test_committee_uses_a_fitted_main_model_without_refitting_it() -> None:
    CountingGNB.fits = 0
    main = CountingGNB().fit(X, Y)
    com = CommitteeAdapter(main, n_members=4, random_state=0).fit(X, Y)
    assert CountingGNB.fits == 1 + 4  # the members only
    assert com.main_ is not None and com.main_.model_ is main
    pred = com.predict(X)
    np.testing.assert_allclose(pred.proba, main.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(com.predict_labels(X), main.predict(X))
    assert pred.samples is not None and pred.samples.shape == (4, 150, 3)


def test_committee_with_an_unfitted_estimator_still_fits_the_main_model() -> None:
    CountingGNB.fits = 0
    CommitteeAdapter(CountingGNB(), n_members=3, random_state=0).fit(X, Y)
    assert CountingGNB.fits == 1 + 3


def test_fitted_main_model_must_know_every_labeled_class() -> None:
    main = GaussianNB().fit(X[Y < 2], Y[Y < 2])
    with pytest.raises(ModelError, match=r"knows classes \[0, 1\].*also hold \[2\]"):
        CommitteeAdapter(main, n_members=2).fit(X, Y)


def test_committee_mean_option_fits_no_main_model_and_averages_members() -> None:
    CountingGNB.fits = 0
    rows = np.r_[np.arange(0, 20), np.arange(50, 67), np.arange(100, 103)]
    com = CommitteeAdapter(CountingGNB(), n_members=6, random_state=1, proba="mean")
    com.fit(X[rows], NAMES[rows])
    assert CountingGNB.fits == 6 and com.main_ is None
    pred = com.predict(X)
    assert pred.samples is not None
    np.testing.assert_allclose(pred.proba, pred.samples.mean(axis=0), atol=1e-6)
    # Members that missed 'virginica' predict 0 for it; the mean is over all six.
    manual = np.zeros((150, 3))
    for member in com.members_:
        manual[:, np.searchsorted(com.classes_, member.classes_)] += member.predict_proba(X)
    np.testing.assert_allclose(pred.proba, manual / 6, atol=1e-6)
    np.testing.assert_array_equal(com.predict_labels(X), com.classes_[pred.proba.argmax(axis=1)])
    no_samples = com.predict(X, samples=False)
    assert no_samples.samples is None
    np.testing.assert_allclose(no_samples.proba, pred.proba)


def test_committee_bad_proba_option_and_unfitted_predict() -> None:
    with pytest.raises(ModelError, match="'main' or 'mean'"):
        CommitteeAdapter(GaussianNB(), proba="median").fit(X, Y)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="not fitted"):
        CommitteeAdapter(GaussianNB()).predict(X)


def test_adapters_pickled_before_the_new_options_still_load_and_predict() -> None:
    import pickle

    com = CommitteeAdapter(GaussianNB(), n_members=2, random_state=0).fit(X, Y)
    for adapter in (com, *com.members_, com.main_):
        for name in ("float32", "proba"):
            adapter.__dict__.pop(name, None)  # as the previous version pickled them
    again = pickle.loads(pickle.dumps(com))
    assert again.float32 is True and again.proba == "main"
    assert again.main_.float32 is True
    np.testing.assert_allclose(again.predict(X).proba, com.main_.model_.predict_proba(X), atol=1e-6)
    again.fit(X, Y)
