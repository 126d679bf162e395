"""Name → strategy lookup for configs and the CLI, and the evidence-chosen default."""

from __future__ import annotations

from typing import Any

from exemplar.errors import ConfigError
from exemplar.strategies.base import Strategy

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "get_strategy", "register"]

#: Registered strategy classes by name (filled by :func:`register` at import time).
STRATEGIES: dict[str, type[Strategy]] = {}

#: What ``"default"`` resolves to. Chosen from the paired simulations in docs/benchmarks.md.
DEFAULT_STRATEGY = "uncertain_diverse"


def register(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy class to :data:`STRATEGIES` under its ``name``."""
    if cls.name in STRATEGIES and STRATEGIES[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} registered twice")
    STRATEGIES[cls.name] = cls
    return cls


def get_strategy(name: str, **params: Any) -> Strategy:
    """Build a strategy by registry name (``"default"`` gives the default strategy)."""
    key = DEFAULT_STRATEGY if name == "default" else name
    try:
        cls = STRATEGIES[key]
    except KeyError:
        raise ConfigError(
            f"unknown strategy {name!r}; choose one of: default, {', '.join(sorted(STRATEGIES))}"
        ) from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for strategy {key!r}: {exc}") from None
