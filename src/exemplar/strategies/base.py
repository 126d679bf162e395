"""The strategy contract: predictions and index sets in, a batch of indices (and scores) out.

Every strategy follows small-text's loop contract and scikit-activeml's query signature
(DESIGN.md §8): it receives the model's :class:`~exemplar.predictions.Predictions` for the
whole dataset plus the unlabeled and labeled index sets, and returns dataset indices.
It never returns a labeled or duplicate index, and it raises a specific
:class:`~exemplar.errors.StrategyError` on inputs it cannot use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar, Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from exemplar.errors import (
    BatchTooLargeError,
    EmptyPoolError,
    InvalidIndicesError,
    InvalidPredictionsError,
    SingleClassError,
    StrategyError,
)
from exemplar.predictions import Predictions

__all__ = [
    "QueryContext",
    "ReducedSamples",
    "ScoredPool",
    "ScoringStrategy",
    "Strategy",
    "TopRows",
    "as_rng",
    "top_k",
]

RandomState = int | np.random.Generator | None


def as_rng(random_state: RandomState) -> np.random.Generator:
    """Turn a seed, a Generator or None into a Generator (a Generator is used as is)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first, without a full sort.

    ``np.partition`` finds the ``k``-th largest score in O(n); only the ``k`` kept are then
    sorted. Ties are broken by position, also at the cut: of equal scores, the lower
    positions are kept, so a top list merged chunk by chunk gives the same result.
    """
    n = scores.shape[0]
    if k >= n:
        return np.argsort(-scores, kind="stable")
    kth = np.partition(scores, n - k)[n - k]
    above = np.flatnonzero(scores > kth)
    keep = np.concatenate([above, np.flatnonzero(scores == kth)[: k - above.size]])
    order = np.lexsort((keep, -scores[keep]))
    return keep[order]


@dataclass(frozen=True, slots=True)
class ReducedSamples:
    """Stochastic samples ``(t, n, c)`` reduced while a pool is scored chunk by chunk.

    Streaming scoring (:func:`exemplar.loop.score_pool`) keeps this instead of the whole
    samples array, so memory does not grow with ``t × n × c`` (DESIGN.md §4). Only a
    :class:`ScoringStrategy` reads it.

    Attributes
    ----------
    utility : ndarray of shape (n_items,)
        The strategy's row-wise :meth:`~ScoringStrategy.utility` of every dataset row.
    rows : ndarray of int64, shape (m,), optional
        Candidate rows whose samples are kept, best utility first (``candidate_pool`` of them).
    samples : ndarray of shape (t, m, c), optional
        Stochastic samples of ``rows``, in the same order.
    """

    utility: np.ndarray
    rows: np.ndarray | None = None
    samples: np.ndarray | None = None


class TopRows:
    """The ``size`` eligible rows of highest utility seen so far, and their samples.

    The running candidate list of a strategy's ``candidate_pool`` (BatchBALD), merged chunk
    by chunk while a pool is scored (:func:`exemplar.loop.score_pool`, and per task in
    :func:`exemplar.engines.score_pool_ray`). Rows are kept best first; ties go to the lower
    row, as :func:`top_k` over the whole pool would break them.

    Parameters
    ----------
    size : int
        How many rows to keep.
    n : int
        Number of rows in the pool (for ``eligible``).
    eligible : array of int, optional
        The only rows that may be kept (the unlabeled ones); all rows when None. A chunk's
        own mask can be given to :meth:`add` instead.
    """

    def __init__(self, size: int, n: int = 0, eligible: np.ndarray | None = None) -> None:
        self.size = size
        self.mask: np.ndarray | None = None
        if eligible is not None:
            self.mask = np.zeros(n, dtype=bool)
            self.mask[np.asarray(eligible, dtype=np.int64)] = True
        self.rows = np.empty(0, dtype=np.int64)
        self.utility = np.empty(0)
        self.samples: np.ndarray | None = None

    def add(
        self,
        start: int,
        utility: np.ndarray,
        samples: np.ndarray,
        eligible: np.ndarray | None = None,
    ) -> None:
        """Merge one chunk (rows ``start ...``) into the running top list.

        ``eligible`` is the chunk's boolean mask of rows that may be kept; by default the
        slice of the mask given at construction (all rows when there is none).
        """
        if eligible is None and self.mask is not None:
            eligible = self.mask[start : start + utility.size]
        local = np.arange(utility.size) if eligible is None else np.flatnonzero(eligible)
        local = local[top_k(utility[local], self.size)] if local.size else local
        chunk_samples = np.asarray(samples[:, local])
        if self.samples is None:
            t, _, c = chunk_samples.shape
            self.samples = np.empty((t, 0, c), dtype=chunk_samples.dtype)
        rows = np.concatenate([self.rows, start + local])
        scores = np.concatenate([self.utility, utility[local]])
        keep = top_k(scores, self.size) if scores.size else np.empty(0, dtype=np.int64)
        merged = np.concatenate([self.samples, chunk_samples], axis=1)
        self.rows, self.utility, self.samples = rows[keep], scores[keep], merged[:, keep]


@dataclass(frozen=True)
class ScoredPool:
    """What scoring keeps of a pool, ready for :func:`~exemplar.loop.query_batch`.

    Made by :func:`exemplar.loop.score_pool` (in this process) and
    :func:`exemplar.engines.score_pool_ray` (on a Ray cluster); it lives here, beside
    :class:`ReducedSamples`, so both layers can build it.

    Attributes
    ----------
    predictions : Predictions
        ``proba`` for every row, ``embeddings`` (memory-mapped) if the strategy reads them,
        and ``samples`` only for a strategy that cannot use a reduction.
    reduced : ReducedSamples or None
        The reduction of the samples, for a scoring strategy that reads samples.
    """

    predictions: Predictions
    reduced: ReducedSamples | None = None


@dataclass(frozen=True, slots=True)
class QueryContext:
    """Validated inputs of one query, handed to :meth:`Strategy._select`.

    Attributes
    ----------
    predictions : Predictions or None
        Model outputs aligned with dataset rows (None only for strategies that need none).
    unlabeled : ndarray of int64
        Candidate dataset indices, unique, disjoint from ``labeled``.
    labeled : ndarray of int64
        Labeled dataset indices.
    batch_size : int
        Number of indices to return, ``1 <= batch_size <= len(unlabeled)``.
    y_labeled : ndarray or None
        Labels of ``labeled`` (same order), when the caller provides them.
    rng : numpy.random.Generator
        The seeded random generator for this query.
    reduced : ReducedSamples or None
        Samples already reduced by streaming scoring, when the caller passed them.
    """

    predictions: Predictions | None
    unlabeled: np.ndarray
    labeled: np.ndarray
    batch_size: int
    y_labeled: np.ndarray | None
    rng: np.random.Generator
    reduced: ReducedSamples | None = None


class Strategy(ABC):
    """Base class of all query strategies.

    Subclasses set the class attributes below and implement :meth:`_select`.
    Hyper-parameters go in ``__init__`` (scikit-learn convention: stored, not processed).
    """

    #: Registry name used by the CLI and configs (e.g. ``"margin"``).
    name: ClassVar[str]
    #: One line describing what the strategy prefers.
    summary: ClassVar[str]
    #: Short citation of the paper the strategy comes from.
    reference: ClassVar[str]
    #: Prediction outputs read: any of ``"proba"``, ``"samples"``, ``"embeddings"``.
    requires: ClassVar[frozenset[str]] = frozenset({"proba"})
    #: True if the strategy works with no (or single-class) labels, e.g. for a cold start.
    cold_start: ClassVar[bool] = False

    @overload
    def query(
        self,
        predictions: Predictions | None,
        unlabeled: ArrayLike | None = ...,
        labeled: ArrayLike | None = ...,
        batch_size: int = ...,
        *,
        y_labeled: ArrayLike | None = ...,
        random_state: RandomState = ...,
        return_scores: Literal[False] = ...,
        reduced: ReducedSamples | None = ...,
    ) -> np.ndarray: ...

    @overload
    def query(
        self,
        predictions: Predictions | None,
        unlabeled: ArrayLike | None = ...,
        labeled: ArrayLike | None = ...,
        batch_size: int = ...,
        *,
        y_labeled: ArrayLike | None = ...,
        random_state: RandomState = ...,
        return_scores: Literal[True],
        reduced: ReducedSamples | None = ...,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def query(
        self,
        predictions: Predictions | None,
        unlabeled: ArrayLike | None = None,
        labeled: ArrayLike | None = None,
        batch_size: int = 1,
        *,
        y_labeled: ArrayLike | None = None,
        random_state: RandomState = None,
        return_scores: bool = False,
        reduced: ReducedSamples | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Select ``batch_size`` items to label next.

        Parameters
        ----------
        predictions : Predictions or None
            Model outputs for every dataset row (row ``i`` is item ``i``).
        unlabeled : array-like of int, optional
            Candidate indices. Defaults to every row not in ``labeled``.
        labeled : array-like of int, optional
            Indices already labeled. Defaults to none.
        batch_size : int, default=1
            How many items to select.
        y_labeled : array-like, optional
            Labels of ``labeled``; used by class-aware strategies and to reject a
            single-class labeled set early.
        random_state : int, Generator or None
            Seed for any randomness; the same seed gives the same batch.
        return_scores : bool, default=False
            Also return one score per ``unlabeled`` item (higher means preferred).
        reduced : ReducedSamples, optional
            Samples reduced by streaming scoring (:func:`exemplar.loop.score_pool`), read
            instead of ``predictions.samples``; only for a :class:`ScoringStrategy`.

        Returns
        -------
        indices : ndarray of int64, shape (batch_size,)
            Selected dataset indices, in selection order (best first).
        scores : ndarray of float, shape (len(unlabeled),)
            Only if ``return_scores``; aligned with ``unlabeled``.

        Raises
        ------
        EmptyPoolError, BatchTooLargeError, InvalidIndicesError, InvalidPredictionsError,
        MissingPredictionsError, SingleClassError
        """
        ctx = self._context(predictions, unlabeled, labeled, batch_size, y_labeled, random_state)
        if reduced is not None:
            ctx = replace(ctx, reduced=self._check_reduced(reduced, ctx))
        indices, scores = self._select(ctx)
        indices = np.asarray(indices, dtype=np.int64)
        if return_scores:
            return indices, np.asarray(scores, dtype=np.float64)
        return indices

    @abstractmethod
    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        """Return (selected dataset indices, scores aligned with ``ctx.unlabeled``)."""

    def _context(
        self,
        predictions: Predictions | None,
        unlabeled: ArrayLike | None,
        labeled: ArrayLike | None,
        batch_size: int,
        y_labeled: ArrayLike | None,
        random_state: RandomState,
    ) -> QueryContext:
        if predictions is None and self.requires:
            raise StrategyError(
                f"strategy {self.name!r} needs predictions ({', '.join(sorted(self.requires))})"
            )
        n_items = predictions.n_items if predictions is not None else None
        lab = _as_indices(labeled, "labeled")
        if unlabeled is None:
            if n_items is None:
                raise StrategyError("pass `unlabeled` when no predictions are given")
            mask = np.ones(n_items, dtype=bool)
            mask[lab] = False
            unl = np.flatnonzero(mask)
        else:
            unl = _as_indices(unlabeled, "unlabeled")
        _check_indices(unl, lab, n_items)
        if unl.size == 0:
            raise EmptyPoolError("the unlabeled pool is empty: every item is labeled")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise StrategyError(f"batch_size must be an integer, got {batch_size!r}")
        if batch_size < 1:
            raise StrategyError(f"batch_size must be at least 1, got {batch_size}")
        if batch_size > unl.size:
            raise BatchTooLargeError(
                f"batch_size {batch_size} is larger than the unlabeled pool ({unl.size} items)"
            )
        y = None
        if y_labeled is not None:
            y = np.asarray(y_labeled)
            if y.shape[0] != lab.size:
                raise InvalidIndicesError(
                    f"y_labeled has {y.shape[0]} labels for {lab.size} labeled indices"
                )
            if not self.cold_start and lab.size > 0 and np.unique(y).size < 2:
                raise SingleClassError(
                    f"the labeled set holds a single class ({y[0].item()!r}); strategy {self.name!r} "
                    "needs at least two classes (label more, or start with 'random' or 'typiclust')"
                )
        return QueryContext(predictions, unl, lab, int(batch_size), y, as_rng(random_state))

    @property
    def row_scorer(self) -> ScoringStrategy | None:
        """The row-wise strategy whose utility streaming scoring keeps for this strategy
        (:class:`ReducedSamples`), or None when it reads whole arrays."""
        return None

    def _check_reduced(self, reduced: ReducedSamples, ctx: QueryContext) -> ReducedSamples:
        if self.row_scorer is None:
            raise StrategyError(f"strategy {self.name!r} reads whole samples, not reduced ones")
        n_items = ctx.predictions.n_items if ctx.predictions is not None else None
        if np.shape(reduced.utility) != (n_items,):
            raise InvalidPredictionsError(
                f"reduced utility has shape {np.shape(reduced.utility)}, expected ({n_items},)"
            )
        if not np.isfinite(reduced.utility[ctx.unlabeled]).all():
            raise InvalidPredictionsError("reduced utility contains NaN or infinite values")
        if (reduced.rows is None) != (reduced.samples is None):
            raise InvalidPredictionsError("reduced samples must come with their rows")
        rows, samples = reduced.rows, reduced.samples
        if rows is not None and samples is not None and samples.shape[1:2] != (len(rows),):
            raise InvalidPredictionsError("reduced samples must have shape (t, len(rows), c)")
        return reduced


