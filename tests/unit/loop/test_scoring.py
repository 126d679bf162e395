"""Streaming scoring: bounded memory for any pool, same batches as scoring in memory."""

from __future__ import annotations

import tracemalloc
from typing import ClassVar

import numpy as np
import pytest

from exemplar.errors import InvalidPredictionsError, ModelError, StrategyError
from exemplar.loop import query_batch, score_pool, select_batch
from exemplar.predictions import Predictions
from exemplar.strategies import (
    Bald,
    BatchBald,
    QueryContext,
    ReducedSamples,
    ScoringStrategy,
    Strategy,
    get_strategy,
    top_k,
)

T, C, F = 8, 4, 6


class FakeMC:
    """An MC-dropout-like adapter: samples for whatever rows it gets; records rows per call."""

    def __init__(self, t: int = T, c: int = C, embeddings_are_x: bool = False) -> None:
        rng = np.random.default_rng(0)
        self.weights = rng.normal(size=(t, F, c)).astype(np.float32)
        self.classes_ = np.arange(c)
        self.embeddings_are_x = embeddings_are_x
        self.calls: list[int] = []

    def fit(self, X: np.ndarray, y: np.ndarray) -> FakeMC:
        return self

    def predict(
        self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False
    ) -> Predictions:
        self.calls.append(X.shape[0])
        logits = np.einsum("nf,tfc->tnc", np.asarray(X, dtype=np.float32), self.weights)
        probs = np.exp(logits - logits.max(axis=2, keepdims=True))
        probs /= probs.sum(axis=2, keepdims=True)
        emb = None
        if embeddings:
            emb = X if self.embeddings_are_x else np.tanh(np.asarray(X, dtype=np.float64))
        return Predictions(
            proba=probs.mean(axis=0),
            samples=probs if samples else None,
            embeddings=emb,
            classes=self.classes_,
        )

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict(X).proba.argmax(axis=1)]  # type: ignore[union-attr]


class RoundedBald(ScoringStrategy):
    """BALD rounded to one decimal (many ties), keeping 30 candidates: tests tie-breaking."""

    name: ClassVar[str] = "rounded_bald"
    summary: ClassVar[str] = "test"
    reference: ClassVar[str] = "test"
    requires: ClassVar[frozenset[str]] = frozenset({"samples"})
    candidate_pool = 30

    def utility(self, predictions: Predictions) -> np.ndarray:
        return np.round(Bald().utility(predictions), 1)


class WholeSamples(Strategy):
    """Reads the whole samples array (no row-wise utility): takes the rows with most spread."""

    name: ClassVar[str] = "whole_samples"
    summary: ClassVar[str] = "test"
    reference: ClassVar[str] = "test"
    requires: ClassVar[frozenset[str]] = frozenset({"samples"})

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        assert ctx.predictions is not None
        spread = ctx.predictions.require_samples(ctx.unlabeled).std(axis=0).sum(axis=1)
        return ctx.unlabeled[top_k(spread, ctx.batch_size)], spread


def _pool(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, F)).astype(np.float32)


SAMPLE_STRATEGIES = ["bald", "mean_std", "variation_ratios", "vote_entropy", "batchbald"]


@pytest.mark.parametrize("name", SAMPLE_STRATEGIES)
def test_predicts_at_most_a_chunk_and_keeps_no_whole_samples(name: str) -> None:
    X, model = _pool(1_000), FakeMC()
    strategy = get_strategy(name)
    scored = score_pool(model, X, strategy, chunk_size=64)
    assert max(model.calls) <= 64 and sum(model.calls) == 1_000
    assert scored.predictions.samples is None
    assert scored.reduced is not None and scored.reduced.utility.shape == (1_000,)
    kept = [scored.reduced.samples] if scored.reduced.samples is not None else []
    if name == "batchbald":
        assert kept[0].shape == (T, strategy.candidate_pool, C)
    else:
        assert not kept
    assert scored.predictions.proba is not None and scored.predictions.proba.dtype == np.float32


