"""BatchBALD: greedy batches that maximise the joint mutual information (Kirsch et al., 2019)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import entr, logsumexp

from exemplar.errors import MissingPredictionsError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies._committee import EPS
from exemplar.strategies.bald import Bald
from exemplar.strategies.base import QueryContext, ScoringStrategy, top_k

__all__ = ["BatchBald", "greedy_batchbald"]

#: Float32 elements of one block of joint probabilities (configurations x candidates x classes).
_BLOCK = 1 << 22
#: Candidates evaluated at a time by the lazy greedy steps after the first.
_LAZY_BLOCK = 32


class BatchBald(ScoringStrategy):
    """Pick a batch whose labels jointly tell the most about the model parameters.

    BALD scores items one by one, so a batch of top-BALD items can be full of near
    duplicates that each carry the same information. BatchBALD scores the batch as a
    whole, with the mutual information between the joint labels and the parameters,

    .. math:: a(x_{1:b}) = H[y_{1:b}] - \\sum_i E_w H[y_i \\mid w],

    and builds it greedily (the function is submodular, so greedy is within
    ``1 - 1/e`` of the best batch). The joint entropy ``H[y_{1:b}]`` is a mixture over the
    ``T`` stochastic samples ``w``. It is exact, summed over every label configuration of
    the batch so far, while there are at most ``max_joint_samples`` of them (``c^n``);
    beyond that, ``max_joint_samples`` configurations are drawn from the mixture with
    the seeded generator and the entropy is their Monte-Carlo estimate, as in the paper.

    Parameters
    ----------
    candidate_pool : int, default=1000
        The batch is built from this many unlabeled items of highest BALD (at least
        ``batch_size``). Streaming scoring keeps the samples of these candidates only,
        so cost and memory do not depend on the pool size (the authors' experiment code
        has the same option, culling the pool to its top-BALD items).
    max_joint_samples : int, default=10000
        Bound on the configurations the joint entropy sums over, exact or sampled (at
        least ``T`` when sampled: one configuration per stochastic sample).

    Notes
    -----
    Scores (``return_scores``) are each item's BALD. A sampled configuration keeps the
    stochastic sample it was drawn from, and is extended with a label drawn from that
    sample when an item joins the batch, so each greedy step costs
    ``O(max_joint_samples · T)`` to update and at most
    ``O(max_joint_samples · candidate_pool · c)`` to score; lazy evaluation (see
    :func:`greedy_batchbald`) usually scores a small share of the candidates. Work runs
    in log space and in float32 blocks of bounded size, so long batches do not underflow.
    With ``T`` samples the joint mutual information cannot exceed ``log T``; once a batch
    nears it, further picks are close to ties, so large batches want more samples.

    If streaming scoring kept fewer still-unlabeled candidates than ``batch_size`` (labels
    arrived between scoring and selection), the rest of the batch is filled by BALD.

    References
    ----------
    .. [1] A. Kirsch, J. van Amersfoort and Y. Gal, "BatchBALD: Efficient and diverse batch
       acquisition for deep Bayesian active learning", in Proc. NeurIPS, 2019.
    .. [2] N. Houlsby, F. Huszár, Z. Ghahramani and M. Lengyel, "Bayesian active
       learning for classification and preference learning", arXiv:1112.5745, 2011.
    """

    name: ClassVar[str] = "batchbald"
    summary: ClassVar[str] = "greedy batch of highest joint mutual information (no duplicates)"
    reference: ClassVar[str] = "Kirsch, van Amersfoort & Gal (2019), NeurIPS"
    requires: ClassVar[frozenset[str]] = frozenset({"samples"})

    def __init__(self, candidate_pool: int = 1_000, max_joint_samples: int = 10_000) -> None:
        self.candidate_pool = candidate_pool
        self.max_joint_samples = max_joint_samples

    def utility(self, predictions: Predictions) -> np.ndarray:
        """BALD of each row: the pre-filter that ranks candidates (see :class:`Bald`)."""
        return Bald().utility(predictions)

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        for param in ("candidate_pool", "max_joint_samples"):
            value = getattr(self, param)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise StrategyError(f"{param} must be a positive integer, got {value!r}")
        scores = self._unlabeled_utility(ctx)
        rows, samples = self._candidates(ctx, scores)
        picks = greedy_batchbald(
            samples, min(ctx.batch_size, rows.size), self.max_joint_samples, ctx.rng
        )[0]
        chosen = rows[picks]
        if chosen.size < ctx.batch_size:
            rest = ~np.isin(ctx.unlabeled, chosen)
            fill = top_k(scores[rest], ctx.batch_size - chosen.size)
            chosen = np.concatenate([chosen, ctx.unlabeled[rest][fill]])
        return chosen, scores

    def _candidates(self, ctx: QueryContext, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate rows (best BALD first) and their samples ``(t, m, c)`` as float64."""
        if ctx.reduced is None:
            assert ctx.predictions is not None
            rows = ctx.unlabeled[top_k(scores, max(self.candidate_pool, ctx.batch_size))]
            return rows, np.asarray(ctx.predictions.require_samples(rows), dtype=np.float64)
        if ctx.reduced.rows is None or ctx.reduced.samples is None:
            raise MissingPredictionsError(
                "batchbald needs the samples of its candidates: score the pool with "
                "exemplar.loop.score_pool, which keeps them"
            )
        keep = np.isin(ctx.reduced.rows, ctx.unlabeled)
        rows = np.asarray(ctx.reduced.rows, dtype=np.int64)[keep]
        return rows, np.asarray(ctx.reduced.samples[:, keep], dtype=np.float64)


