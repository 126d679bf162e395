"""Active Learning by Learning (ALBL): a bandit that learns which strategy to follow."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from exemplar.errors import ConfigError, StrategyError
from exemplar.predictions import Predictions
from exemplar.strategies.base import QueryContext, Strategy
from exemplar.strategies.registry import get_strategy

__all__ = ["ALBL", "DEFAULT_ARMS"]

#: The default portfolio: today's default, plain margin, a density arm and the control arm.
DEFAULT_ARMS = ("uncertain_diverse", "margin", "typiclust", "random")

#: Version of the :meth:`ALBL.state_dict` layout.
STATE_VERSION = 1


class ALBL(Strategy):
    """Active Learning by Learning: EXP4.P over a portfolio of strategies (Hsu & Lin 2015).

    Each arm of the portfolio is a strategy (an "expert" in EXP4.P). Every cycle the
    bandit draws **one arm** with probability
    ``p_i = (1 - K p_min) w_i / sum(w) + p_min`` and that arm picks the whole batch.
    Batch mode treats the batch as the bandit's action: arm ``i``'s advice is its batch,
    so the EXP4.P estimate of an arm's reward is ``r / p_i`` when it was drawn and 0
    otherwise, and every arm keeps at least ``p_min``, the random control arm included.

    Reward (the accuracy gained on importance-weighted labels). The batch ``b_t`` drawn by
    arm ``a_t`` makes model ``f_{t+1}`` out of ``f_t``. The next batch ``b_{t+1}`` is
    seen by neither model, so once it is labeled the reward of ``a_t`` is the
    importance-weighted accuracy gain on it, by default the Horvitz-Thompson estimate of
    the mean gain over the unlabeled pool ``U``::

        r_t = 1/|U| sum_{x in b_{t+1}} w(x) (acc_{t+1}(x) - acc_t(x))      (estimator="ht")
        r_t = sum_x w(x) (acc_{t+1}(x) - acc_t(x)) / sum_x w(x)            (estimator="hajek")

    with ``w(x) = 1 / pi(x)`` and ``pi(x)`` the probability that ``x`` entered the batch
    (``p_a + p_random · B / |U|`` for an item the drawn arm picked, a lower bound that
    ignores other arms that would have picked it; ``p_random · B / |U|`` for the random
    arm's picks). The random control arm gives every item a positive ``pi``, which is what
    makes the estimate unbiased (Hsu & Lin's IW-ACC); its batches, weighted ``|U| /
    (p_random B)``, carry most of it. A portfolio without an arm that reads nothing (the
    ``random`` control arm) is refused (:class:`~exemplar.errors.ConfigError`): its
    weights would not be importance weights. ``acc`` is the probability the model gives
    the true class (``soft``, the model's expected accuracy) or a 0/1 hit. The arm of
    ``b_{t+1}`` is drawn independently of ``a_t``, so the reward compares arms on the same
    footing; it is credited one cycle late. Items of ``b_{t+1}`` that the previous model
    never scored (imported into a running project after it) are left out of the sums; when
    none is left the reward is skipped.

    EXP4.P needs rewards in [0, 1] (Hsu & Lin reward IW-ACC, an accuracy), so the gain is
    mapped there before the update::

        r = (clip(reward_gain · gain, -1, 1) + 1) / 2        (no gain: r = 1/2)

    and the drawn arm ``a`` gets the EXP4.P update
    ``log w_i += eta (r̂_i + v̂_i sqrt(ln(K/delta) / (K horizon)))`` with
    ``r̂_a = r / p_a`` (0 for the other arms) and ``v̂_i = 1/p_i``, EXP4.P's variance
    bonus that keeps rarely drawn arms explored.

    The bandit is a JSON-able state (:meth:`state_dict` / :meth:`load_state_dict`): the
    arms' log weights, every draw with its probabilities and reward, and the evaluation
    still pending. A project records it in each cycle's metrics, so a resumed loop
    continues the bandit. The previous model's predictions (needed for the paired gain) are kept in memory between calls; a caller that builds a fresh strategy each
    cycle hands them back with :meth:`remember`. Selection is reproducible: the arm is
    drawn from the query's seeded generator, which the arm then also uses.

    Parameters
    ----------
    arms : str or sequence of str, default="uncertain_diverse,margin,typiclust,random"
        Registry names of the portfolio (comma-separated in a string). It must hold an
        arm that reads nothing (``random``), the control arm of the importance weights.
        The strategy's ``requires`` is the union of its arms' (no embeddings are scored
        unless an arm reads them).
    p_min : float, default=0.05
        Floor on each arm's probability (EXP4.P's ``p_min``); ``K p_min < 1``.
    eta : float, default=0.1
        Learning rate of the exponential weights.
    reward_gain : float, default=20.0
        Scale of the accuracy gain before it is clipped to [-1, 1] and mapped to the
        reward ``(r + 1) / 2`` in [0, 1] (20: a gain of 5 points gives reward 1, a loss
        of 5 points reward 0, no gain 1/2).
    delta : float, default=0.1
        EXP4.P's confidence parameter (in the variance bonus).
    horizon : int, default=30
        Expected number of cycles (in the variance bonus).
    soft : bool, default=True
        Measure accuracy as the probability a model gives the true class (its expected
        accuracy), which varies less over ten items than 0/1 hits; False counts hits.
    estimator : {"ht", "hajek"}, default="ht"
        Horvitz-Thompson (unbiased for the pool's mean gain, but only the random arm's
        batches weigh much) or self-normalized within the batch (less variance; it measures
        the gain where the portfolio picks next, not over the pool).

    Notes
    -----
    Not the default: in the paired simulations of docs/adaptive.md it was never better
    than ``uncertain_diverse`` and significantly worse on digits; 30 batch cycles give the
    bandit too few rewards to learn from, so it behaves like a mixture of its arms.

    References
    ----------
    Hsu, W.-N., & Lin, H.-T. (2015). Active Learning by Learning. AAAI.
    Beygelzimer, A., Langford, J., Li, L., Reyzin, L., & Schapire, R. (2011). Contextual
    bandit algorithms with supervised learning guarantees (EXP4.P). AISTATS.
    """

    name: ClassVar[str] = "albl"
    summary: ClassVar[str] = (
        "EXP4.P bandit over a portfolio of strategies (rewarded by accuracy gain)"
    )
    reference: ClassVar[str] = "Hsu & Lin 2015, AAAI (Active Learning by Learning)"
    #: What the arms may read; an instance reads the union of its own arms' ``requires``.
    requires: ClassVar[frozenset[str]] = frozenset({"proba", "embeddings"})

    def __init__(
        self,
        arms: str | Sequence[str] = ",".join(DEFAULT_ARMS),
        p_min: float = 0.05,
        eta: float = 0.1,
        reward_gain: float = 20.0,
        delta: float = 0.1,
        horizon: int = 30,
        soft: bool = True,
        estimator: str = "ht",
    ) -> None:
        self.arms = arms
        self.p_min = p_min
        self.eta = eta
        self.reward_gain = reward_gain
        self.delta = delta
        self.horizon = horizon
        self.soft = soft
        self.estimator = estimator
        self._state: dict[str, Any] | None = None
        self._previous: Predictions | None = None
        #: The arm drawn by the last query (None before any).
        self.last_arm: str | None = None
        # What this portfolio reads (no embeddings unless an arm needs them). Set per
        # instance, as the scorer and pick_batch read ``strategy.requires``.
        needs = frozenset().union(*(get_strategy(n).requires for n in self.arm_names))
        self.__dict__["requires"] = needs | {"proba"}

    # -- portfolio and state -------------------------------------------------------------

    @property
    def arm_names(self) -> list[str]:
        """The portfolio's registry names, validated."""
        names = self.arms.split(",") if isinstance(self.arms, str) else list(self.arms)
        names = [n.strip() for n in names if n.strip()]
        if len(names) < 2:
            raise ConfigError(f"albl needs at least two arms, got {names!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"albl arms must be distinct, got {names!r}")
        if "albl" in names:
            raise ConfigError("albl cannot be an arm of itself")
        for n in names:
            extra = get_strategy(n).requires - self.requires  # unknown names: ConfigError
            if extra:
                raise ConfigError(
                    f"albl arm {n!r} reads {', '.join(sorted(extra))}; arms may read only "
                    "proba and embeddings"
                )
        if not any(not get_strategy(n).requires for n in names):
            raise ConfigError(
                f"albl arms {names!r} have no control arm that reads nothing (random): its "
                "importance weights 1/pi need every item to have a chance (Hsu & Lin 2015); "
                "add 'random'"
            )
        if not 0.0 <= self.p_min or len(names) * self.p_min >= 1.0:
            raise ConfigError(
                f"p_min must be in [0, 1/K) for K={len(names)} arms, got {self.p_min}"
            )
        if self.eta <= 0 or self.reward_gain <= 0 or not 0 < self.delta < 1 or self.horizon < 1:
            raise ConfigError("albl needs eta > 0, reward_gain > 0, 0 < delta < 1, horizon >= 1")
        if self.estimator not in ("ht", "hajek"):
            raise ConfigError(f"albl estimator must be 'ht' or 'hajek', got {self.estimator!r}")
        return names

    def state_dict(self) -> dict[str, Any]:
        """The bandit as plain JSON types (a fresh bandit if nothing was selected yet)."""
        return _json(self._ensure_state())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the bandit recorded by :meth:`state_dict` (same arms required)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise StrategyError(f"not an albl state (version {STATE_VERSION}): {state!r:.80}")
        if list(state.get("arms", [])) != self.arm_names:
            raise StrategyError(
                f"the recorded albl arms {state.get('arms')} differ from the configured "
                f"{self.arm_names}; keep the arms of a running project"
            )
        self._state = _json(state)

    def remember(self, predictions: Predictions) -> None:
        """Hand back the predictions the previous query saw (the model before the current
        one), for a caller that builds a fresh strategy every cycle."""
        if predictions.proba is None:
            raise StrategyError("albl needs class probabilities (proba)")
        self._previous = predictions

    def probabilities(self) -> np.ndarray:
        """Each arm's probability of being drawn next."""
        state = self._ensure_state()
        log_w = np.asarray(state["log_weights"], dtype=np.float64)
        w = np.exp(log_w - log_w.max())
        k = w.size
        return (1.0 - k * self.p_min) * w / w.sum() + self.p_min

    def _ensure_state(self) -> dict[str, Any]:
        if self._state is None:
            names = self.arm_names
            self._state = {
                "version": STATE_VERSION,
                "arms": names,
                "log_weights": [0.0] * len(names),
                "rounds": 0,
                "history": [],
                "pending": None,
            }
        return self._state

    # -- reward --------------------------------------------------------------------------

    def observe(self, rows: ArrayLike, labels: ArrayLike) -> float | None:
        """Credit the pending evaluation with the labels now known (the reward hook).

        Called by the loop after the batch is labeled and the model retrained (and by
        :meth:`query` itself with the labels it is given, so a caller may skip it).
        ``rows`` and ``labels`` may hold more items than the pending batch; the ones
        pending are looked up. Returns the reward credited, or None when there was
        nothing to credit (no pending evaluation, or none of its items labeled yet).
        """
        state = self._ensure_state()
        pending = state["pending"]
        if pending is None or pending.get("before") is None:
            return None
        rows_arr = np.asarray(rows, dtype=np.int64).ravel()
        labels_arr = np.asarray(labels).ravel()
        if rows_arr.size != labels_arr.size:
            raise StrategyError(f"observe got {rows_arr.size} rows and {labels_arr.size} labels")
        known = {int(r): _plain(v) for r, v in zip(rows_arr, labels_arr, strict=True)}
        num = den = 0.0
        after, before = pending["after"], pending["before"]
        for j, (row, w) in enumerate(zip(pending["rows"], pending["weights"], strict=True)):
            if row not in known:
                continue
            y = known[row]
            num += w * (self._accuracy(after, j, y) - self._accuracy(before, j, y))
            den += w
        if den == 0.0:
            return None
        # Horvitz-Thompson: unbiased for the mean gain over the pool; Hajek: self-normalized.
        gain = num / pending["pool"] if self.estimator == "ht" else num / den
        entry = state["history"][pending["credit"]]
        entry["gain"] = gain
        # EXP4.P's rewards lie in [0, 1]: the clipped gain mapped there (no gain: 1/2).
        reward = (float(np.clip(gain * self.reward_gain, -1.0, 1.0)) + 1.0) / 2.0
        entry["reward"] = reward
        self._update(entry, reward)
        state["pending"] = None
        return reward

    def _accuracy(self, model: dict[str, Any], j: int, y: Any) -> float:
        """Row ``j``'s accuracy under a recorded model: the probability it gave the true
        class (``soft``), or whether its top class is the true one."""
        classes, proba = model["classes"], model["proba"][j]
        if self.soft:
            return float(proba[classes.index(y)]) if y in classes else 0.0
        return float(classes[int(np.argmax(proba))] == y)

    def _update(self, entry: dict[str, Any], reward: float) -> None:
        """EXP4.P update for the draw recorded in ``entry`` (its own probabilities)."""
        state = self._ensure_state()
        p = np.asarray(entry["p"], dtype=np.float64)
        k = p.size
        bonus = math.sqrt(math.log(k / self.delta) / (k * self.horizon))
        r_hat = np.zeros(k)
        r_hat[entry["arm_index"]] = reward / p[entry["arm_index"]]
        v_hat = 1.0 / p
        log_w = np.asarray(state["log_weights"], dtype=np.float64)
        log_w += self.eta * (r_hat + v_hat * bonus)
        state["log_weights"] = (log_w - log_w.max()).tolist()

    # -- selection -----------------------------------------------------------------------

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        assert ctx.predictions is not None
        state = self._ensure_state()
        if ctx.y_labeled is not None:
            self.observe(ctx.labeled, ctx.y_labeled)
        names = state["arms"]
        p = self.probabilities()
        k = int(ctx.rng.choice(len(names), p=p))
        arm = get_strategy(names[k])
        ctx_arm_seed = ctx.rng  # the arm draws from the same seeded generator
        indices, scores = arm.query(
            ctx.predictions,
            ctx.unlabeled,
            ctx.labeled,
            ctx.batch_size,
            y_labeled=ctx.y_labeled,
            random_state=ctx_arm_seed,
            return_scores=True,
        )
        current = ctx.predictions
        random_arms = [i for i, n in enumerate(names) if not get_strategy(n).requires]
        p_random = float(sum(p[i] for i in random_arms))
        share = ctx.batch_size / ctx.unlabeled.size
        pi = p_random * share + (0.0 if k in random_arms else float(p[k]))
        pi = max(pi, 1e-12)
        history: list[dict[str, Any]] = state["history"]
        state["pending"] = None  # an evaluation whose items were never labeled is dropped
        # The previous draw's reward is judged on this batch: seen by neither model. Items
        # imported since the previous model scored the pool have no "before": left out.
        judged = indices
        if self._previous is not None and self._previous.proba is not None:
            judged = indices[indices < self._previous.proba.shape[0]]
        if history and judged.size:
            before = None if self._previous is None else _recorded(self._previous, judged)
            state["pending"] = {
                "credit": len(history) - 1,
                "rows": judged,
                "weights": [1.0 / pi] * judged.size,
                "pool": int(ctx.unlabeled.size),
                "after": _recorded(current, judged),
                "before": before,
            }
        history.append({"round": state["rounds"], "arm": names[k], "arm_index": k, "p": p})
        state["rounds"] += 1
        self._state = _json(state)
        self._previous = current
        self.last_arm = names[k]
        return indices, scores


def _recorded(predictions: Predictions, rows: np.ndarray) -> dict[str, Any]:
    """A model's class probabilities of ``rows`` with its class labels (column indices
    when the classes are unknown), as JSON types."""
    if predictions.proba is None:
        raise StrategyError("albl needs class probabilities (proba)")
    proba = np.asarray(predictions.proba[rows], dtype=np.float64)
    classes = np.arange(proba.shape[1]) if predictions.classes is None else predictions.classes
    return {
        "classes": [_plain(c) for c in np.asarray(classes)],
        "proba": np.round(proba, 6).tolist(),
    }


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (labels compare across a JSON round trip)."""
    return value.item() if isinstance(value, np.generic) else value


def _json(value: Any) -> Any:
    """A deep copy of ``value`` in plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
