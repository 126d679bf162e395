"""Adapters for scikit-learn classifiers: a single model, and a committee of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline

from exemplar.errors import ModelError, SingleClassError
from exemplar.models.base import DEFAULT_CHUNK_SIZE
from exemplar.predictions import Predictions

__all__ = ["CommitteeAdapter", "SklearnAdapter"]

Transform = Callable[[np.ndarray], np.ndarray]


class SklearnAdapter:
    """Wrap any scikit-learn classifier that has ``predict_proba``.

    Parameters
    ----------
    estimator : BaseEstimator
        An unfitted classifier (or pipeline ending in one). It is cloned on every ``fit``,
        so each cycle retrains from scratch.
    transform : callable, optional
        Maps feature rows to embeddings. By default, for a :class:`~sklearn.pipeline.Pipeline`
        the embedding is the input of its final estimator (every step but the last applied);
        for a bare estimator it is the input features themselves (a view, not a copy).
    chunk_size : int, default=65536
        Rows predicted at once; bounds peak memory for any pool size.
    """

    def __init__(
        self,
        estimator: BaseEstimator,
        transform: Transform | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.estimator = estimator
        self.transform = transform
        self.chunk_size = chunk_size

    def fit(self, X: np.ndarray, y: np.ndarray) -> SklearnAdapter:
        """Fit a fresh clone of the estimator on ``(X, y)``."""
        y = np.asarray(y)
        _require_two_classes(y)
        model = clone(self.estimator)
        try:
            model.fit(X, y)
        except ValueError as exc:
            raise ModelError(f"{type(model).__name__} could not fit: {exc}") from exc
        if not hasattr(model, "predict_proba"):
            raise ModelError(
                f"{type(model).__name__} has no predict_proba; use a probabilistic classifier"
            )
        self.model_ = model
        self.classes_ = np.asarray(model.classes_)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, c)`` as float32, predicted chunk by chunk."""
        model = self._fitted()
        out = np.empty((X.shape[0], self.classes_.size), dtype=np.float32)
        for start in range(0, X.shape[0], self.chunk_size):
            stop = start + self.chunk_size
            out[start:stop] = model.predict_proba(X[start:stop])
        return out

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        """Most likely class label of each row."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def embed(self, X: np.ndarray) -> np.ndarray:
        """Embeddings ``(n, d)``: the user transform, the pipeline's features, or ``X`` itself."""
        if self.transform is not None:
            return _chunked(self.transform, X, self.chunk_size)
        model = self._fitted()
        if isinstance(model, Pipeline) and len(model.steps) > 1:
            head = model[:-1]
            return _chunked(head.transform, X, self.chunk_size)
        return X

    def predict(
        self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False
    ) -> Predictions:
        """Predictions for every row of ``X``.

        Raises
        ------
        ModelError
            If ``samples`` is requested: a single model has no stochastic samples
            (use :class:`CommitteeAdapter`).
        """
        if samples:
            raise ModelError(
                "a single scikit-learn model gives no stochastic samples; "
                "wrap it in CommitteeAdapter for committee strategies"
            )
        return Predictions(
            proba=self.predict_proba(X),
            embeddings=self.embed(X) if embeddings else None,
            classes=self.classes_,
        )

    def _fitted(self) -> Any:
        if not hasattr(self, "model_"):
            raise ModelError("the model is not fitted yet; call fit() first")
        return self.model_


