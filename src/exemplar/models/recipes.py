"""Named model recipes: the table of every model the simulator and projects can use.

The same recipe is used for every strategy in a comparison, and a project's
``[[model.candidates]]`` name recipes from here. This module is data only: each recipe
names its family by key, and the family (:mod:`exemplar.models.families`) builds, fits,
saves and loads its models. Five families exist:

* ``sklearn``: a scikit-learn estimator wrapped in :class:`SklearnAdapter` (or a bagged
  :class:`CommitteeAdapter` when a strategy reads stochastic samples);
* ``torch``: a PyTorch network in :class:`~exemplar.models.torch_adapter.TorchAdapter`
  (MC-dropout or deep-ensemble samples; needs the ``torch`` extra);
* ``text``: frozen MiniLM sentence embeddings with a classifier head (needs the ``text``
  extra); its inputs are texts, not feature rows;
* ``detector``: the built-in CenterNet (:mod:`exemplar.models.detector`, torch extra); its
  inputs are image rows and its targets one ``Objects`` per image;
* ``external``: any detector trained and run by the user's own commands
  (:mod:`exemplar.models.external`, ``docs/external_trainer.md``); its inputs are positions
  in the item image files bound to it, and its targets one ``Objects`` per image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from exemplar.errors import ConfigError

__all__ = ["MODEL_RECIPES", "ModelRecipe", "get_recipe"]

Inputs = Literal["rows", "texts", "files"]


@dataclass(frozen=True)
class ModelRecipe:
    """A named way to build a fresh, unfitted model adapter.

    ``family`` is the key of the family that builds it (``exemplar.models.FAMILIES``).
    ``build`` makes the scikit-learn estimator from a seed: the whole model (sklearn family)
    or the head on top of the sentence embeddings (text family). ``base`` names the network
    a deep recipe builds, and ``defaults`` are parameters every build of this recipe gets (a
    caller's ``params`` override them). ``inputs`` says what ``X`` holds: feature rows,
    raw texts, or positions in the item image files bound to the model (``files``).
    """

    name: str
    description: str
    family: str
    build: Callable[[int], BaseEstimator] | None = None
    base: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    inputs: Inputs = "rows"

    @property
    def reads_text(self) -> bool:
        """True when the model's inputs are raw texts rather than feature rows."""
        return self.inputs == "texts"

    @property
    def reads_files(self) -> bool:
        """True when the model reads the item image files (rows are positions in them)."""
        return self.inputs == "files"


def _logreg(seed: int) -> BaseEstimator:
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=300, random_state=seed)
    )


def _random_forest(seed: int) -> BaseEstimator:
    return RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)


class _FixedBudgetMLP(MLPClassifier):
    """An MLP trained for a fixed epoch budget: hitting ``max_iter`` is the plan, not a fault."""

    def fit(self, X: Any, y: Any) -> _FixedBudgetMLP:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return super().fit(X, y)


def _logreg_head(seed: int) -> BaseEstimator:
    # Unit-length embeddings have small coordinates: C=10 beat C=1 (and standardizing)
    # on TREC at every budget from 30 to 4,000 labels.
    return LogisticRegression(C=10.0, max_iter=1000, random_state=seed)


def _mlp_head(seed: int) -> BaseEstimator:
    return _FixedBudgetMLP(
        hidden_layer_sizes=(128,),
        alpha=1e-3,
        learning_rate_init=3e-3,
        max_iter=100,
        random_state=seed,
    )


MODEL_RECIPES: dict[str, ModelRecipe] = {
    r.name: r
    for r in (
        ModelRecipe(
            "logreg",
            "standardized features + multinomial logistic regression",
            "sklearn",
            _logreg,
        ),
        ModelRecipe("random_forest", "random forest, 100 trees", "sklearn", _random_forest),
        ModelRecipe(
            "cnn",
            "small CNN for square grayscale images (MC dropout, 20 passes)",
            "torch",
            base="cnn",
        ),
        ModelRecipe(
            "cnn-ensemble",
            "deep ensemble of 5 independently seeded small CNNs",
            "torch",
            base="cnn",
            defaults={"uncertainty": "ensemble"},
        ),
        ModelRecipe(
            "mlp",
            "multi-layer perceptron with dropout (MC dropout, 20 passes)",
            "torch",
            base="mlp",
        ),
        ModelRecipe(
            "mlp-ensemble",
            "deep ensemble of 5 independently seeded MLPs",
            "torch",
            base="mlp",
            defaults={"uncertainty": "ensemble"},
        ),
        ModelRecipe(
            "centernet",
            "detector: small CenterNet (boxes; MC dropout, 8 passes); image rows, Objects targets",
            "detector",
            base="centernet",
        ),
        ModelRecipe(
            "centernet-seg",
            "detector: small CenterNet with a foreground head (boxes + instance masks)",
            "detector",
            base="centernet",
            defaults={"segmentation": True},
        ),
        ModelRecipe(
            "external",
            "detector: your own train/predict commands (YOLO/COCO folder in, JSON objects out)",
            "external",
            inputs="files",
        ),
        ModelRecipe(
            "minilm-logreg",
            "texts: frozen MiniLM sentence embeddings + logistic regression (C=10)",
            "text",
            _logreg_head,
            inputs="texts",
        ),
        ModelRecipe(
            "minilm-mlp",
            "texts: frozen MiniLM sentence embeddings + MLP head (128 ReLU units, 100 epochs)",
            "text",
            _mlp_head,
            inputs="texts",
        ),
    )
}


def get_recipe(name: str) -> ModelRecipe:
    """The recipe called ``name``, or a :class:`ConfigError` listing the choices."""
    try:
        return MODEL_RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(MODEL_RECIPES)}"
        ) from None
