"""Uncertain boxes, then diverse images; embedding strategies on detection predictions."""

from __future__ import annotations

import numpy as np
import pytest
from object_cases import objs, preds

from exemplar.strategies import BoxEntropy, BoxUncertainThenDiverse, get_strategy

BOX = [[0, 0, 10, 10]]


def _scene() -> object:
    rng = np.random.default_rng(0)
    # Region A: 10 near-duplicate images, the most uncertain. Regions B and C: uncertain
    # too, a bit less. Region D: far-away confident images a pure diversity pick would grab.
    emb = np.vstack(
        [
            rng.normal([0, 0], 0.01, (10, 2)),
            rng.normal([5, 0], 0.01, (10, 2)),
            rng.normal([0, 5], 0.01, (10, 2)),
            rng.normal([50, 50], 5.0, (20, 2)),
        ]
    )
    p1 = np.r_[np.full(10, 0.5), np.full(10, 0.55), np.full(10, 0.56), np.full(20, 0.99)]
    images = [objs(BOX, [0.9], [[a, 1 - a]]) for a in p1]
    return preds(images, embeddings=emb)


@pytest.mark.parametrize("diversity", ["coreset", "kmeans"])
def test_batch_spans_uncertain_regions_and_skips_confident(diversity: str) -> None:
    p = _scene()
    idx = BoxUncertainThenDiverse(diversity=diversity).query(p, batch_size=3, random_state=0)
    assert {min(i // 10, 3) for i in idx.tolist()} == {0, 1, 2}
    plain = BoxEntropy().query(p, batch_size=3)
    assert {min(i // 10, 3) for i in plain.tolist()} == {0}, "plain box entropy piles up"


def test_other_object_strategy_as_base() -> None:
    p = _scene()
    idx = BoxUncertainThenDiverse(base="box_margin").query(p, batch_size=3, random_state=0)
    assert {min(i // 10, 3) for i in idx.tolist()} == {0, 1, 2}


@pytest.mark.parametrize("name", ["coreset", "typiclust", "probcover"])
def test_embedding_strategies_work_without_proba(name: str) -> None:
    p = _scene()
    assert p.proba is None
    labeled = np.array([0, 10])
    unlabeled = np.setdiff1d(np.arange(50), labeled)
    idx = get_strategy(name).query(p, unlabeled, labeled, 4, random_state=0)
    assert len(set(idx.tolist())) == 4 and set(idx.tolist()) <= set(unlabeled.tolist())
