"""Class probabilities in float32: one matrix product and one fused softmax per chunk.

scikit-learn computes ``predict_proba`` in float64: a float32 pool is converted chunk by
chunk, multiplied in double precision and normalised with several temporaries. For a
linear classifier (or any estimator with ``decision_function``, also at the end of a
:class:`~sklearn.pipeline.Pipeline`) the same probabilities are a softmax (or a sigmoid) of
the decision values, and those can be computed in float32 directly: the preceding
transforms on the float32 chunk (a :class:`~sklearn.preprocessing.StandardScaler` as one
subtract and one multiply), then ``X @ W + b`` with float32 BLAS, then the link written in
place into the output rows. No float64 copy of the pool or of a chunk is made.

A plan is only used after it has reproduced the estimator's own ``predict_proba`` on the
first rows it sees (to :data:`TOLERANCE`); an estimator whose probabilities are not a
link of its decision values (Platt-scaled SVMs, calibrated models) keeps ``predict_proba``.
Float32 changes probabilities by about 1e-6, so a top-k selection can differ from the
float64 one only among items whose float64 scores lie within that distance of the k-th.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse
from scipy.special import expit
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

try:  # not public API: without it, linear models use their own decision_function
    from sklearn.linear_model._base import LinearClassifierMixin
except ImportError:  # pragma: no cover - depends on the scikit-learn version
    LinearClassifierMixin = None

__all__ = ["TOLERANCE", "Float32Proba", "plan_float32", "row_max"]

#: Largest absolute difference to ``predict_proba`` a plan may show on its check rows.
TOLERANCE = 1e-4
#: Rows of the first chunk compared with ``predict_proba`` before a plan is used.
CHECK_ROWS = 256

Link = Literal["softmax", "sigmoid", "ovr"]
Step = Callable[[np.ndarray], np.ndarray]
#: Decision values of rows: written into the ``(m, c)`` output, or returned 1-d (binary).
Decision = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Float32Proba:
    """Float32 probabilities of one fitted estimator: transform steps, decision, link.

    Build it with :func:`plan_float32`; call it with a chunk and the output rows to fill.
    """

    steps: tuple[Step, ...]
    decision: Decision
    link: Link
    n_classes: int

    def __call__(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write the ``(m, c)`` probabilities of the rows ``X`` into ``out`` (float32)."""
        Z = X
        for step in self.steps:
            Z = step(Z)
        d = self.decision(Z, out)
        if self.link == "sigmoid":
            p = expit(d.reshape(-1))
            out[:, 1] = p
            np.subtract(np.float32(1.0), p, out=out[:, 0])
            return out
        if d is not out:
            out[...] = d
        if self.link == "softmax":
            out -= row_max(out)[:, None]
            np.exp(out, out=out)
        else:  # one-vs-rest sigmoids normalised per row (liblinear's convention)
            expit(out, out=out)
        # Row sums as a matrix-vector product: one BLAS pass, not a strided reduction.
        total = np.matmul(out, np.ones(self.n_classes, dtype=np.float32))
        if self.link == "ovr":
            zero = total == 0
            if zero.any():
                out[zero] = 1.0
                total[zero] = self.n_classes
        np.reciprocal(total, out=total)
        out *= total[:, None]
        return out


def row_max(a: np.ndarray) -> np.ndarray:
    """Largest value of each row of a 2-d array.

    With few columns, ``np.maximum`` over the columns is 3-7 times faster than
    ``a.max(axis=1)``, whose reduction runs once per short row.
    """
    if a.shape[1] > 64 or a.shape[1] == 0:
        return np.asarray(a.max(axis=1))
    out = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        np.maximum(out, a[:, j], out=out)
    return out


