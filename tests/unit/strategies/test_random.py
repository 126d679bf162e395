"""Random sampling: uniform, reproducible, needs no model."""

from __future__ import annotations

import numpy as np

from exemplar.strategies import RandomSampling


def test_random_needs_no_predictions_and_respects_pool() -> None:
    unlabeled = np.arange(10, 110)
    idx = RandomSampling().query(
        None, unlabeled, labeled=np.arange(10), batch_size=20, random_state=1
    )
    assert set(idx.tolist()) <= set(unlabeled.tolist())
    assert len(set(idx.tolist())) == 20


def test_random_is_seeded() -> None:
    pool = np.arange(1000)
    a = RandomSampling().query(None, pool, batch_size=10, random_state=7)
    b = RandomSampling().query(None, pool, batch_size=10, random_state=7)
    c = RandomSampling().query(None, pool, batch_size=10, random_state=8)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_random_is_roughly_uniform() -> None:
    counts = np.zeros(20)
    for seed in range(2000):
        counts[RandomSampling().query(None, np.arange(20), batch_size=1, random_state=seed)] += 1
    # Each item expected 100 times; a chi-square-ish sanity bound.
    assert counts.min() > 60 and counts.max() < 140


def test_random_scores_align_with_unlabeled() -> None:
    pool = np.array([5, 3, 9, 1])
    idx, scores = RandomSampling().query(
        None, pool, batch_size=2, random_state=0, return_scores=True
    )
    assert scores.shape == (4,)
    chosen = {int(pool[p]) for p in np.argsort(-scores)[:2]}
    assert chosen == set(idx.tolist())
