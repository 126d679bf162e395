"""Model families: one object per kind of model, registered by key in :data:`FAMILIES`.

A family knows how to build a fresh adapter from a recipe (:mod:`exemplar.models.recipes`
names its family by key), fit it, save and load its checkpoints, read the classes of a
checkpoint without building the model, and whether stochastic samples need a committee
built around a loaded model. Adding a kind of model means adding a family here, not a
branch in the loop, the server or the recipes; the detector family is one.

The torch, text and detector families import their modules on first use, so ``import exemplar``
never imports torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from exemplar.errors import ConfigError, ModelError
from exemplar.models.base import DEFAULT_CHUNK_SIZE, ModelAdapter
from exemplar.models.recipes import ModelRecipe, get_recipe
from exemplar.models.sklearn import CommitteeAdapter, SklearnAdapter, is_fitted

__all__ = [
    "FAMILIES",
    "DetectorFamily",
    "ExternalFamily",
    "ModelFamily",
    "SklearnFamily",
    "TextFamily",
    "TorchFamily",
    "checkpoint_classes",
    "checkpoint_suffix",
    "family_of",
    "get_family",
    "load_model",
    "make_estimator",
    "make_model",
    "save_model",
]


@runtime_checkable
class ModelFamily(Protocol):
    """What every model family provides.

    Attributes
    ----------
    key : str
        The name recipes use in their ``family`` field.
    suffix : str
        File suffix of its checkpoints (``".joblib"``, ``".pt"``).
    needs_committee_for_samples : bool
        True when a loaded model gives no stochastic samples itself and
        :meth:`with_samples` builds a committee around it (scikit-learn); False when the
        model samples itself (MC dropout, ensembles, a text head saved with its committee).
    uses_torch : bool
        Whether its models run PyTorch (a caller may then set torch's thread count).
    """

    key: str
    suffix: str
    needs_committee_for_samples: bool
    uses_torch: bool

    def build(
        self,
        recipe: ModelRecipe,
        seed: int = 0,
        *,
        samples: bool = False,
        committee_size: int = 5,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        params: dict[str, Any] | None = None,
    ) -> ModelAdapter:
        """A fresh, unfitted adapter for ``recipe`` (see :func:`make_model`)."""
        ...

    def estimator(
        self, recipe: ModelRecipe, seed: int = 0, params: dict[str, Any] | None = None
    ) -> BaseEstimator:
        """The bare scikit-learn estimator of a recipe; a ConfigError where there is none."""
        ...

    def fit(self, model: ModelAdapter, X: Any, y: np.ndarray) -> ModelAdapter:
        """Fit ``model`` (retrained from scratch) on ``(X, y)``."""
        ...

    def save(self, model: ModelAdapter, path: str | os.PathLike[str]) -> Path:
        """Write a fitted model's checkpoint atomically."""
        ...

    def load(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> ModelAdapter:
        """The fitted adapter a checkpoint holds."""
        ...

    def classes(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The classes of a checkpoint, in the order of its probability columns."""
        ...

    def owns(self, model: object) -> bool:
        """Whether ``model`` is an adapter of this family."""
        ...

    def with_samples(
        self, model: ModelAdapter, X: Any, y: np.ndarray, *, seed: int, committee_size: int = 5
    ) -> ModelAdapter:
        """A model that gives stochastic samples, from a fitted ``model`` of this family."""
        ...


def _fit(model: ModelAdapter, X: Any, y: np.ndarray) -> ModelAdapter:
    return model.fit(X, y)


def _set_params(estimator: BaseEstimator, name: str, params: dict[str, Any]) -> BaseEstimator:
    """Set ``params`` on the final estimator (of a pipeline), as a ConfigError if refused."""
    if params:
        final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
        try:
            final.set_params(**params)
        except ValueError as exc:
            raise ConfigError(f"bad parameter for model {name!r}: {exc}") from None
    return estimator


def _write_atomically(obj: Any, path: Path) -> Path:
    import joblib

    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


class SklearnFamily:
    """scikit-learn estimators: :class:`SklearnAdapter`, bagged into a committee for samples.

    Checkpoints are the fitted estimator in joblib format, for local checkpoints this
    project wrote only (DESIGN.md §4: never untrusted input).
    """

    key: str = "sklearn"
    suffix: str = ".joblib"
    needs_committee_for_samples: bool = True
    uses_torch: bool = False

    def build(
        self,
        recipe: ModelRecipe,
        seed: int = 0,
        *,
        samples: bool = False,
        committee_size: int = 5,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        params: dict[str, Any] | None = None,
    ) -> ModelAdapter:
        """A :class:`SklearnAdapter`, or a bagged :class:`CommitteeAdapter` if ``samples``."""
        if device != "cpu":
            raise ConfigError(f"model {recipe.name!r} runs on the CPU only; drop device={device!r}")
        estimator = self.estimator(recipe, seed, params)
        if samples:
            return CommitteeAdapter(
                estimator, n_members=committee_size, random_state=seed, chunk_size=chunk_size
            )
        return SklearnAdapter(estimator, chunk_size=chunk_size)

    def estimator(
        self, recipe: ModelRecipe, seed: int = 0, params: dict[str, Any] | None = None
    ) -> BaseEstimator:
        """The recipe's estimator, with ``params`` set on its final step."""
        if recipe.build is None:
            raise ConfigError(f"model {recipe.name!r} has no scikit-learn estimator")
        return _set_params(recipe.build(seed), recipe.name, dict(params or {}))

    fit = staticmethod(_fit)

    def save(self, model: ModelAdapter, path: str | os.PathLike[str]) -> Path:
        """Write the fitted estimator (a committee's main model; the loop rebuilds members)."""
        holder = getattr(model, "main_", model)
        if holder is None:
            raise ModelError(
                "a committee with proba='mean' has no main model to save; save a member's "
                "estimator, or use proba='main'"
            )
        fitted = getattr(holder, "model_", None)
        if fitted is None:
            raise ModelError(f"cannot save a {type(model).__name__}: it is not fitted")
        return _write_atomically(fitted, Path(path))

    def load(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> ModelAdapter:
        """The checkpoint's estimator in :meth:`SklearnAdapter.from_fitted` (no refit)."""
        return SklearnAdapter.from_fitted(self._read(Path(path)), chunk_size=chunk_size)

    def classes(self, path: str | os.PathLike[str]) -> np.ndarray:
        """``classes_`` of the checkpoint's estimator."""
        return np.asarray(self._read(Path(path)).classes_)

    def owns(self, model: object) -> bool:
        """Whether ``model`` is a :class:`SklearnAdapter` or a :class:`CommitteeAdapter`."""
        return isinstance(model, SklearnAdapter | CommitteeAdapter)

    def with_samples(
        self, model: ModelAdapter, X: Any, y: np.ndarray, *, seed: int, committee_size: int = 5
    ) -> ModelAdapter:
        """A bagged committee around a fitted :class:`SklearnAdapter`.

        The fitted model stays the main model (never refitted); only the ``committee_size``
        bootstrap members, clones of its estimator seeded by ``seed``, are fitted on
        ``(X, y)``. A committee is returned as it is.
        """
        if isinstance(model, CommitteeAdapter):
            return model
        if not isinstance(model, SklearnAdapter) or not hasattr(model, "model_"):
            raise ModelError(f"expected a fitted SklearnAdapter, got {type(model).__name__}")
        committee = CommitteeAdapter(
            model.model_,
            n_members=committee_size,
            random_state=seed,
            transform=model.transform,
            chunk_size=model.chunk_size,
            float32=model.float32,
        )
        return committee.fit(X, y)

    @staticmethod
    def _read(path: Path) -> Any:
        import joblib

        if not path.is_file():
            raise ModelError(f"checkpoint {path} is missing")
        try:
            estimator = joblib.load(path)
        except Exception as exc:  # joblib raises many types for a truncated or foreign file
            raise ModelError(f"checkpoint {path} cannot be read: {exc}") from exc
        if not hasattr(estimator, "classes_") or not is_fitted(estimator):
            raise ModelError(f"checkpoint {path} does not hold a fitted scikit-learn classifier")
        return estimator


class _AdapterFamily:
    """A family whose adapter class saves, loads and samples itself (MC dropout, ensemble
    members, or an external tool's passes): torch networks, the detector, external trainers.

    Subclasses name the adapter's module and class, say what kind of model it is, and build
    it; the module also defines ``checkpoint_classes(path)``. The module is imported on
    first use, so ``import exemplar`` never imports torch.
    """

    key: str
    suffix: str
    needs_committee_for_samples: bool = False
    uses_torch: bool = True
    #: Where the adapter lives, its class, and what the family's models are, in words.
    module: str
    adapter: str
    kind: str

    def _adapter_class(self) -> Any:
        return getattr(importlib.import_module(self.module), self.adapter)

    def estimator(
        self, recipe: ModelRecipe, seed: int = 0, params: dict[str, Any] | None = None
    ) -> BaseEstimator:
        """None exists: a ConfigError."""
        raise ConfigError(f"model {recipe.name!r} is {self.kind}, not a scikit-learn model")

    fit = staticmethod(_fit)

    def save(self, model: ModelAdapter, path: str | os.PathLike[str]) -> Path:
        """The adapter's own ``save`` (atomic)."""
        return Path(model.save(path))  # type: ignore[attr-defined]

    def load(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> ModelAdapter:
        """The adapter's own ``load`` (torch checkpoints: ``torch.load(weights_only=True)``)."""
        model: ModelAdapter = self._adapter_class().load(path, device=device, chunk_size=chunk_size)
        return model

    def classes(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The classes recorded in the checkpoint (no model is built)."""
        return np.asarray(importlib.import_module(self.module).checkpoint_classes(path))

    def owns(self, model: object) -> bool:
        """Whether ``model`` is this family's adapter (never imports its module to find out)."""
        module = sys.modules.get(self.module)
        return module is not None and isinstance(model, getattr(module, self.adapter))

    def with_samples(
        self, model: ModelAdapter, X: Any, y: np.ndarray, *, seed: int, committee_size: int = 5
    ) -> ModelAdapter:
        """``model`` itself: it gives stochastic samples on its own."""
        return model


class TorchFamily(_AdapterFamily):
    """PyTorch networks in :class:`~exemplar.models.torch_adapter.TorchAdapter` (torch extra).

    Checkpoints are state dicts plus JSON metadata, loaded with ``weights_only=True``.
    """

    key: str = "torch"
    suffix: str = ".pt"
    module = "exemplar.models.torch_adapter"
    adapter = "TorchAdapter"
    kind = "a torch model"

    def build(
        self,
        recipe: ModelRecipe,
        seed: int = 0,
        *,
        samples: bool = False,
        committee_size: int = 5,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        params: dict[str, Any] | None = None,
    ) -> ModelAdapter:
        """The recipe's network; it gives samples itself (MC dropout or ensemble members)."""
        from exemplar.models.torch_adapter import make_torch_model

        merged = {**recipe.defaults, **(params or {})}
        return make_torch_model(recipe.base, seed, device=device, chunk_size=chunk_size, **merged)


class TextFamily:
    """Texts: frozen MiniLM sentence embeddings and a scikit-learn head (text extra).

    Checkpoints hold the fitted head (and its committee) and the encoder's name, in joblib
    format (this project's own checkpoints only).
    """

    key: str = "text"
    suffix: str = ".joblib"
    needs_committee_for_samples: bool = False
    uses_torch: bool = True  # the MiniLM encoder

    def build(
        self,
        recipe: ModelRecipe,
        seed: int = 0,
        *,
        samples: bool = False,
        committee_size: int = 5,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        params: dict[str, Any] | None = None,
    ) -> ModelAdapter:
        """An :class:`~exemplar.models.text.EmbeddingAdapter`; its head is bagged if ``samples``."""
        from exemplar.models.text import make_text_model

        merged = {**recipe.defaults, **(params or {})}
        n_members = committee_size if samples else 0
        return make_text_model(recipe.name, seed, device=device, n_members=n_members, **merged)

    def estimator(
        self, recipe: ModelRecipe, seed: int = 0, params: dict[str, Any] | None = None
    ) -> BaseEstimator:
        """None exists for the whole model (the head reads embeddings): a ConfigError."""
        raise ConfigError(f"model {recipe.name!r} is a text model, not a scikit-learn one")

    fit = staticmethod(_fit)

    def save(self, model: ModelAdapter, path: str | os.PathLike[str]) -> Path:
        """:meth:`EmbeddingAdapter.save`."""
        return Path(model.save(path))  # type: ignore[attr-defined]

    def load(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> ModelAdapter:
        """:func:`~exemplar.models.text.load_text_model` (MiniLM rebuilt on ``device``)."""
        from exemplar.models.text import load_text_model

        return load_text_model(Path(path), device=device)

    def classes(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The head's classes (the encoder is not loaded)."""
        from exemplar.models.text import checkpoint_classes

        return checkpoint_classes(Path(path))

    def owns(self, model: object) -> bool:
        """Whether ``model`` is an EmbeddingAdapter (never imports the text module to find out)."""
        module = sys.modules.get("exemplar.models.text")
        return module is not None and isinstance(model, module.EmbeddingAdapter)

    def with_samples(
        self, model: ModelAdapter, X: Any, y: np.ndarray, *, seed: int, committee_size: int = 5
    ) -> ModelAdapter:
        """``model`` itself: a text model built with ``samples=True`` saves its committee."""
        return model


class DetectorFamily(_AdapterFamily):
    """The built-in CenterNet detector (:mod:`exemplar.models.detector`, torch extra).

    Inputs are image rows and targets one :class:`~exemplar.objects.Objects` per image.
    Checkpoints are the JSON config plus state dicts, loaded with ``weights_only=True``.
    """

    key: str = "detector"
    suffix: str = ".pt"
    module = "exemplar.models.detector"
    adapter = "DetectorAdapter"
    kind = "a detector"

    def build(
        self,
        recipe: ModelRecipe,
        seed: int = 0,
        *,
        samples: bool = False,
        committee_size: int = 5,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        params: dict[str, Any] | None = None,
    ) -> ModelAdapter:
        """A fresh :class:`~exemplar.models.detector.DetectorAdapter`; it samples itself."""
        from exemplar.models.detector import make_detector

        merged = {**recipe.defaults, **(params or {})}
        model = make_detector(seed, device=device, chunk_size=chunk_size, **merged)
        return model  # type: ignore[return-value]


class ExternalFamily(_AdapterFamily):
    """Any detector run by the user's own commands (:mod:`exemplar.models.external`).

    Inputs are positions in the item images bound with ``bind_items`` and targets one
    :class:`~exemplar.objects.Objects` per image. Checkpoints are JSON files naming the run
    folder and the weights the tool wrote (``docs/external_trainer.md``).
    """

    key: str = "external"
    suffix: str = ".json"
    uses_torch: bool = False
    module = "exemplar.models.external"
    adapter = "ExternalAdapter"
    kind = "an external detector"

    def build(
        self,
        recipe: ModelRecipe,
        seed: int = 0,
        *,
        samples: bool = False,
        committee_size: int = 5,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        params: dict[str, Any] | None = None,
    ) -> ModelAdapter:
        """An :class:`~exemplar.models.external.ExternalAdapter` (samples come from the tool)."""
        import inspect

        from exemplar.models.external import ExternalAdapter

        merged = {**recipe.defaults, **(params or {})}
        accepted = set(inspect.signature(ExternalAdapter).parameters) - {"seed", "device"}
        unknown = sorted(set(merged) - accepted)
        if unknown:
            raise ConfigError(
                f"model {recipe.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(sorted(accepted - {'chunk_size'}))}"
            )
        merged.setdefault("chunk_size", chunk_size)
        return ExternalAdapter(seed=seed, device=device, **merged)  # type: ignore[return-value]


FAMILIES: dict[str, ModelFamily] = {
    family.key: family
    for family in (SklearnFamily(), TorchFamily(), TextFamily(), DetectorFamily(), ExternalFamily())
}


def get_family(key: str) -> ModelFamily:
    """The family registered as ``key``, or a :class:`ConfigError` listing the choices."""
    try:
        return FAMILIES[key]
    except KeyError:
        raise ConfigError(
            f"unknown model family {key!r}; choose one of: {', '.join(FAMILIES)}"
        ) from None


def family_of(recipe: str | ModelRecipe) -> ModelFamily:
    """The family of a recipe (given by name or as a :class:`ModelRecipe`)."""
    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    return get_family(recipe.family)


def make_estimator(name: str, seed: int = 0, **params: Any) -> BaseEstimator:
    """Build a fresh scikit-learn estimator from a recipe name.

    ``params`` set hyper-parameters of the final estimator (for ``logreg``, e.g. ``C``).
    """
    recipe = get_recipe(name)
    return get_family(recipe.family).estimator(recipe, seed, params)


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
        A key of :data:`~exemplar.models.recipes.MODEL_RECIPES`.
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
    return get_family(recipe.family).build(
        recipe,
        seed,
        samples=samples,
        committee_size=committee_size,
        device=device,
        chunk_size=chunk_size,
        params=params,
    )


def checkpoint_suffix(name: str) -> str:
    """File suffix of a checkpoint of recipe ``name``."""
    return family_of(name).suffix


def save_model(
    model: ModelAdapter, path: str | os.PathLike[str], *, recipe: str | None = None
) -> Path:
    """Write a fitted adapter's checkpoint atomically, in its family's format.

    The family is the recipe's when ``recipe`` is given, else the one that owns ``model``;
    any other adapter with a ``save(path)`` method saves itself.
    """
    path = Path(path)
    if recipe is not None:
        return family_of(recipe).save(model, path)
    for family in FAMILIES.values():
        if family.owns(model):
            return family.save(model, path)
    save = getattr(model, "save", None)
    if callable(save):
        return Path(save(path))
    raise ModelError(f"cannot save a {type(model).__name__}: no model family owns it")


def load_model(
    name: str,
    path: str | os.PathLike[str],
    *,
    device: str = "cpu",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ModelAdapter:
    """Load a checkpoint written by :func:`save_model` for a model of recipe ``name``."""
    family = family_of(name)
    path = Path(path)
    if not path.exists():
        raise ModelError(f"checkpoint {path} is missing")
    return family.load(path, device=device, chunk_size=chunk_size)


def checkpoint_classes(path: str | os.PathLike[str], recipe: str | None = None) -> np.ndarray:
    """The classes of a checkpoint, in the order of its probability columns.

    The checkpoint is read by its recipe's family, or, without ``recipe``, by the first
    family whose checkpoints have its suffix and can read it. Nothing but the classes is
    built (no network, no encoder).

    Raises
    ------
    ModelError
        If no family can read the file.
    """
    path = Path(path)
    if recipe is not None:
        return family_of(recipe).classes(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} is missing")
    errors = []
    for family in FAMILIES.values():
        if path.suffix == family.suffix:
            try:
                return family.classes(path)
            except ModelError as exc:
                errors.append(f"{family.key}: {exc}")
    detail = "; ".join(errors) if errors else f"no model family writes {path.suffix!r} files"
    raise ModelError(f"cannot read the classes of checkpoint {path} ({detail})")
