"""Named model recipes: one registry for every model the simulator and projects can use.

The same recipe is used for every strategy in a comparison, and a project's
``[[model.candidates]]`` name recipes from here. Three families exist:

* ``sklearn``: a scikit-learn estimator wrapped in :class:`SklearnAdapter` (or a bagged
  :class:`CommitteeAdapter` when a strategy reads stochastic samples);
* ``torch``: a PyTorch network in :class:`~exemplar.models.torch_adapter.TorchAdapter`
  (MC-dropout or deep-ensemble samples; needs the ``torch`` extra);
* ``text``: frozen MiniLM sentence embeddings with a classifier head (needs the ``text``
  extra); its inputs are texts, not feature rows.

Deep and text families are imported on first use, so ``import exemplar`` stays light.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from exemplar.errors import ConfigError, ModelError
from exemplar.models.base import DEFAULT_CHUNK_SIZE, ModelAdapter
from exemplar.models.sklearn import CommitteeAdapter, SklearnAdapter

__all__ = [
    "MODEL_RECIPES",
    "ModelRecipe",
    "checkpoint_suffix",
    "get_recipe",
    "load_model",
    "make_estimator",
    "make_model",
    "save_model",
]

Family = Literal["sklearn", "torch", "text"]


@dataclass(frozen=True)
class ModelRecipe:
    """A named way to build a fresh, unfitted model adapter.

    ``build`` makes the scikit-learn estimator from a seed: the whole model (sklearn family)
    or the head on top of the sentence embeddings (text family). ``base`` names the network
    a deep recipe builds, and ``defaults`` are parameters every build of this recipe gets (a
    caller's ``params`` override them).
    """

    name: str
    description: str
    family: Family
    build: Callable[[int], BaseEstimator] | None = None
    base: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reads_text(self) -> bool:
        """True when the model's inputs are raw texts rather than feature rows."""
        return self.family == "text"


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
            "minilm-logreg",
            "texts: frozen MiniLM sentence embeddings + logistic regression (C=10)",
            "text",
            _logreg_head,
        ),
        ModelRecipe(
            "minilm-mlp",
            "texts: frozen MiniLM sentence embeddings + MLP head (128 ReLU units, 100 epochs)",
            "text",
            _mlp_head,
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


def make_estimator(name: str, seed: int = 0, **params: Any) -> BaseEstimator:
    """Build a fresh scikit-learn estimator from a recipe name.

    ``params`` set hyper-parameters of the final estimator (for ``logreg``, e.g. ``C``).
    """
    recipe = get_recipe(name)
    if recipe.family != "sklearn" or recipe.build is None:
        raise ConfigError(f"model {name!r} is a {recipe.family} model, not a scikit-learn one")
    estimator = recipe.build(seed)
    if params:
        final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
        try:
            final.set_params(**params)
        except ValueError as exc:
            raise ConfigError(f"bad parameter for model {name!r}: {exc}") from None
    return estimator


def make_model(
    name: str,
    seed: int = 0,
    *,
    samples: bool = False,
    committee_size: int = 5,
    device: str = "cpu",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **params: Any,
) -> ModelAdapter:
    """Build a fresh, unfitted adapter for any recipe.

    Parameters
    ----------
    name : str
        A key of :data:`MODEL_RECIPES`.
    seed : int
        Seed of initialisation, data order and stochastic passes.
    samples : bool
        Whether a strategy will read stochastic samples. scikit-learn recipes (and the
        heads of text recipes) then become a bagged committee of ``committee_size``
        members; deep recipes always give samples (MC dropout or ensemble members).
    device : str
        ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``; deep and text models only.
    chunk_size : int
        Rows predicted at once.
    params
        Hyper-parameters of the recipe (e.g. ``C`` for logreg, ``epochs`` for cnn).
    """
    recipe = get_recipe(name)
    if recipe.family == "sklearn":
        if device != "cpu":
            raise ConfigError(f"model {name!r} runs on the CPU only; drop device={device!r}")
        estimator = make_estimator(name, seed, **params)
        if samples:
            return CommitteeAdapter(
                estimator, n_members=committee_size, random_state=seed, chunk_size=chunk_size
            )
        return SklearnAdapter(estimator, chunk_size=chunk_size)
    merged = {**recipe.defaults, **params}
    if recipe.family == "torch":
        from exemplar.models.torch_adapter import make_torch_model

        return make_torch_model(recipe.base, seed, device=device, chunk_size=chunk_size, **merged)
    from exemplar.models.text import make_text_model

    n_members = committee_size if samples else 0
    return make_text_model(name, seed, device=device, n_members=n_members, **merged)


def checkpoint_suffix(name: str) -> str:
    """File suffix of a checkpoint of recipe ``name``."""
    return ".pt" if get_recipe(name).family == "torch" else ".joblib"


def save_model(model: ModelAdapter, path: str | os.PathLike[str]) -> Path:
    """Write a fitted adapter's checkpoint atomically (temp file, fsync, rename).

    PyTorch adapters write a state-dict file (loaded back with ``weights_only=True``);
    scikit-learn adapters and text heads use joblib, for local checkpoints written by
    this project only (DESIGN.md §4: never untrusted input).
    """
    path = Path(path)
    save = getattr(model, "save", None)
    if callable(save):
        return Path(save(path))
    # A committee is saved as its main model; the loop rebuilds members when it loads.
    holder = getattr(model, "main_", model)
    fitted = getattr(holder, "model_", None)
    if fitted is None:
        raise ModelError(f"cannot save a {type(model).__name__}: it is not fitted")
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(fitted, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_model(
    name: str,
    path: str | os.PathLike[str],
    *,
    device: str = "cpu",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ModelAdapter:
    """Load a checkpoint written by :func:`save_model` for a model of recipe ``name``."""
    recipe = get_recipe(name)
    path = Path(path)
    if not path.exists():
        raise ModelError(f"checkpoint {path} is missing")
    if recipe.family == "torch":
        from exemplar.models.torch_adapter import TorchAdapter

        return TorchAdapter.load(path, device=device, chunk_size=chunk_size)
    if recipe.family == "text":
        from exemplar.models.text import load_text_model

        return load_text_model(path, device=device)
    try:
        estimator = joblib.load(path)
    except Exception as exc:  # a truncated or foreign file
        raise ModelError(f"checkpoint {path} cannot be read: {exc}") from exc
    adapter = SklearnAdapter(estimator, chunk_size=chunk_size)
    adapter.model_ = estimator
    adapter.classes_ = np.asarray(estimator.classes_)
    return adapter
