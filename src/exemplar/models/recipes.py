"""Named model recipes: the same recipe is used for every strategy in a comparison."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
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


def make_estimator(name: str, seed: int = 0) -> BaseEstimator:
    """Build a fresh estimator from a recipe name."""
    try:
        recipe = MODEL_RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(MODEL_RECIPES)}"
        ) from None
    return recipe.build(seed)