class ScoringStrategy(Strategy):
    """A strategy that scores each item independently and takes the top ``batch_size``.

    Subclasses implement :meth:`utility`, a row-wise function, so a scorer can also
    apply it chunk by chunk over a pool that does not fit in memory. That row-wise
    reduction is how a strategy that reads stochastic samples is scored in bounded
    memory: the scorer keeps one utility per item (:class:`ReducedSamples`), and, for a
    strategy that sets :attr:`candidate_pool` (BatchBALD), the samples of that many
    top-utility candidates.
    """

    #: Top-utility unlabeled rows whose samples ``_select`` also reads (0: utility only).
    candidate_pool: int = 0

    @property
    def row_scorer(self) -> ScoringStrategy:
        """A scoring strategy's reduction is its own utility."""
        return self

    @abstractmethod
    def utility(self, predictions: Predictions) -> np.ndarray:
        """One score per row of ``predictions``; higher means more worth labeling."""

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        scores = self._unlabeled_utility(ctx)
        return ctx.unlabeled[top_k(scores, ctx.batch_size)], scores

    def _unlabeled_utility(self, ctx: QueryContext) -> np.ndarray:
        """Utility of ``ctx.unlabeled``: precomputed by streaming scoring, or computed here."""
        if ctx.reduced is not None:
            return np.asarray(ctx.reduced.utility[ctx.unlabeled])
        assert ctx.predictions is not None
        preds = ctx.predictions
        if preds.embeddings is not None and "embeddings" not in self.requires:
            preds = replace(preds, embeddings=None)  # take() would copy them for nothing
        return self.utility(preds.take(ctx.unlabeled))


