"""Oracles turn selected items into labels (DESIGN.md §2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from exemplar.errors import ConfigError, InvalidIndicesError

__all__ = ["Oracle", "SimulatedOracle", "noisy_label"]


class Oracle(Protocol):
    """Anything that can label a batch of item indices."""

    def query(self, indices: np.ndarray) -> np.ndarray: ...


class SimulatedOracle:
    """Reveal ground-truth labels, one selected item at a time, with optional noise and cost.

    The oracle holds the ground truth; nothing else in a simulation reads it, so a strategy
    sees a label only after selecting the item, exactly as with a human annotator.

    Parameters
    ----------
    y_true : ndarray
        Ground-truth label of every item.
    noise_rate : float, default=0
        Probability that a revealed label is replaced by a different class, uniformly.
    cost_per_label : float, default=0
        Added to :attr:`total_cost` for every label revealed.
    random_state : int, optional
        Seed for the noise.
    """

    def __init__(
        self,
        y_true: np.ndarray,
        noise_rate: float = 0.0,
        cost_per_label: float = 0.0,
        random_state: int | None = None,
    ) -> None:
        if not 0.0 <= noise_rate < 1.0:
            raise ConfigError(f"noise_rate must be in [0, 1), got {noise_rate}")
        if cost_per_label < 0:
            raise ConfigError(f"cost_per_label must be >= 0, got {cost_per_label}")
        self._y = np.asarray(y_true)
        self._classes = np.unique(self._y)
        self.noise_rate = noise_rate
        self.cost_per_label = cost_per_label
        self._rng = np.random.default_rng(random_state)
        self.n_queries = 0

    @property
    def total_cost(self) -> float:
        """Cost of every label revealed so far."""
        return self.n_queries * self.cost_per_label

    def query(self, indices: np.ndarray) -> np.ndarray:
        """Labels of ``indices``, possibly corrupted by noise."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self._y.size):
            raise InvalidIndicesError(f"oracle asked for an index outside 0..{self._y.size - 1}")
        labels = self._y[idx].copy()
        if self.noise_rate > 0:
            for pos in range(idx.size):
                labels[pos] = noisy_label(
                    labels[pos], self._classes.tolist(), self.noise_rate, self._rng
                )
        self.n_queries += idx.size
        return labels


def noisy_label(
    truth: Any, classes: Sequence[Any], noise_rate: float, rng: np.random.Generator
) -> Any:
    """``truth``, or with probability ``noise_rate`` a different class chosen uniformly."""
    if noise_rate <= 0 or rng.random() >= noise_rate:
        return truth
    others = [c for c in classes if c != truth]
    return others[int(rng.integers(len(others)))] if others else truth
