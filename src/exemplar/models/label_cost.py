"""A learned model of labeling time: expected seconds per item from the recorded times.

Settles, Craven & Friedland (2008) measured real annotation costs and found that they vary
widely between items, that they can be predicted from the items and from the model's own
state, and that selection by utility per unit of *predicted* cost (return on investment)
saves annotation time when the cost model is good. :class:`LabelCostModel` is that cost
model: a ridge regression of log-seconds on the item's features and on what the current
model says about the item (its top probability, margin, entropy and predicted class),
checked by cross-validation against the plainest model, the median time. When it does not
beat the median (or there are too few timed labels), it predicts the median for every item,
so cost-aware selection then ranks by utility alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from exemplar.errors import ConfigError

__all__ = ["CostSummary", "LabelCostModel", "uncertainty_features"]

#: Longest time a label may record (24 h), as the API accepts it.
MAX_SECONDS = 86_400.0
#: Relative cut in cross-validated error the regression must make to replace the median
#: (a heavily penalized ridge is the mean of log-seconds, which may beat the median by a
#: hair on pure noise).
MIN_GAIN = 0.05


def uncertainty_features(proba: np.ndarray) -> np.ndarray:
    """What the model says about each item: top probability, margin, entropy, one-hot class.

    Settles et al. (2008) found annotation time related to how unsure the model is; these
    columns let the cost model learn that (shape ``(n, 3 + c)``).
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ConfigError(f"proba must have shape (n, c), got {p.shape}")
    top = np.sort(p, axis=1)[:, ::-1]
    second = top[:, 1] if p.shape[1] > 1 else np.zeros(p.shape[0])
    entropy = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1)
    onehot = np.eye(p.shape[1])[p.argmax(axis=1)]
    return np.column_stack([top[:, 0], top[:, 0] - second, entropy, onehot])


