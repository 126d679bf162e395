"""The utility of one arriving item: how uncertain the current model is about it."""

from __future__ import annotations

import numpy as np

__all__ = ["uncertainty"]


def uncertainty(proba: np.ndarray) -> np.ndarray:
    """Normalized least confidence of each row of ``proba``, in [0, 1].

    ``(1 - max_k p_k) / (1 - 1/c)`` for ``c`` classes: 0 when the model is certain, 1 when
    its probabilities are uniform. The uncertainty strategies of Žliobaitė et al. (2014)
    compare the top posterior with a threshold; normalizing puts thresholds on one scale
    whatever the number of classes.

    Parameters
    ----------
    proba : ndarray of shape (n, c) or (c,)
        Class probabilities (rows sum to one).

    Returns
    -------
    ndarray of shape (n,)
    """
    p = np.atleast_2d(np.asarray(proba, dtype=np.float64))
    c = p.shape[1]
    if c < 2:
        return np.zeros(p.shape[0])
    out = (1.0 - p.max(axis=1)) / (1.0 - 1.0 / c)
    return np.clip(out, 0.0, 1.0)
