"""The contract every registered strategy honours (DESIGN.md §8).

Valid, unique, unlabeled indices; determinism under a seed; scores aligned with the
pool; and a specific exception for each kind of bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from exemplar.errors import (
    BatchTooLargeError,
    EmptyPoolError,
    InvalidIndicesError,
    InvalidPredictionsError,
    SingleClassError,
)
from exemplar.predictions import Predictions
from exemplar.strategies import STRATEGIES, Strategy, get_strategy

N, C, T = 300, 4, 6


def _predictions() -> Predictions:
    X, y = make_blobs(n_samples=N, centers=C, n_features=5, random_state=0)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(T, N, C)) + np.eye(C)[y][None] * 2.0
    samples = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return Predictions(samples=samples.astype(np.float32), embeddings=X, classes=np.arange(C))


PRED = _predictions()
LABELED = np.arange(0, 40)
Y_LABELED = np.arange(40) % C
UNLABELED = np.arange(40, N)
# Object strategies read boxes; tests/unit/strategies/test_object_strategies.py holds them
# to the same contract on object predictions.
NAMES = sorted(n for n, cls in STRATEGIES.items() if "objects" not in cls.requires)


def _query(name: str, **kw: object) -> np.ndarray:
    args: dict[str, object] = {
        "unlabeled": UNLABELED,
        "labeled": LABELED,
        "batch_size": 12,
        "y_labeled": Y_LABELED,
        "random_state": 3,
    }
    args.update(kw)
    return get_strategy(name).query(PRED, **args)  # type: ignore[arg-type]


def test_registry_is_complete_and_named() -> None:
    for name, cls in STRATEGIES.items():
        assert issubclass(cls, Strategy)
        assert cls.name == name
        assert cls.summary and cls.reference
        assert cls.__doc__ and "References" in cls.__doc__, f"{name} must cite its paper"


@pytest.mark.parametrize("name", NAMES)
def test_valid_unique_unlabeled_indices(name: str) -> None:
    idx, scores = _query(name, return_scores=True)  # type: ignore[misc]
    assert idx.dtype == np.int64 and idx.shape == (12,)
    assert len(set(idx.tolist())) == 12
    assert set(idx.tolist()) <= set(UNLABELED.tolist())
    assert not set(idx.tolist()) & set(LABELED.tolist())
    assert scores.shape == (UNLABELED.size,)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name: str) -> None:
    assert _query(name).tolist() == _query(name).tolist()


@pytest.mark.parametrize("name", NAMES)
def test_whole_pool_batch_returns_every_item_once(name: str) -> None:
    small = np.arange(40, 52)
    idx = _query(name, unlabeled=small, batch_size=small.size)
    assert sorted(idx.tolist()) == small.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_batch_larger_than_pool(name: str) -> None:
    with pytest.raises(BatchTooLargeError, match="larger than the unlabeled pool"):
        _query(name, unlabeled=np.arange(40, 45), batch_size=6)


@pytest.mark.parametrize("name", NAMES)
def test_empty_pool(name: str) -> None:
    with pytest.raises(EmptyPoolError):
        _query(name, unlabeled=np.array([], dtype=np.int64))


@pytest.mark.parametrize("name", NAMES)
def test_overlap_and_duplicates(name: str) -> None:
    with pytest.raises(InvalidIndicesError, match="both labeled and unlabeled"):
        _query(name, unlabeled=np.arange(30, N))
    with pytest.raises(InvalidIndicesError, match="duplicate"):
        _query(name, unlabeled=np.r_[UNLABELED, 41])
    with pytest.raises(InvalidIndicesError, match="predictions cover"):
        _query(name, unlabeled=np.r_[UNLABELED, N + 5])


@pytest.mark.parametrize("name", [n for n in NAMES if STRATEGIES[n].requires])
def test_nan_predictions(name: str) -> None:
    cls = STRATEGIES[name]
    bad_samples = PRED.samples.copy()  # type: ignore[union-attr]
    bad_samples[:, 50, 0] = np.nan
    bad_emb = PRED.embeddings.copy()  # type: ignore[union-attr]
    bad_emb[50, 0] = np.nan
    bad = Predictions(
        proba=np.where(np.isnan(bad_samples).any(0), np.nan, PRED.proba),
        samples=bad_samples,
        embeddings=bad_emb if "embeddings" in cls.requires else PRED.embeddings,
    )
    with pytest.raises(InvalidPredictionsError, match="NaN"):
        cls().query(bad, UNLABELED, LABELED, 5, y_labeled=Y_LABELED, random_state=0)


@pytest.mark.parametrize("name", [n for n in NAMES if not STRATEGIES[n].cold_start])
def test_single_class_labeled_set(name: str) -> None:
    with pytest.raises(SingleClassError, match="single class"):
        _query(name, y_labeled=np.zeros(40, dtype=int))


@pytest.mark.parametrize("name", [n for n in NAMES if STRATEGIES[n].cold_start])
def test_cold_start_works_without_labels(name: str) -> None:
    idx = get_strategy(name).query(PRED, np.arange(N), None, 10, random_state=0)
    assert len(set(idx.tolist())) == 10


def test_default_resolves_to_a_registered_strategy() -> None:
    assert get_strategy("default").name in STRATEGIES
