"""Shared helpers for committee (query-by-committee and Bayesian) strategies.

Stochastic samples ``(t, n, c)`` are read one member (one ``(n, c)`` slice) at a time, so
the only temporaries are of size ``n * c``, never ``t * n * c``, and a memory-mapped
sample array is streamed from disk once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from exemplar.errors import InvalidPredictionsError

__all__ = ["EPS", "iter_members", "vote_counts"]

#: Floor applied to probabilities before taking a logarithm.
EPS = 1e-12


def _tolerance(dtype: np.dtype, n_classes: int) -> float:
    """Allowed deviation of a row sum from one (1e-3, looser for low-precision floats)."""
    if np.issubdtype(dtype, np.floating):
        return max(1e-3, 10.0 * n_classes * float(np.finfo(dtype).eps))
    return 1e-3


def _check_member(member: np.ndarray, index: int) -> None:
    """Raise InvalidPredictionsError unless every row of ``member`` is a distribution."""
    n_classes = member.shape[1]
    if member.shape[0] == 0:
        return
    low = float(member.min())
    if low < -1e-6:
        raise InvalidPredictionsError(
            f"samples[{index}] contains a negative probability ({low:.3g}); stochastic "
            "samples must be class probabilities (apply a softmax to logits)"
        )
    sums = member.sum(axis=1, dtype=np.float64)
    dev = np.abs(sums - 1.0)
    worst = int(np.argmax(dev))
    if dev[worst] > _tolerance(member.dtype, n_classes):
        raise InvalidPredictionsError(
            f"samples[{index}] row {worst} sums to {sums[worst]:.6g}, not 1; stochastic "
            "samples must be class probabilities (apply a softmax to logits)"
        )


def iter_members(samples: np.ndarray) -> Iterator[np.ndarray]:
    """Yield each committee member's ``(n, c)`` probabilities as float64, validated.

    Parameters
    ----------
    samples : ndarray of shape (t, n, c)
        Finite stochastic samples, as returned by
        :meth:`~exemplar.predictions.Predictions.require_samples`.

    Yields
    ------
    ndarray of shape (n, c), float64
        One member at a time (a converted copy of one slice, never of the whole array).

    Raises
    ------
    InvalidPredictionsError
        If a row has a negative entry or does not sum to one.
    """
    for index in range(samples.shape[0]):
        member = np.asarray(samples[index])
        _check_member(member, index)
        yield member.astype(np.float64, copy=False)


def vote_counts(samples: np.ndarray) -> np.ndarray:
    """Count each member's hard vote per item, by column position.

    Votes are the ``argmax`` column of each member's row (ties go to the first column).
    Counting by column position, not by class label, keeps labels that are not
    ``0..k-1`` (strings, gaps) working.

    Parameters
    ----------
    samples : ndarray of shape (t, n, c)
        Finite stochastic samples.

    Returns
    -------
    ndarray of shape (n, c), int64
        ``counts[i, j]`` is the number of members whose top column for item ``i`` is ``j``;
        each row sums to ``t``.

    Raises
    ------
    InvalidPredictionsError
        If a row has a negative entry or does not sum to one.
    """
    _, n, c = samples.shape
    counts = np.zeros((n, c), dtype=np.int64)
    rows = np.arange(n)
    for index in range(samples.shape[0]):
        member = np.asarray(samples[index])
        _check_member(member, index)
        counts[rows, np.argmax(member, axis=1)] += 1
    return counts
