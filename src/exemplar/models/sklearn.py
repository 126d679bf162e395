"""Adapters for scikit-learn classifiers: a single model, and a committee of them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from exemplar.errors import ModelError, SingleClassError
from exemplar.models.base import DEFAULT_CHUNK_SIZE
from exemplar.models.float32 import Float32Proba, plan_float32
from exemplar.predictions import Predictions

__all__ = ["CommitteeAdapter", "SklearnAdapter", "is_fitted"]

Transform = Callable[[np.ndarray], np.ndarray]
CommitteeProba = Literal["main", "mean"]
_UNPLANNED: Any = object()


def is_fitted(estimator: BaseEstimator) -> bool:
    """Whether ``estimator`` is fitted, by scikit-learn's own test (``check_is_fitted``)."""
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    except TypeError:  # not an estimator at all
        return False
    return True


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
    float32 : bool, default=True
        Compute the probabilities of float32 rows in float32 where the model allows it: a
        linear model, or any model with ``decision_function`` whose ``predict_proba`` is the
        softmax (or sigmoid) of it, also at the end of a pipeline
        (:mod:`exemplar.models.float32`). The plan is checked once against the model's own
        ``predict_proba`` (to 1e-4; in practice about 1e-6) and not used where it differs.
        False always calls ``predict_proba``.

    Notes
    -----
    To wrap an estimator that is already fitted, use :meth:`from_fitted`: it is used as it
    is, with no refit. ``fit`` always retrains a fresh clone.
    """

    def __init__(
        self,
        estimator: BaseEstimator,
        transform: Transform | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        float32: bool = True,
    ) -> None:
        self.estimator = estimator
        self.transform = transform
        self.chunk_size = chunk_size
        self.float32 = float32

    @classmethod
    def from_fitted(
        cls,
        estimator: BaseEstimator,
        *,
        transform: Transform | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        float32: bool = True,
    ) -> SklearnAdapter:
        """Wrap an already fitted classifier (or pipeline) without fitting it again.

        The adapter predicts with ``estimator`` itself; a later :meth:`fit` trains a fresh
        clone, as for any adapter.

        Raises
        ------
        ModelError
            If ``estimator`` is not fitted or has no ``predict_proba``.
        """
        if not is_fitted(estimator):
            raise ModelError(
                f"{type(estimator).__name__} is not fitted; fit it first or use "
                "SklearnAdapter(estimator).fit(X, y)"
            )
        adapter = cls(estimator, transform, chunk_size, float32)
        adapter._set_model(estimator)
        return adapter

    def fit(self, X: np.ndarray, y: np.ndarray) -> SklearnAdapter:
        """Fit a fresh clone of the estimator on ``(X, y)``."""
        y = np.asarray(y)
        _require_two_classes(y)
        model = clone(self.estimator)
        try:
            model.fit(X, y)
        except ValueError as exc:
            raise ModelError(f"{type(model).__name__} could not fit: {exc}") from exc
        self._set_model(model)
        return self

    def predict_proba(self, X: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities ``(n, c)`` as float32, predicted chunk by chunk.

        ``out``, a C-contiguous float32 array of that shape, receives them if given.
        """
        model = self._fitted()
        shape = (X.shape[0], self.classes_.size)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ModelError(f"out must be a float32 array of shape {shape}")
        plan = self._plan(X)
        if plan is not None:
            with _one_blas_thread():
                for start in range(0, X.shape[0], self.chunk_size):
                    stop = start + self.chunk_size
                    plan(X[start:stop], out[start:stop])
            return out
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

    def _set_model(self, model: Any) -> None:
        if not hasattr(model, "predict_proba"):
            raise ModelError(
                f"{type(model).__name__} has no predict_proba; use a probabilistic classifier"
            )
        self.model_ = model
        self.classes_ = np.asarray(model.classes_)
        self._float32_plan = _UNPLANNED

    def _plan(self, X: np.ndarray) -> Float32Proba | None:
        """The float32 plan for float32 rows (made once, on the first rows predicted)."""
        if not self.float32 or X.dtype != np.float32 or X.ndim != 2 or X.shape[0] == 0:
            return None
        plan = getattr(self, "_float32_plan", _UNPLANNED)
        if plan is _UNPLANNED:
            with _one_blas_thread():
                plan = plan_float32(self.model_, np.asarray(X[: self.chunk_size]))
            self._float32_plan = plan
        return plan

    def __getstate__(self) -> dict[str, Any]:
        # The plan holds closures over the model; it is rebuilt after unpickling.
        state = self.__dict__.copy()
        state.pop("_float32_plan", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("float32", True)  # adapters pickled before the option


class CommitteeAdapter:
    """A committee of scikit-learn classifiers that yields stochastic samples ``(t, n, c)``.

    The committee is either a list of (different) estimators, each fitted on all labeled
    data, or ``n_members`` bootstrap replicates of one estimator (query by bagging,
    Abe & Mamitsuka 1998). Member probabilities are aligned to the union of classes by
    label, so a member whose bootstrap sample missed a class predicts 0 for it, and labels
    need not be ``0..k-1``.

    ``proba`` (and ``predict_labels``) come, by default, from ``estimator`` trained on all
    labeled data, so the model being evaluated is the same one random sampling would use;
    the members only supply the disagreement that committee strategies read. Two ways
    avoid paying for that extra fit:

    * pass an already **fitted** ``estimator`` (scikit-learn's convention, tested with
      ``check_is_fitted``): it is the main model as it is and is never refitted; bagged
      members are fresh clones of it;
    * set ``proba="mean"``: no main model at all; ``proba`` is the members' mean (modAL's
      consensus), and labels are its argmax.

    Parameters
    ----------
    estimator : BaseEstimator
        The main model, fitted or not (also the bagging template when ``members`` is None).
    members : sequence of BaseEstimator, optional
        Explicit committee. If None, ``n_members`` bootstrap clones of ``estimator``.
    n_members : int, default=5
        Committee size for bagging.
    random_state : int, optional
        Seed of the bootstrap draws.
    transform, chunk_size, float32
        As in :class:`SklearnAdapter`.
    proba : {"main", "mean"}, default="main"
        Where ``proba`` and labels come from: the main model, or the members' mean. With
        ``"mean"`` embeddings come from the first member (or ``transform``).

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
        float32: bool = True,
        proba: CommitteeProba = "main",
    ) -> None:
        self.estimator = estimator
        self.members = members
        self.n_members = n_members
        self.random_state = random_state
        self.transform = transform
        self.chunk_size = chunk_size
        self.float32 = float32
        self.proba = proba

    def fit(self, X: np.ndarray, y: np.ndarray) -> CommitteeAdapter:
        """Fit every committee member and, unless it is fitted already or unused, the main model."""
        if self.proba not in ("main", "mean"):
            raise ModelError(f"proba must be 'main' or 'mean', got {self.proba!r}")
        y = np.asarray(y)
        _require_two_classes(y)
        rng = np.random.default_rng(self.random_state)
        if self.members is not None:
            templates: list[tuple[BaseEstimator, np.ndarray]] = [
                (m, np.arange(y.size)) for m in self.members
            ]
        else:
            if self.n_members < 2:
                raise ModelError(f"a committee needs at least 2 members, got {self.n_members}")
            templates = [(self.estimator, _bootstrap(y, rng)) for _ in range(self.n_members)]
        main: SklearnAdapter | None = None
        if self.proba == "main":
            if is_fitted(self.estimator):
                main = SklearnAdapter.from_fitted(
                    self.estimator,
                    transform=self.transform,
                    chunk_size=self.chunk_size,
                    float32=self.float32,
                )
                unknown = np.setdiff1d(np.unique(y), main.classes_)
                if unknown.size:
                    raise ModelError(
                        f"the fitted main model knows classes {main.classes_.tolist()}, but the "
                        f"labels also hold {unknown.tolist()}; refit it or pass it unfitted"
                    )
            else:
                main = SklearnAdapter(
                    self.estimator, self.transform, self.chunk_size, self.float32
                ).fit(X, y)
        self.main_ = main
        self.members_ = [
            SklearnAdapter(template, chunk_size=self.chunk_size, float32=self.float32).fit(
                X[rows], y[rows]
            )
            for template, rows in templates
        ]
        self.classes_ = main.classes_ if main is not None else np.unique(y)
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # Committees pickled (in text checkpoints) before these options existed.
        self.__dict__.setdefault("float32", True)
        self.__dict__.setdefault("proba", "main")

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        """Labels from the main model (or from the members' mean with ``proba="mean"``)."""
        if self.main_ is not None:
            return self.main_.predict_labels(X)
        return self.classes_[self.predict(X, samples=False).require_proba().argmax(axis=1)]

    def predict(
        self, X: np.ndarray, *, samples: bool = True, embeddings: bool = False
    ) -> Predictions:
        """Main-model (or mean) probabilities plus, if ``samples``, one ``(n, c)`` slice per member."""
        if not hasattr(self, "members_"):
            raise ModelError("the committee is not fitted yet; call fit() first")
        main = self.main_
        stacked = None
        if samples or main is None:
            stacked = np.zeros((len(self.members_), X.shape[0], self.classes_.size), np.float32)
            for t, member in enumerate(self.members_):
                cols = np.searchsorted(self.classes_, member.classes_)
                if cols.size == self.classes_.size:
                    member.predict_proba(X, out=stacked[t])  # same classes: in place
                else:
                    stacked[t][:, cols] = member.predict_proba(X)
        if main is not None:
            proba = main.predict_proba(X)
        else:
            assert stacked is not None
            proba = stacked.mean(axis=0, dtype=np.float32)
        emb = None
        if embeddings and main is not None:
            emb = main.embed(X)
        elif embeddings and self.transform is not None:
            emb = _chunked(self.transform, X, self.chunk_size)
        elif embeddings:
            emb = self.members_[0].embed(X)
        return Predictions(
            proba=proba,
            samples=stacked if samples else None,
            embeddings=emb,
            classes=self.classes_,
        )


_BLAS_LOCK = threading.Lock()
_BLAS: list[Any] = []


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run float32 chunk products on one BLAS thread.

    A ``(chunk, d) @ (d, c)`` product with few classes is memory-bound: BLAS threads add
    only synchronisation, and on a loaded machine their spin-waits made it 10-20 times
    slower than one thread (measured: 2 ms against 27-43 ms for 65,536 x 64 x 10).
    """
    with _BLAS_LOCK:
        if not _BLAS:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController())
    limiter = _BLAS[0].limit(limits=1, user_api="blas")
    try:
        yield
    finally:
        limiter.restore_original_limits()


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
