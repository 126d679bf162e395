"""Stopping criteria: when to stop labeling (pure core: numpy, scipy and scikit-learn only).

Each criterion is a stateful object fed one :class:`Observation` per round through
:meth:`~StoppingCriterion.update`, returning a :class:`StopDecision`. Its state is JSON
(:meth:`~StoppingCriterion.state_dict`), so a resumed loop restores it.

In a project, ``[stopping]`` tables are validated first by one pydantic model per criterion
(``exemplar.loop.config``: a union discriminated by ``name``, one model per entry of
:data:`STOPPING_CRITERIA`), which builds the criterion through :func:`make_criterion`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from exemplar.errors import ConfigError
from exemplar.stopping.base import (
    InvalidObservationError,
    MissingObservationError,
    Observation,
    StopDecision,
    StoppingCriterion,
    StoppingError,
)
from exemplar.stopping.budget import LabelBudget
from exemplar.stopping.combine import AllOf, AnyOf
from exemplar.stopping.kpi import KPIReached
from exemplar.stopping.plateau import ValidationPlateau
from exemplar.stopping.stabilizing import StabilizingPredictions
from exemplar.stopping.uncertainty import UncertaintyThreshold

__all__ = [
    "STOPPING_CRITERIA",
    "AllOf",
    "AnyOf",
    "InvalidObservationError",
    "KPIReached",
    "LabelBudget",
    "MissingObservationError",
    "Observation",
    "StabilizingPredictions",
    "StopDecision",
    "StoppingCriterion",
    "StoppingError",
    "UncertaintyThreshold",
    "ValidationPlateau",
    "make_criterion",
]

#: Registry name -> criterion class (combinators included; build those with make_criterion).
STOPPING_CRITERIA: dict[str, type[StoppingCriterion]] = {
    cls.name: cls
    for cls in (
        LabelBudget,
        StabilizingPredictions,
        UncertaintyThreshold,
        ValidationPlateau,
        KPIReached,
        AnyOf,
        AllOf,
    )
}


def make_criterion(spec: StoppingCriterion | Mapping[str, Any]) -> StoppingCriterion:
    """Build a criterion from a config mapping such as ``{"name": "label_budget", "budget": 200}``.

    Combinators take their children as a list of such mappings under ``"criteria"``::

        {"name": "any_of", "criteria": [{"name": "stabilizing_predictions"},
                                        {"name": "label_budget", "budget": 500}]}

    Parameters
    ----------
    spec : mapping or StoppingCriterion
        ``"name"`` (a key of :data:`STOPPING_CRITERIA`) plus the criterion's ``__init__``
        parameters. A criterion object is returned as is.

    Returns
    -------
    StoppingCriterion

    Raises
    ------
    ConfigError
        On an unknown name, an unknown or missing parameter, or an invalid value.
    """
    if isinstance(spec, StoppingCriterion):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a stopping criterion is configured by a table, got {spec!r}")
    params = dict(spec)
    name = params.pop("name", None)
    if name not in STOPPING_CRITERIA:
        raise ConfigError(
            f"unknown stopping criterion {name!r}; choose one of "
            f"{', '.join(sorted(STOPPING_CRITERIA))}"
        )
    cls = STOPPING_CRITERIA[name]
    if issubclass(cls, (AnyOf, AllOf)) and "criteria" in params:
        children = params["criteria"]
        if isinstance(children, (str, Mapping)) or not isinstance(children, (list, tuple)):
            raise ConfigError(f"{name}.criteria must be a list of stopping criteria")
        params["criteria"] = [make_criterion(child) for child in children]
    signature = inspect.signature(cls.__init__)
    allowed = [p for p in signature.parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"stopping criterion {name!r} has no parameter(s) {', '.join(map(repr, unknown))} "
            f"(parameters: {', '.join(allowed)})"
        )
    try:
        signature.bind(None, **params)
    except TypeError as exc:
        raise ConfigError(
            f"stopping criterion {name!r}: {exc} (parameters: {', '.join(allowed)})"
        ) from exc
    return cls(**params)
