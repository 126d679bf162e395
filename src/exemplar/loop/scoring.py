"""The Scorer: predict a pool chunk by chunk and keep only what the strategy reads.

Memory for scoring is bounded by the chunk size, not by the pool size (DESIGN.md §4).
``model.predict`` sees at most ``chunk_size`` rows at a time, and of each chunk's outputs
only these are kept:

- class probabilities, ``(n, c)`` float32 (the loop's stopping criteria read them);
- embeddings, ``(n, d)``, written to a memory-mapped file on disk, when the strategy reads them;
- for a strategy that reads stochastic samples ``(t, n, c)``, never the samples themselves
  but their reduction (:class:`~exemplar.strategies.ReducedSamples`): the strategy's
  row-wise utility of every item and, when it sets ``candidate_pool`` (BatchBALD), the samples
  of that many unlabeled items of highest utility, a running top list merged chunk by chunk.

A strategy that reads samples without a row-wise utility (not a
:class:`~exemplar.strategies.ScoringStrategy`) gets the whole samples array, memory-mapped
on disk like the embeddings.

A detector's chunk outputs are objects (:class:`~exemplar.objects.ObjectPredictions`), not
class probabilities. Of them only each item's expected object count (``counts``) and the
strategy's row-wise utility are kept, so scoring a pool of tiles also runs in memory bounded
by the chunk size; the boxes of the items a cycle queues are predicted again at selection,
as proposals.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from exemplar.errors import ModelError
from exemplar.models.base import DEFAULT_CHUNK_SIZE, ModelAdapter
from exemplar.objects import ObjectPredictions
from exemplar.predictions import Predictions, check_outputs
from exemplar.store.arrays import ArrayStore
from exemplar.strategies.base import ReducedSamples, ScoredPool, Strategy, TopRows

__all__ = ["SCORED_KINDS", "ScoredPool", "drop_scored", "load_scored", "save_scored", "score_pool"]

#: Per-model-version arrays a project stores (``arrays/<kind>-<version>.npy``), proba first.
SCORED_KINDS = (
    "proba",
    "counts",
    "embeddings",
    "samples",
    "utility",
    "candidates",
    "candidate-samples",
)


def save_scored(arrays: ArrayStore, version: str, scored: ScoredPool) -> None:
    """Store what scoring kept for model ``version`` (a reduction, never whole samples,
    for a scoring strategy)."""
    pred, reduced = scored.predictions, scored.reduced
    kept = {
        "proba": pred.proba,
        "counts": pred.counts,
        "embeddings": pred.embeddings,
        "samples": pred.samples,
    }
    if reduced is not None:
        kept |= {
            "utility": reduced.utility,
            "candidates": reduced.rows,
            "candidate-samples": reduced.samples,
        }
    for kind, array in kept.items():
        if array is not None:
            arrays.save(f"{kind}-{version}", array)


def load_scored(arrays: ArrayStore, version: str) -> ScoredPool:
    """What :func:`save_scored` stored for model ``version``, memory-mapped.

    Raises
    ------
    StoreError
        Neither the probabilities nor the object counts of ``version`` are stored.
    """
    found = {
        kind: arrays.load(f"{kind}-{version}")
        for kind in SCORED_KINDS[2:]
        if arrays.exists(f"{kind}-{version}")
    }
    objects = arrays.exists(f"counts-{version}")  # a detector's scores
    predictions = Predictions(
        proba=None if objects else arrays.load(f"proba-{version}"),
        counts=arrays.load(f"counts-{version}") if objects else None,
        embeddings=found.get("embeddings"),
        samples=found.get("samples"),
    )
    reduced = None
    if "utility" in found:
        reduced = ReducedSamples(
            found["utility"], found.get("candidates"), found.get("candidate-samples")
        )
    return ScoredPool(predictions, reduced)


def drop_scored(arrays: ArrayStore, version: str) -> None:
    """Delete every array stored for model ``version``."""
    for kind in SCORED_KINDS:
        arrays.delete(f"{kind}-{version}")


def score_pool(
    model: ModelAdapter | None,
    X: np.ndarray,
    strategy: Strategy,
    *,
    unlabeled: np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    tmp_dir: str | Path | None = None,
    objects: bool | None = None,
) -> ScoredPool:
    """Predict every row of ``X`` in chunks and keep what ``strategy`` reads.

    Parameters
    ----------
    model : ModelAdapter
        A fitted model.
    X : ndarray of shape (n, ...)
        The rows to score (an array or a memory map; only row slices are read).
    strategy : Strategy
        Decides what is predicted and kept (its ``requires`` and ``candidate_pool``).
    unlabeled : ndarray of int, optional
        Rows that may be selected: only these become candidates. Defaults to every row.
    chunk_size : int, default=65536
        Rows predicted at once; bounds peak memory.
    tmp_dir : path, optional
        Folder of the (unlinked) files behind memory-mapped outputs; defaults to the
        system's temporary folder.
    objects : bool, optional
        Whether the model is a detector (its outputs are objects). Default: the model's
        ``finds_objects`` attribute, else False.

    Returns
    -------
    ScoredPool

    Raises
    ------
    ModelError
        If there is no model, or it returns outputs that do not match the rows asked for.
    """
    if model is None:
        raise ModelError(f"strategy {strategy.name!r} needs a fitted model")
    if chunk_size < 1:
        raise ModelError(f"chunk_size must be at least 1, got {chunk_size}")
    n = X.shape[0]
    # A detector's outputs are objects, not class probabilities.
    finds_objects = bool(getattr(model, "finds_objects", False)) if objects is None else objects
    # A strategy reads samples (and objects) through a row-wise utility when it has one
    # (its own, or its pre-filter's), kept chunk by chunk.
    reduces = "samples" in strategy.requires or "objects" in strategy.requires
    scorer = strategy.row_scorer if reduces else None
    # An object strategy names the detector's extra passes it reads (``object_passes``).
    passes = strategy.requires | getattr(scorer or strategy, "object_passes", frozenset())
    want_samples = "samples" in passes
    want_embeddings = "embeddings" in strategy.requires
    extra = {"views": True} if "views" in passes else {}
    top = None
    if scorer is not None and scorer.candidate_pool > 0 and not finds_objects:
        top = TopRows(scorer.candidate_pool, n, unlabeled)
    proba = counts = utility = embeddings = samples = None
    embeddings_are_x = want_embeddings  # an adapter may return the feature rows themselves
    for start in range(0, n, chunk_size):
        block = X[start : start + chunk_size]
        stop = start + block.shape[0]
        pred = model.predict(block, samples=want_samples, embeddings=want_embeddings, **extra)
        check_outputs(pred, block.shape[0], want_samples, want_embeddings, finds_objects)
        if finds_objects:
            assert pred.objects is not None
            if counts is None:
                counts = np.empty(n, dtype=np.float32)
            counts[start:stop] = _object_counts(pred.objects)
        else:
            assert pred.proba is not None
            if proba is None:
                proba = np.empty((n, pred.proba.shape[1]), dtype=np.float32)
            proba[start:stop] = pred.proba
        if pred.embeddings is not None:
            embeddings_are_x &= pred.embeddings is block
            if not embeddings_are_x:
                if embeddings is None:
                    shape = (n, *pred.embeddings.shape[1:])
                    embeddings = _disk_array(shape, pred.embeddings.dtype, tmp_dir)
                    if start:  # earlier chunks' embeddings were their rows
                        embeddings[:start] = X[:start]
                embeddings[start:stop] = pred.embeddings
        if scorer is not None:
            block_utility = np.asarray(scorer.utility(pred))
            if utility is None:
                utility = np.empty(n, dtype=block_utility.dtype)
            utility[start:stop] = block_utility
            if top is not None:
                assert pred.samples is not None
                top.add(start, block_utility, pred.samples)
        elif pred.samples is not None and not finds_objects:
            if samples is None:
                t, _, c = pred.samples.shape
                samples = _disk_array((t, n, c), pred.samples.dtype, tmp_dir)
            samples[:, start:stop] = pred.samples
    if finds_objects:
        if counts is None:  # an empty pool
            counts = np.empty(0, dtype=np.float32)
    elif proba is None:  # an empty pool
        proba = np.empty((0, np.asarray(model.classes_).size), dtype=np.float32)
    predictions = Predictions(
        proba=proba,
        counts=counts,
        samples=samples,
        embeddings=X if embeddings_are_x else embeddings,
        classes=np.asarray(model.classes_),
    )
    reduced = None
    if scorer is not None:
        reduced = ReducedSamples(
            utility if utility is not None else np.empty(0),
            None if top is None else top.rows,
            None if top is None else top.samples,
        )
    return ScoredPool(predictions, reduced)


def _disk_array(shape: tuple[int, ...], dtype: np.dtype, tmp_dir: str | Path | None) -> np.ndarray:
    """A zeroed array backed by an unlinked temporary file (freed with its last reference)."""
    with tempfile.TemporaryFile(dir=tmp_dir) as fh:
        return np.memmap(fh, dtype=dtype, mode="w+", shape=shape)


def _object_counts(objects: ObjectPredictions) -> np.ndarray:
    """Each image's expected object count: the model's own, else the sum of box scores."""
    if objects.counts is not None:
        return np.asarray(objects.counts, dtype=np.float32)
    return np.asarray(
        [float(o.scores.sum()) if o.scores is not None else len(o) for o in objects.images],
        dtype=np.float32,
    )
