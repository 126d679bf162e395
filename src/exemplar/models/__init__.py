"""Model adapters: scikit-learn models and committees, and PyTorch networks (torch extra).

Recipes (:mod:`~exemplar.models.recipes`, data only) name a model family
(:mod:`~exemplar.models.families`), and the family builds, fits, saves and loads it.

The PyTorch names (``TorchAdapter``, ``TrainingRecipe``, ``make_torch_model``,
``TORCH_MODELS``, ``SmallCNN``, ``MLP``, and the detector's ``DetectorAdapter``,
``DetectorConfig``, ``make_detector``, ``CenterNet``) are imported on first access, so
importing this package never imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from exemplar.errors import ModelError
from exemplar.models.base import DEFAULT_CHUNK_SIZE, ModelAdapter
from exemplar.models.families import (
    FAMILIES,
    DetectorFamily,
    ModelFamily,
    SklearnFamily,
    TextFamily,
    TorchFamily,
    checkpoint_classes,
    checkpoint_suffix,
    family_of,
    get_family,
    load_model,
    make_estimator,
    make_model,
    save_model,
)
from exemplar.models.recipes import MODEL_RECIPES, ModelRecipe, get_recipe
from exemplar.models.sklearn import CommitteeAdapter, SklearnAdapter

if TYPE_CHECKING:
    from exemplar.models.detector import DetectorAdapter as DetectorAdapter
    from exemplar.models.detector import DetectorConfig as DetectorConfig
    from exemplar.models.detector import make_detector as make_detector
    from exemplar.models.detector_net import CenterNet as CenterNet
    from exemplar.models.nets import MLP as MLP
    from exemplar.models.nets import SmallCNN as SmallCNN
    from exemplar.models.torch_adapter import TORCH_MODELS as TORCH_MODELS
    from exemplar.models.torch_adapter import TorchAdapter as TorchAdapter
    from exemplar.models.torch_adapter import TrainingRecipe as TrainingRecipe
    from exemplar.models.torch_adapter import make_torch_model as make_torch_model

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FAMILIES",
    "MODEL_RECIPES",
    "CommitteeAdapter",
    "DetectorFamily",
    "ModelAdapter",
    "ModelFamily",
    "ModelRecipe",
    "SklearnAdapter",
    "SklearnFamily",
    "TextFamily",
    "TorchFamily",
    "checkpoint_classes",
    "checkpoint_suffix",
    "family_of",
    "get_family",
    "get_recipe",
    "load_model",
    "make_estimator",
    "make_model",
    "save_model",
]

_TORCH_EXPORTS = {
    "TORCH_MODELS": "exemplar.models.torch_adapter",
    "TorchAdapter": "exemplar.models.torch_adapter",
    "TrainingRecipe": "exemplar.models.torch_adapter",
    "make_torch_model": "exemplar.models.torch_adapter",
    "MLP": "exemplar.models.nets",
    "SmallCNN": "exemplar.models.nets",
    "DetectorAdapter": "exemplar.models.detector",
    "DetectorConfig": "exemplar.models.detector",
    "make_detector": "exemplar.models.detector",
    "CenterNet": "exemplar.models.detector_net",
}


def __getattr__(name: str) -> Any:
    module = _TORCH_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if importlib.util.find_spec("torch") is None:
        raise ModelError(f"{name} needs PyTorch: pip install 'exemplar[torch]'")
    return getattr(importlib.import_module(module), name)