@pytest.mark.parametrize(
    "name", [*SAMPLE_STRATEGIES, "margin", "entropy", "badge", "coreset", "uncertain_diverse"]
)
def test_streaming_selects_the_same_batch_as_scoring_in_memory(name: str) -> None:
    X, model = _pool(900), FakeMC()
    labeled = np.arange(0, 900, 9)
    unlabeled = np.setdiff1d(np.arange(900), labeled)
    y = np.arange(labeled.size) % C
    strategy = get_strategy(name, candidate_pool=60) if name == "batchbald" else get_strategy(name)
    in_memory = model.predict(X, samples=True, embeddings=True)
    idx, scores = strategy.query(
        in_memory, unlabeled, labeled, 12, y_labeled=y, random_state=5, return_scores=True
    )
    scored = score_pool(model, X, strategy, unlabeled=unlabeled, chunk_size=100)
    got = query_batch(
        scored.predictions,
        strategy,
        unlabeled,
        labeled,
        12,
        y_labeled=y,
        random_state=5,
        reduced=scored.reduced,
    )
    assert got.indices.tolist() == idx.tolist()
    np.testing.assert_allclose(got.scores, scores[np.searchsorted(unlabeled, idx)], rtol=1e-6)


def test_memory_does_not_grow_with_samples_times_items() -> None:
    """Peak traced memory grows by a few bytes per item, not by t × c × 4 (here 1,280)."""
    t, c = 32, 10
    model = FakeMC(t=t, c=c)
    peaks = {}
    for n in (20_000, 40_000):
        X = _pool(n)
        tracemalloc.start()
        scored = score_pool(model, X, Bald(), chunk_size=500)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert scored.reduced is not None
        del scored
    per_item = (peaks[40_000] - peaks[20_000]) / 20_000
    # Kept per item: proba c·4 + utility 8 bytes = 48; whole samples would add t·c·4 = 1,280.
    assert per_item < 100, per_item
    assert peaks[40_000] < 0.25 * t * 40_000 * c * 4


def test_candidates_are_the_top_unlabeled_rows_across_chunks_with_ties() -> None:
    X, model = _pool(1_200), FakeMC()
    unlabeled = np.setdiff1d(np.arange(1_200), np.arange(0, 1_200, 3))
    full = model.predict(X, samples=True)
    utility = RoundedBald().utility(full)
    assert np.unique(utility[unlabeled]).size < 30  # ties cross the chunk boundaries
    scored = score_pool(model, X, RoundedBald(), unlabeled=unlabeled, chunk_size=37)
    assert scored.reduced is not None and scored.reduced.rows is not None
    expected = unlabeled[top_k(utility[unlabeled], 30)]
    assert scored.reduced.rows.tolist() == expected.tolist()
    assert full.samples is not None and scored.reduced.samples is not None
    np.testing.assert_array_equal(scored.reduced.samples, full.samples[:, expected])
    np.testing.assert_array_equal(scored.reduced.utility, utility)


def test_embeddings_go_to_disk_unless_they_are_the_features() -> None:
    X = _pool(500)
    scored = score_pool(FakeMC(), X, get_strategy("badge"), chunk_size=128)
    emb = scored.predictions.embeddings
    assert isinstance(emb, np.memmap) and emb.dtype == np.float64
    np.testing.assert_array_equal(emb, np.tanh(X.astype(np.float64)))
    same = score_pool(FakeMC(embeddings_are_x=True), X, get_strategy("badge"), chunk_size=128)
    assert same.predictions.embeddings is X  # no copy of the pool


def test_a_strategy_without_a_reduction_gets_samples_memory_mapped() -> None:
    X, model = _pool(300), FakeMC()
    scored = score_pool(model, X, WholeSamples(), chunk_size=70)
    assert scored.reduced is None and isinstance(scored.predictions.samples, np.memmap)
    np.testing.assert_array_equal(
        scored.predictions.samples, model.predict(X, samples=True).samples
    )
    sel = select_batch(model, X, WholeSamples(), np.arange(300), np.array([], int), 4)
    assert (
        sel.indices.tolist()
        == WholeSamples().query(model.predict(X, samples=True), batch_size=4).tolist()
    )