class CommitteeAdapter:
    """A committee of scikit-learn classifiers that yields stochastic samples ``(t, n, c)``.

    The committee is either a list of (different) estimators, each fitted on all labeled
    data, or ``n_members`` bootstrap replicates of one estimator (query by bagging,
    Abe & Mamitsuka 1998). Member probabilities are aligned to the union of classes by
    label, so a member whose bootstrap sample missed a class predicts 0 for it, and labels
    need not be ``0..k-1``.

    ``proba`` (and ``predict_labels``) come from ``estimator`` fitted on all labeled data, so
    the model being evaluated is the same one random sampling would use; the members
    only supply the disagreement that committee strategies read.

    Parameters
    ----------
    estimator : BaseEstimator
        The main model (also the bagging template when ``members`` is None).
    members : sequence of BaseEstimator, optional
        Explicit committee. If None, ``n_members`` bootstrap clones of ``estimator``.
    n_members : int, default=5
        Committee size for bagging.
    random_state : int, optional
        Seed of the bootstrap draws.
    transform, chunk_size
        As in :class:`SklearnAdapter`.

    References
    ----------
    Seung, H. S., Opper, M., & Sompolinsky, H. (1992). Query by committee. COLT.
    Abe, N., & Mamitsuka, H. (1998). Query learning strategies using boosting and bagging.
    ICML.
    """

    def __init__(
        self,
        estimator: BaseEstimator,
        members: Sequence[BaseEstimator] | None = None,
        n_members: int = 5,
        random_state: int | None = None,
        transform: Transform | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.estimator = estimator
        self.members = members
        self.n_members = n_members
        self.random_state = random_state
        self.transform = transform
        self.chunk_size = chunk_size

    def fit(self, X: np.ndarray, y: np.ndarray) -> CommitteeAdapter:
        """Fit the main model on all data and every committee member."""
        y = np.asarray(y)
        self.main_ = SklearnAdapter(self.estimator, self.transform, self.chunk_size).fit(X, y)
        self.classes_ = self.main_.classes_
        rng = np.random.default_rng(self.random_state)
        fitted: list[SklearnAdapter] = []
        if self.members is not None:
            templates: list[tuple[BaseEstimator, np.ndarray]] = [
                (m, np.arange(y.size)) for m in self.members
            ]
        else:
            if self.n_members < 2:
                raise ModelError(f"a committee needs at least 2 members, got {self.n_members}")
            templates = [(self.estimator, _bootstrap(y, rng)) for _ in range(self.n_members)]
        for template, rows in templates:
            fitted.append(
                SklearnAdapter(template, chunk_size=self.chunk_size).fit(X[rows], y[rows])
            )
        self.members_ = fitted
        return self

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        """Labels from the main model."""
        return self.main_.predict_labels(X)

    def predict(
        self, X: np.ndarray, *, samples: bool = True, embeddings: bool = False
    ) -> Predictions:
        """Main-model probabilities plus, if ``samples``, one ``(n, c)`` slice per member."""
        stacked = None
        if samples:
            stacked = np.zeros((len(self.members_), X.shape[0], self.classes_.size), np.float32)
            for t, member in enumerate(self.members_):
                cols = np.searchsorted(self.classes_, member.classes_)
                stacked[t][:, cols] = member.predict_proba(X)
        return Predictions(
            proba=self.main_.predict_proba(X),
            samples=stacked,
            embeddings=self.main_.embed(X) if embeddings else None,
            classes=self.classes_,
        )


def _require_two_classes(y: np.ndarray) -> None:
    classes = np.unique(y)
    if classes.size < 2:
        found = "no labels" if classes.size == 0 else f"only class {classes[0].item()!r}"
        raise SingleClassError(
            f"cannot train a classifier on {found}: the labeled set needs at least two classes"
        )


def _bootstrap(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap rows that keep at least two classes (resampled a few times if unlucky)."""
    for _ in range(20):
        rows = rng.integers(0, y.size, y.size)
        if np.unique(y[rows]).size >= 2:
            return rows
    return np.arange(y.size)


def _chunked(fn: Transform, X: np.ndarray, chunk_size: int) -> np.ndarray:
    if X.shape[0] <= chunk_size:
        return np.asarray(fn(X))
    first = np.asarray(fn(X[:chunk_size]))
    out = np.empty((X.shape[0], *first.shape[1:]), dtype=first.dtype)
    out[:chunk_size] = first
    for start in range(chunk_size, X.shape[0], chunk_size):
        out[start : start + chunk_size] = fn(X[start : start + chunk_size])
    return out
