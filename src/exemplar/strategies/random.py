"""Random sampling: the baseline every other strategy must beat."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.strategies.base import QueryContext, Strategy


class RandomSampling(Strategy):
    """Select items uniformly at random from the unlabeled pool.

    Random sampling is the control arm of every honest comparison: active learning is
    worth its engineering cost only if it beats simply labeling more random data
    (Settles, 2009, §6; Lewis & Gale, 1994, used it as their baseline).

    Needs no predictions and works from zero labels. Its scores are the uniform draws
    that decided the order, so ``return_scores`` stays meaningful.

    References
    ----------
    Settles, B. (2009). Active Learning Literature Survey. University of Wisconsin-Madison,
    Computer Sciences Technical Report 1648.
    """

    name: ClassVar[str] = "random"
    summary: ClassVar[str] = "uniform random sample of the pool (the baseline)"
    reference: ClassVar[str] = "Settles 2009, Active Learning Literature Survey"
    requires: ClassVar[frozenset[str]] = frozenset()
    cold_start: ClassVar[bool] = True

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        scores = ctx.rng.random(ctx.unlabeled.size)
        order = np.argpartition(-scores, ctx.batch_size - 1)[: ctx.batch_size]
        order = order[np.argsort(-scores[order], kind="stable")]
        return ctx.unlabeled[order], scores