def greedy_batchbald(
    samples: np.ndarray, batch_size: int, max_joint_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy BatchBALD over candidates' samples, with lazy evaluation.

    The joint mutual information is submodular, so a candidate's gain can only shrink as
    the batch grows: its last computed gain bounds its next one. Each step evaluates
    candidates in blocks, highest bound first, and stops once the best fresh gain beats
    every remaining bound (Minoux's accelerated greedy), which picks what evaluating every
    candidate would pick while usually evaluating a few blocks.

    Parameters
    ----------
    samples : ndarray of shape (t, m, c)
        Stochastic class probabilities of the ``m`` candidates.
    batch_size : int
        Items to pick, ``<= m``.
    max_joint_samples : int
        Most label configurations in the joint entropy (exact up to this, then sampled).
    rng : numpy.random.Generator
        Draws the sampled configurations.

    Returns
    -------
    picks : ndarray of int64, shape (batch_size,)
        Candidate positions in pick order.
    mutual_info : ndarray of float64, shape (batch_size,)
        The (estimated) joint mutual information of the batch after each pick.

    References
    ----------
    .. [1] M. Minoux, "Accelerated greedy algorithms for maximizing submodular set
       functions", in Optimization Techniques, LNCIS vol. 7, Springer, 1978, pp. 234-243.
    """
    m = samples.shape[1]
    conditional = entr(samples).sum(axis=2).mean(axis=0)  # E_w H[y_j | w], (m,)
    samples32 = np.ascontiguousarray(samples, dtype=np.float32)
    joint = _JointEntropy(samples, max_joint_samples, rng)
    bound = np.full(m, np.inf)  # last computed gain of each candidate; -inf once picked
    picks: list[int] = []
    mutual_info: list[float] = []
    for _ in range(batch_size):
        order = np.argsort(-bound, kind="stable")[: m - len(picks)]
        best, best_gain, done = -1, -np.inf, 0
        while done < order.size:
            block = order[done : done + _LAZY_BLOCK] if picks else order
            gains = joint.conditional_entropy(samples32[:, block]) - conditional[block]
            bound[block] = gains
            top = int(np.argmax(gains))
            if gains[top] > best_gain:
                best, best_gain = int(block[top]), float(gains[top])
            done += block.size
            if done < order.size and best_gain >= bound[order[done]]:
                break
        picks.append(best)
        bound[best] = -np.inf
        mutual_info.append(best_gain + (mutual_info[-1] if mutual_info else 0.0))
        if len(picks) < batch_size:
            joint.add(best)
    return np.asarray(picks, dtype=np.int64), np.asarray(mutual_info)


class _JointEntropy:
    """The joint label distribution of the batch so far, as weighted label configurations.

    Each configuration ``s`` carries ``log p(y_s | w_k)`` for every stochastic sample ``k``
    and a weight ``v_s``: its probability when all configurations are enumerated, ``1/M``
    when ``M`` of them are drawn from the mixture. With the posterior
    ``π_s(k) ∝ p(y_s | w_k)``, a candidate's entropy given the batch's labels is
    ``H[y_x | y_batch] = Σ_s v_s H[Σ_k π_s(k) p(y_x | w_k)]``, and adding it to the batch
    raises the joint mutual information by ``H[y_x | y_batch] - E_w H[y_x | w]``.
    """

    def __init__(self, samples: np.ndarray, max_configs: int, rng: np.random.Generator) -> None:
        self.log_p = np.log(np.maximum(samples, EPS))  # (t, m, c)
        self.max_configs = max_configs
        self.rng = rng
        self.picks: list[int] = []
        self.log_joint = np.zeros((1, samples.shape[0]))  # (configs, t)
        self.weights = np.ones(1)
        self.component: np.ndarray | None = None  # sample each drawn configuration came from
        self._refresh()

    def add(self, pick: int) -> None:
        """Add candidate ``pick`` to the batch."""
        self.picks.append(pick)
        t, _, c = self.log_p.shape
        if self.component is None and c ** len(self.picks) <= self.max_configs:
            # Exact: every configuration of the batch so far, extended by each label.
            new = self.log_joint[:, None, :] + self.log_p[:, pick, :].T[None, :, :]
            self.log_joint = new.reshape(-1, t)
            self.weights = np.exp(logsumexp(self.log_joint, axis=1) - np.log(t))
        else:
            if self.component is None:
                # Switch to sampling: draw configurations of the whole batch so far.
                per_sample = max(1, self.max_configs // t)
                self.component = np.repeat(np.arange(t), per_sample)
                self.log_joint = np.zeros((self.component.size, t))
                for item in self.picks:
                    self._extend(item)
            else:
                self._extend(pick)
            self.weights = np.full(self.component.size, 1.0 / self.component.size)
        self._refresh()

    def _extend(self, item: int) -> None:
        """Draw item's label for each configuration from the sample it came from."""
        assert self.component is not None
        log_p = self.log_p[:, item, :]  # (t, c)
        cum = np.cumsum(np.exp(log_p[self.component]), axis=1)
        draw = self.rng.random(self.component.size) * cum[:, -1]
        labels = (draw[:, None] > cum).sum(axis=1)
        self.log_joint += log_p[:, labels].T

    def _refresh(self) -> None:
        """The posterior over samples of each configuration, float32 for the products."""
        log_post = self.log_joint - logsumexp(self.log_joint, axis=1, keepdims=True)
        self.posterior = np.exp(log_post).astype(np.float32)
        self.weights32 = self.weights.astype(np.float32)

    def conditional_entropy(self, samples: np.ndarray) -> np.ndarray:
        """``H[y_x | y_batch]`` for each candidate ``x`` of ``samples`` (t, k, c), float32."""
        t, k, c = samples.shape
        flat = samples.reshape(t, k * c)
        out = np.empty(k, dtype=np.float64)
        block = max(1, _BLOCK // (self.posterior.shape[0] * c))
        for start in range(0, k, block):
            stop = min(start + block, k)
            q = self.posterior @ flat[:, start * c : stop * c]  # p(y_x | y_s)
            neg = np.log(q + np.float32(1e-30))
            neg *= q
            out[start:stop] = -(self.weights32 @ neg).reshape(-1, c).sum(axis=1)
        return out