def test_bad_models_raise_model_error() -> None:
    X = _pool(50)
    with pytest.raises(ModelError, match="needs a fitted model"):
        score_pool(None, X, Bald())

    class NoSamples(FakeMC):
        def predict(
            self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False
        ) -> Predictions:
            return Predictions(proba=super().predict(X).proba)

    with pytest.raises(ModelError, match="returned no samples"):
        score_pool(NoSamples(), X, Bald())

    class Short(FakeMC):
        def predict(
            self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False
        ) -> Predictions:
            return super().predict(X[:-1], samples=samples)

    with pytest.raises(ModelError, match="49 rows for 50"):
        score_pool(Short(), X, Bald())


def test_select_batch_predicts_nothing_for_a_strategy_that_reads_nothing() -> None:
    model = FakeMC()
    sel = select_batch(model, _pool(40), get_strategy("random"), np.arange(40), np.array([]), 5)
    assert model.calls == [] and len(set(sel.indices.tolist())) == 5


def test_batchbald_streams_through_select_batch() -> None:
    X, model = _pool(2_000), FakeMC()
    strategy = BatchBald(candidate_pool=50)
    sel = select_batch(model, X, strategy, np.arange(2_000), np.array([], int), 6, chunk_size=256)
    assert max(model.calls) <= 256
    direct = strategy.query(model.predict(X, samples=True), batch_size=6, random_state=None)
    assert len(set(sel.indices.tolist())) == 6
    # Unseeded draws only matter past c^n > max_joint_samples; here 4^6 < 10,000: exact.
    assert sel.indices.tolist() == direct.tolist()


def test_query_checks_reduced_samples() -> None:
    preds = FakeMC().predict(_pool(30), samples=True)
    proba_only = Predictions(proba=preds.proba)
    utility = Bald().utility(preds)
    with pytest.raises(StrategyError, match="reads whole samples"):
        get_strategy("badge").query(preds, batch_size=2, reduced=ReducedSamples(utility))
    with pytest.raises(InvalidPredictionsError, match=r"expected \(30,\)"):
        Bald().query(proba_only, batch_size=2, reduced=ReducedSamples(utility[:-1]))
    with pytest.raises(InvalidPredictionsError, match="NaN"):
        Bald().query(proba_only, batch_size=2, reduced=ReducedSamples(np.full(30, np.nan)))
    assert preds.samples is not None
    with pytest.raises(InvalidPredictionsError, match="with their rows"):
        BatchBald().query(
            proba_only, batch_size=2, reduced=ReducedSamples(utility, samples=preds.samples)
        )
    with pytest.raises(InvalidPredictionsError, match="len\\(rows\\)"):
        BatchBald().query(
            proba_only,
            batch_size=2,
            reduced=ReducedSamples(utility, np.arange(3), preds.samples[:, :4]),
        )
    idx = Bald().query(proba_only, batch_size=3, reduced=ReducedSamples(utility))
    assert idx.tolist() == Bald().query(preds, batch_size=3).tolist()


class FakeText:
    """A text adapter: ``X`` is a 1-d array of strings, embeddings are computed vectors."""

    classes_ = np.arange(2)

    def predict(
        self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False
    ) -> Predictions:
        lengths = np.array([len(t) for t in X], dtype=np.float32)
        p = 1.0 / (1.0 + np.exp(-(lengths - 6.0)))
        emb = np.column_stack([lengths, lengths % 3]).astype(np.float32) if embeddings else None
        return Predictions(proba=np.column_stack([1 - p, p]), embeddings=emb)


def test_text_pools_stream_embeddings_from_the_first_chunk() -> None:
    texts = np.array([f"q{'x' * (i % 11)}" for i in range(50)], dtype=object)
    strategy = get_strategy("badge")
    scored = score_pool(FakeText(), texts, strategy, chunk_size=16)  # type: ignore[arg-type]
    emb = scored.predictions.embeddings
    assert emb is not None and emb.shape == (50, 2)
    np.testing.assert_array_equal(emb[:, 0], [len(t) for t in texts])
    batch = query_batch(
        scored.predictions, strategy, np.arange(50), np.empty(0, np.int64), 5, random_state=0
    )
    assert len(set(batch.indices.tolist())) == 5
