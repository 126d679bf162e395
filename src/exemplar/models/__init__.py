"""Model adapters: scikit-learn models and committees (PyTorch arrives with the torch extra)."""

from exemplar.models.base import DEFAULT_CHUNK_SIZE, ModelAdapter
from exemplar.models.recipes import MODEL_RECIPES, ModelRecipe, make_estimator
from exemplar.models.sklearn import CommitteeAdapter, SklearnAdapter

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MODEL_RECIPES",
    "CommitteeAdapter",
    "ModelAdapter",
    "ModelRecipe",
    "SklearnAdapter",
    "make_estimator",
]
