"""Row-wise helpers over class-probability matrices, shared by the uncertainty strategies."""

from __future__ import annotations

import numpy as np

__all__ = ["EPS", "as_float32", "entropy_rows", "top2"]

#: Floor for probabilities inside logarithms and divisions.
EPS = np.float32(1e-12)


def as_float32(proba: np.ndarray) -> np.ndarray:
    """The probabilities as float32 (no copy when they already are)."""
    return proba.astype(np.float32, copy=False)


#: Rows per block of :func:`top2`'s column loop (a block's columns stay in cache).
_TOP2_BLOCK = 16_384


def top2(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest and second-largest probability of each row, without a full sort.

    With up to 64 columns, a running maximum over the columns, block by block, is faster
    than ``np.partition`` along the rows (0.08 s against 0.11 s for 10^6 x 10 float32);
    with more, ``np.partition``.
    """
    n, c = proba.shape
    if c < 2 or c > 64:
        part = np.partition(proba, -2, axis=1)
        return part[:, -1], part[:, -2]
    first = np.empty(n, dtype=proba.dtype)
    second = np.empty(n, dtype=proba.dtype)
    tmp = np.empty(min(n, _TOP2_BLOCK), dtype=proba.dtype)
    for start in range(0, n, _TOP2_BLOCK):
        block = proba[start : start + _TOP2_BLOCK]
        f, s, t = first[start : start + _TOP2_BLOCK], second[start : start + _TOP2_BLOCK], tmp
        t = t[: f.size]
        np.maximum(block[:, 0], block[:, 1], out=f)
        np.minimum(block[:, 0], block[:, 1], out=s)
        for j in range(2, c):
            column = block[:, j]
            np.minimum(f, column, out=t)  # what the new column pushes down to second
            np.maximum(s, t, out=s)
            np.maximum(f, column, out=f)
    return first, second


def entropy_rows(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a probability matrix."""
    p = np.clip(proba, EPS, 1.0)
    return -(proba * np.log(p)).sum(axis=1)