def plan_float32(model: Any, probe: np.ndarray) -> Float32Proba | None:
    """A float32 plan for a fitted estimator, or None where none reproduces its probabilities.

    Parameters
    ----------
    model : estimator
        A fitted classifier with ``predict_proba`` (or a pipeline ending in one).
    probe : ndarray of shape (m, d), float32
        Rows to compare the plan against ``model.predict_proba`` on (up to
        :data:`CHECK_ROWS` are used).
    """
    steps: list[Step] = []
    final = model
    if isinstance(model, Pipeline):
        for _, step in model.steps[:-1]:
            if step is None or step == "passthrough":
                continue
            steps.append(_transform_step(step))
        final = model.steps[-1][1]
    if not hasattr(final, "decision_function") or not hasattr(final, "classes_"):
        return None
    n_classes = int(np.asarray(final.classes_).size)
    if n_classes < 2:
        return None
    decision = _decision(final)
    probe = probe[:CHECK_ROWS]
    if probe.shape[0] == 0:
        return None
    try:
        reference = np.asarray(model.predict_proba(probe), dtype=np.float64)
        Z = probe
        for step in steps:
            Z = step(Z)
        d = decision(Z, np.empty((probe.shape[0], n_classes), dtype=np.float32))
    except (ValueError, TypeError, AttributeError):
        return None
    if reference.shape != (probe.shape[0], n_classes):
        return None
    links: tuple[Link, ...] = ("sigmoid",) if d.ndim == 1 or d.shape[1] == 1 else ()
    if d.ndim == 2 and d.shape[1] == n_classes:
        links = ("softmax", "ovr")
    if isinstance(final, LogisticRegression | LogisticRegressionCV):
        links = ("sigmoid",) if n_classes == 2 else ("softmax",)  # sklearn >= 1.8
    for link in links:
        plan = Float32Proba(tuple(steps), decision, link, n_classes)
        got = plan(probe, np.empty((probe.shape[0], n_classes), dtype=np.float32))
        if np.all(np.isfinite(got)) and np.max(np.abs(got - reference)) <= TOLERANCE:
            return plan
    return None


def _decision(final: Any) -> Decision:
    """Decision values in float32: ``X @ W + b`` for a dense linear model, else its own."""
    coef = getattr(final, "coef_", None)
    intercept = getattr(final, "intercept_", None)
    if (
        LinearClassifierMixin is not None
        and isinstance(final, LinearClassifierMixin)
        and isinstance(coef, np.ndarray)
        and coef.ndim == 2
        and intercept is not None
    ):
        W = np.ascontiguousarray(coef.T, dtype=np.float32)
        b = np.asarray(intercept, dtype=np.float32).reshape(-1)
        if b.size == 1 and W.shape[1] > 1:
            b = np.repeat(b, W.shape[1])

        def linear(X: np.ndarray, out: np.ndarray) -> np.ndarray:
            if W.shape[1] == 1:  # binary: one column of decision values
                d = np.matmul(_dense32(X), W)[:, 0]
                d += b
                return d
            np.matmul(_dense32(X), W, out=out)
            out += b
            return out

        return linear

    def own(X: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.asarray(final.decision_function(X), dtype=np.float32)

    return own


def _transform_step(step: Any) -> Step:
    """One pipeline step applied to a float32 chunk, keeping float32."""
    if isinstance(step, StandardScaler):
        mean = None if step.mean_ is None else np.asarray(step.mean_, dtype=np.float32)
        inv = None if step.scale_ is None else (1.0 / step.scale_).astype(np.float32)

        def scale(X: np.ndarray) -> np.ndarray:
            X = _dense32(X)
            out = np.subtract(X, mean, dtype=np.float32) if mean is not None else X.copy()
            if inv is not None:
                out *= inv
            return out

        return scale

    def transform(X: np.ndarray) -> np.ndarray:
        return _dense32(step.transform(X))

    return transform


def _dense32(X: Any) -> np.ndarray:
    if sparse.issparse(X):
        raise TypeError("sparse rows have no float32 plan")
    return np.asarray(X, dtype=np.float32)
