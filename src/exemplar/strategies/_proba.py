"""Row-wise helpers over class-probability matrices, shared by the uncertainty strategies."""

from __future__ import annotations

import numpy as np

__all__ = ["EPS", "as_float32", "entropy_rows", "top2"]

#: Floor for probabilities inside logarithms and divisions.
EPS = np.float32(1e-12)


def as_float32(proba: np.ndarray) -> np.ndarray:
    """The probabilities as float32 (no copy when they already are)."""
    return proba.astype(np.float32, copy=False)


def top2(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest and second-largest probability of each row, without a full sort."""
    part = np.partition(proba, -2, axis=1)
    return part[:, -1], part[:, -2]


def entropy_rows(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a probability matrix."""
    p = np.clip(proba, EPS, 1.0)
    return -(proba * np.log(p)).sum(axis=1)
