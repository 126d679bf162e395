"""Named model recipes: the same recipe is used for every strategy in a comparison."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from exemplar.errors import ConfigError

__all__ = ["MODEL_RECIPES", "ModelRecipe", "make_estimator"]


@dataclass(frozen=True)
class ModelRecipe:
    """A named way to build a fresh, unfitted estimator."""

    name: str
    description: str
    build: Callable[[int], BaseEstimator]


def _logreg(seed: int) -> BaseEstimator:
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=300, random_state=seed)
    )


def _random_forest(seed: int) -> BaseEstimator:
    return RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)


MODEL_RECIPES: dict[str, ModelRecipe] = {
    r.name: r
    for r in (
        ModelRecipe("logreg", "standardized features + multinomial logistic regression", _logreg),
        ModelRecipe("random_forest", "random forest, 100 trees", _random_forest),
    )
}


def make_estimator(name: str, seed: int = 0, **params: Any) -> BaseEstimator:
    """Build a fresh estimator from a recipe name.

    ``params`` set hyper-parameters of the final estimator (for ``logreg``, e.g. ``C``).
    """
    try:
        recipe = MODEL_RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(MODEL_RECIPES)}"
        ) from None
    estimator = recipe.build(seed)
    if params:
        final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
        try:
            final.set_params(**params)
        except ValueError as exc:
            raise ConfigError(f"bad parameter for model {name!r}: {exc}") from None
    return estimator