@dataclass
class CostSummary:
    """What a fitted :class:`LabelCostModel` learned (shown by ``exemplar costs``).

    Attributes
    ----------
    n_timed : int
        Labels with a recorded time the model was fitted on.
    median_seconds, mean_seconds : float
        Median and mean recorded time (NaN with no timed label).
    kind : str
        ``"regression"`` when the learned model is used, ``"median"`` otherwise.
    reason : str
        Why that kind (too few labels, or the cross-validated errors).
    cv_error_model, cv_error_median : float or None
        Cross-validated mean absolute error of log-seconds of the regression and of the
        median (None when not measured).
    per_class : dict
        Class → (labels, median seconds) of the recorded times.
    """

    n_timed: int
    median_seconds: float
    mean_seconds: float
    kind: str
    reason: str
    cv_error_model: float | None = None
    cv_error_median: float | None = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LabelCostModel:
    """Expected labeling seconds of an item, learned from recorded times.

    Parameters
    ----------
    min_labels : int, default=20
        Timed labels needed before a regression is tried; with fewer, the median is used.
    n_splits : int, default=5
        Folds of the cross-validation that decides between the regression and the median.
    random_state : int, default=0
        Seed of the fold split.

    Notes
    -----
    The regression is a ridge regression (penalty chosen by leave-one-out, scikit-learn's
    ``RidgeCV``) of ``log(seconds)`` on standardized columns: the item's features and
    :func:`uncertainty_features` of the model's probabilities. It predicts
    ``exp(E[log seconds])``, clipped to the range of the recorded times, so one outlier
    (a coffee break) cannot dominate. It is kept only if its cross-validated error of
    log-seconds is at least ``MIN_GAIN`` (5%) below the median's.

    References
    ----------
    Settles, B., Craven, M., & Friedland, L. (2008). Active learning with real annotation
    costs. NIPS Workshop on Cost-Sensitive Learning.
    """

    def __init__(self, min_labels: int = 20, n_splits: int = 5, random_state: int = 0) -> None:
        self.min_labels = min_labels
        self.n_splits = n_splits
        self.random_state = random_state

    def fit(
        self,
        X: np.ndarray | None,
        seconds: np.ndarray,
        *,
        proba: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> LabelCostModel:
        """Fit on the timed labels: features ``X`` (n, d) and/or ``proba`` (n, c), times.

        ``labels`` (the classes given) only feed the per-class summary.
        """
        if self.min_labels < 2:
            raise ConfigError(f"min_labels must be at least 2, got {self.min_labels}")
        y = np.asarray(seconds, dtype=np.float64).ravel()
        if y.size and (not np.isfinite(y).all() or (y <= 0).any() or (y > MAX_SECONDS).any()):
            raise ConfigError("recorded seconds must be finite, over 0 and at most 24 h")
        design = self._design(X, proba, y.size)
        self.n_features_in_ = 0 if design is None else design.shape[1]
        self.median_ = float(np.median(y)) if y.size else float("nan")
        self.low_, self.high_ = (float(y.min()), float(y.max())) if y.size else (0.0, 0.0)
        self.pipeline_: Pipeline | None = None
        cv_model = cv_median = None
        if y.size < self.min_labels:
            kind, reason = "median", f"{y.size} timed labels, fewer than {self.min_labels}"
        elif design is None or design.shape[1] == 0:
            kind, reason = "median", "no item features or predictions to learn from"
        else:
            logy = np.log(y)
            folds = KFold(min(self.n_splits, y.size), shuffle=True, random_state=self.random_state)
            predicted = cross_val_predict(self._pipeline(), design, logy, cv=folds)
            cv_model = float(np.mean(np.abs(predicted - logy)))
            median_pred = np.empty_like(logy)
            for train, test in folds.split(design):
                median_pred[test] = np.median(logy[train])
            cv_median = float(np.mean(np.abs(median_pred - logy)))
            if cv_model < (1.0 - MIN_GAIN) * cv_median:
                self.pipeline_ = self._pipeline().fit(design, logy)
                kind = "regression"
                reason = (
                    f"cross-validated error of log-seconds {cv_model:.3f} below the "
                    f"median's {cv_median:.3f}"
                )
            else:
                kind = "median"
                reason = (
                    f"the regression's cross-validated error of log-seconds ({cv_model:.3f}) "
                    f"does not beat the median's ({cv_median:.3f}) by {MIN_GAIN:.0%}"
                )
        per_class: dict[str, dict[str, float]] = {}
        if labels is not None and y.size:
            lab = np.asarray(labels).astype(str)
            for name in sorted(set(lab.tolist())):
                times = y[lab == name]
                per_class[name] = {"labels": float(times.size), "median": float(np.median(times))}
        self.summary_ = CostSummary(
            n_timed=int(y.size),
            median_seconds=self.median_,
            mean_seconds=float(y.mean()) if y.size else float("nan"),
            kind=kind,
            reason=reason,
            cv_error_model=cv_model,
            cv_error_median=cv_median,
            per_class=per_class,
        )
        return self

    def predict(
        self,
        X: np.ndarray | None,
        *,
        proba: np.ndarray | None = None,
        chunk_size: int = 65_536,
    ) -> np.ndarray:
        """Expected seconds of each item (the median for all when no regression is kept)."""
        if not hasattr(self, "summary_"):
            raise ConfigError("fit the cost model before predicting")
        n = _rows(X, proba)
        if self.summary_.n_timed == 0:
            raise ConfigError("no timed labels: the cost model has nothing to predict from")
        if self.pipeline_ is None:
            return np.full(n, self.median_)
        out = np.empty(n)
        for start in range(0, n, chunk_size):  # bounded memory on a large pool
            stop = min(start + chunk_size, n)
            design = self._design(
                None if X is None else X[start:stop],
                None if proba is None else proba[start:stop],
                stop - start,
            )
            assert design is not None
            if design.shape[1] != self.n_features_in_:
                raise ConfigError(
                    f"cost model fitted on {self.n_features_in_} columns, got {design.shape[1]}"
                )
            out[start:stop] = np.exp(self.pipeline_.predict(design))
        return np.clip(out, self.low_, self.high_)

    @staticmethod
    def _pipeline() -> Pipeline:
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))

    @staticmethod
    def _design(X: np.ndarray | None, proba: np.ndarray | None, n: int) -> np.ndarray | None:
        parts = []
        if X is not None:
            x = np.asarray(X, dtype=np.float64)
            if x.ndim == 0 or x.shape[0] != n:
                raise ConfigError(f"cost features have {x.shape[:1]} rows for {n} items")
            parts.append(x.reshape(n, -1))
        if proba is not None:
            parts.append(uncertainty_features(proba))
        for part in parts:
            if part.shape[0] != n:
                raise ConfigError(f"cost features have {part.shape[0]} rows for {n} times")
            if not np.isfinite(part).all():
                raise ConfigError("cost features contain NaN or infinite values")
        return np.hstack(parts) if parts else None


def _rows(X: np.ndarray | None, proba: np.ndarray | None) -> int:
    if X is not None:
        return int(np.shape(X)[0])
    if proba is not None:
        return int(np.shape(proba)[0])
    raise ConfigError("pass item features, predictions, or both")