def _as_indices(values: ArrayLike | None, name: str) -> np.ndarray:
    if values is None:
        return np.empty(0, dtype=np.int64)
    arr = np.asarray(values)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype == bool:
        return np.flatnonzero(arr)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidIndicesError(
            f"{name} must be a 1-d array of integer indices, got dtype {arr.dtype}"
        )
    return arr.astype(np.int64, copy=False)


def _check_indices(unl: np.ndarray, lab: np.ndarray, n_items: int | None) -> None:
    for name, arr in (("unlabeled", unl), ("labeled", lab)):
        if arr.size and arr.min() < 0:
            raise InvalidIndicesError(f"{name} contains a negative index ({int(arr.min())})")
        if arr.size and n_items is not None and arr.max() >= n_items:
            raise InvalidIndicesError(
                f"{name} contains index {int(arr.max())}, but predictions cover {n_items} items"
            )
    size = int(max(unl.max(initial=-1), lab.max(initial=-1))) + 1
    counts = np.bincount(unl, minlength=size) if unl.size else np.zeros(size, np.int64)
    if unl.size and counts.max() > 1:
        raise InvalidIndicesError(f"unlabeled contains duplicate index {int(np.argmax(counts))}")
    if lab.size and unl.size:
        overlap = counts[lab] > 0
        if overlap.any():
            raise InvalidIndicesError(
                f"index {int(lab[np.argmax(overlap)])} is both labeled and unlabeled"
            )
