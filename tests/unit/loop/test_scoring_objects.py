"""Streaming scoring of a detector's pool: chunk by chunk, keeping only each image's
expected count and the strategy's utility (issue #11: scoring 10^4 tiles in bounded memory).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exemplar.loop.scoring import load_scored, save_scored, score_pool
from exemplar.loop.selection import pick_batch
from exemplar.objects import ObjectPredictions, Objects
from exemplar.predictions import Predictions
from exemplar.store.arrays import ArrayStore
from exemplar.strategies import get_strategy


class BrightSpotDetector:
    """A test detector: one box per image, scored by the image's mean brightness, with
    two stochastic passes that disagree on dim images. Records the rows of every call."""

    finds_objects = True
    classes_ = np.asarray(["cell"])

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.asked: list[dict[str, bool]] = []

    def predict(
        self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False, views: bool = False
    ) -> Predictions:
        self.calls.append(int(X.shape[0]))
        self.asked.append({"samples": samples, "embeddings": embeddings, "views": views})
        means = np.asarray(X, dtype=np.float32).mean(axis=1)
        images = [Objects([[1, 1, 5, 5]], [0], [s], [[1.0]]) for s in means]
        passes = None
        if samples:
            passes = [images, [Objects([[1, 1, 5, 5]], [0], [s * s], [[1.0]]) for s in means]]
        return Predictions(
            objects=ObjectPredictions(images, 1, samples=passes, counts=means * 3),
            embeddings=np.asarray(X[:, :4], dtype=np.float32) if embeddings else None,
        )


def test_a_detectors_pool_is_scored_in_chunks_keeping_counts_and_utility(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((103, 16)).astype(np.float32)
    model = BrightSpotDetector()
    scored = score_pool(model, X, get_strategy("box_entropy"), chunk_size=10, objects=True)
    assert max(model.calls) <= 10 and sum(model.calls) == 103
    pred = scored.predictions
    assert pred.proba is None and pred.objects is None  # the boxes are not kept
    assert pred.counts is not None and np.allclose(pred.counts, X.mean(axis=1) * 3, atol=1e-5)
    assert scored.reduced is not None and scored.reduced.utility.shape == (103,)
    # box entropy of one box: highest for scores near 0.5
    s = X.mean(axis=1)
    want = -(s * np.log(s) + (1 - s) * np.log(1 - s))
    assert np.argmax(scored.reduced.utility) == np.argmax(want)
    arrays = ArrayStore(tmp_path)
    save_scored(arrays, "v1", scored)
    back = load_scored(arrays, "v1")
    assert back.predictions.proba is None
    assert np.array_equal(back.predictions.counts, pred.counts)
    assert back.reduced is not None and np.array_equal(back.reduced.utility, scored.reduced.utility)
    picks = pick_batch(
        back.predictions,
        get_strategy("box_entropy"),
        np.arange(103),
        np.empty(0, np.int64),
        None,
        batch_size=5,
        seed=0,
        reduced=back.reduced,
    )
    assert [p.row for p in picks] == np.argsort(-scored.reduced.utility)[:5].tolist()


def test_the_scorer_asks_the_detector_for_the_passes_a_strategy_reads() -> None:
    X = np.random.default_rng(1).random((12, 16)).astype(np.float32)
    model = BrightSpotDetector()
    score_pool(model, X, get_strategy("box_committee"), chunk_size=5, objects=True)
    assert all(a["samples"] for a in model.asked)
    model = BrightSpotDetector()
    scored = score_pool(model, X, get_strategy("box_uncertain_diverse"), chunk_size=5)
    assert all(a["embeddings"] for a in model.asked)  # its diversity step reads embeddings
    assert scored.reduced is not None  # its box_entropy pre-filter, kept per chunk
    assert scored.predictions.embeddings is not None
