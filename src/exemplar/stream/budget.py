"""Budget managers: decide at once, for one arriving item, whether to ask for its label.

Stream-based active learning sees items one at a time and must decide on the spot
(Žliobaitė, Bifet, Pfahringer & Holmes 2014, "Active learning with drifting streaming
data", IEEE TNNLS 25(1)). A budget manager turns an item's *utility* (how much its label
is expected to help, e.g. :func:`~exemplar.stream.utility.uncertainty`; higher is more
useful) into that decision, while spending at most ``budget`` labels per arrival.

Every manager here enforces the budget twice:

* its own rule (a windowed spending estimate, a quantile of recent utilities, a coin), and
* a hard cap kept by :class:`BudgetManager`: after ``n`` arrivals, at most
  ``budget * n + tolerance`` labels have been asked for (``tolerance`` defaults to one
  label), whatever the utilities. A manager never overspends beyond that window.

A manager's whole state (counters, threshold, window, random generator) is a JSON-able
dict (:meth:`BudgetManager.state_dict`); :meth:`BudgetManager.load_state_dict` restores it,
so a resumed stream makes exactly the decisions an uninterrupted one would.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from exemplar.errors import ConfigError

__all__ = [
    "MANAGERS",
    "BalancedIncremental",
    "BudgetManager",
    "Decision",
    "FixedUncertainty",
    "RandomBudget",
    "Split",
    "VariableUncertainty",
    "make_manager",
]


@dataclass(frozen=True)
class Decision:
    """What a manager decided for one arrival.

    Attributes
    ----------
    asked : bool
        Whether the item's label is asked for.
    utility : float
        The utility the decision was made on.
    threshold : float or None
        The utility the item was held against (None for a coin toss: random, or the
        random share of :class:`Split`).
    state : dict
        The manager's budget state after the decision (arrivals, asked, spent share, ...),
        as logged per item.
    """

    asked: bool
    utility: float
    threshold: float | None
    state: dict[str, Any] = field(default_factory=dict)


class BudgetManager(ABC):
    """Base class: budget bookkeeping, the hard cap, and the state round trip.

    Parameters
    ----------
    budget : float
        Share of arrivals whose label may be asked for, in (0, 1].
    tolerance : float
        Labels the manager may be ahead of ``budget * arrivals`` (the cap's window).
    random_state : int, optional
        Seed of the manager's random generator (random and split decisions).
    """

    name: ClassVar[str] = "base"

    def __init__(self, budget: float = 0.1, *, tolerance: float = 1.0, random_state: int = 0):
        self.budget = budget
        self.tolerance = tolerance
        self.random_state = random_state
        self._started = False
        self._confidence = 0.0

    # -- the public contract ----------------------------------------------------------

    def decide(self, utility: float, *, confidence: float | None = None) -> Decision:
        """Decide for one arrival with the given ``utility`` (finite; higher = more useful).

        ``confidence`` is the model's top class probability for the item, which the
        managers of Žliobaitė et al. (2014) that work on that scale read
        (:class:`VariableUncertainty`, :class:`Split`); without it they read
        ``1 - utility`` (for normalized least confidence, the top probability rescaled to
        [0, 1]). Before any model exists pass none: ``utility`` 1, confidence 0.
        """
        self._start()
        u = float(utility)
        if not math.isfinite(u):
            raise ConfigError(f"a stream item's utility must be finite, got {utility!r}")
        c = 1.0 - u if confidence is None else float(confidence)
        if not math.isfinite(c):
            raise ConfigError(f"a stream item's confidence must be finite, got {confidence!r}")
        self._confidence = c
        self.arrivals += 1
        affordable = self._affordable()
        wish, threshold = self._wish(u)
        asked = bool(wish) and affordable
        if asked:
            self.asked += 1
        self._after(u, asked, affordable)
        return Decision(asked, u, threshold, self.state())

    def state(self) -> dict[str, Any]:
        """The budget state logged with each decision (small: no window, no generator)."""
        self._start()
        out: dict[str, Any] = {
            "manager": self.name,
            "budget": self.budget,
            "arrivals": self.arrivals,
            "asked": self.asked,
            "spent": self.asked / self.arrivals if self.arrivals else 0.0,
        }
        out.update(self._extra_state())
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream exactly (JSON-able)."""
        self._start()
        return {
            "manager": self.name,
            "params": self.get_params(),
            "arrivals": self.arrivals,
            "asked": self.asked,
            "rng": _jsonable(self.rng.bit_generator.state),
            "inner": self._inner_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (for the same manager)."""
        if state.get("manager") != self.name:
            raise ConfigError(
                f"stream state was written by manager {state.get('manager')!r}, "
                f"not {self.name!r}; keep [stream] manager as it was or start a new stream"
            )
        self._start()
        self.arrivals = int(state["arrivals"])
        self.asked = int(state["asked"])
        self.rng.bit_generator.state = dict(state["rng"])
        self._load_inner(state.get("inner", {}))

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn style)."""
        return {"budget": self.budget, "tolerance": self.tolerance, **self._params()}

    # -- for subclasses -------------------------------------------------------------------

    @abstractmethod
    def _wish(self, utility: float) -> tuple[bool, float | None]:
        """Whether the manager's own rule would ask, and the threshold used."""

    def _after(self, utility: float, asked: bool, affordable: bool) -> None:
        """Update the rule's state once the decision is final (``affordable``: whether the
        budget allowed an ask, i.e. whether the rule decided)."""

    def _params(self) -> dict[str, Any]:
        return {}

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _inner_state(self) -> dict[str, Any]:
        return {}

    def _load_inner(self, inner: Mapping[str, Any]) -> None:
        return None

    def _check(self) -> None:
        """Validate parameters (called on first use: no work in ``__init__``)."""

    # -- internals ------------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        if not 0.0 < float(self.budget) <= 1.0:
            raise ConfigError(f"budget must be in (0, 1], got {self.budget!r}")
        if not self.tolerance >= 0.0:
            raise ConfigError(f"tolerance must be >= 0, got {self.tolerance!r}")
        self._check()
        self.arrivals = 0
        self.asked = 0
        self.rng = np.random.default_rng(self.random_state)
        self._init_inner()
        self._started = True

    def _init_inner(self) -> None:
        return None

    def _affordable(self) -> bool:
        """The hard cap: one more label keeps ``asked <= budget * arrivals + tolerance``."""
        return self.asked + 1 <= self.budget * self.arrivals + self.tolerance + 1e-9


class _WindowedSpending:
    """Žliobaitė et al.'s spending estimate: ``b = u / w``, ``u <- u (w - 1) / w + asked``."""

    def __init__(self, window: int):
        self.window = window
        self.u = 0.0

    def spent(self) -> float:
        return self.u / self.window

    def update(self, asked: bool) -> None:
        self.u = self.u * (self.window - 1) / self.window + float(asked)


class _SpendingManager(BudgetManager):
    """Managers of Žliobaitė et al. (2014): ask only while the windowed spending < budget."""

    def __init__(
        self,
        budget: float = 0.1,
        *,
        window: int = 100,
        tolerance: float = 1.0,
        random_state: int = 0,
    ):
        super().__init__(budget, tolerance=tolerance, random_state=random_state)
        self.window = window

    def _params(self) -> dict[str, Any]:
        return {"window": self.window}

    def _check(self) -> None:
        if int(self.window) < 1:
            raise ConfigError(f"window must be at least 1, got {self.window!r}")

    def _init_inner(self) -> None:
        self._spending = _WindowedSpending(int(self.window))

    def _affordable(self) -> bool:
        return self._spending.spent() < self.budget and super()._affordable()

    def _after(self, utility: float, asked: bool, affordable: bool) -> None:
        self._spending.update(asked)

    def _extra_state(self) -> dict[str, Any]:
        return {"window_spent": self._spending.spent()}

    def _inner_state(self) -> dict[str, Any]:
        return {"u": self._spending.u}

    def _load_inner(self, inner: Mapping[str, Any]) -> None:
        self._spending.u = float(inner.get("u", 0.0))


class FixedUncertainty(_SpendingManager):
    """Ask when the utility reaches a fixed threshold, while budget remains.

    The "fixed uncertainty" strategy of Žliobaitė et al. (2014, Algorithm 2), on the
    utility scale: ask when ``utility >= threshold`` (for normalized least confidence,
    when the top class probability is at most ``1 - threshold * (1 - 1/c)``).

    Parameters
    ----------
    budget : float
        Share of arrivals that may be labeled.
    threshold : float
        Fixed utility threshold.
    window : int
        Window of the spending estimate.
    """

    name = "fixed_uncertainty"

    def __init__(
        self,
        budget: float = 0.1,
        *,
        threshold: float = 0.5,
        window: int = 100,
        tolerance: float = 1.0,
        random_state: int = 0,
    ):
        super().__init__(budget, window=window, tolerance=tolerance, random_state=random_state)
        self.threshold = threshold

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "threshold": self.threshold}

    def _check(self) -> None:
        super()._check()
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise ConfigError(f"threshold must be a number, got {self.threshold!r}")
        if not math.isfinite(float(self.threshold)):
            raise ConfigError(f"threshold must be finite, got {self.threshold!r}")

    def _wish(self, utility: float) -> tuple[bool, float | None]:
        return utility >= self.threshold, float(self.threshold)


class VariableUncertainty(_SpendingManager):
    """A confidence threshold that adapts: lowered after each ask, raised after each pass.

    Žliobaitė et al. (2014, Algorithm 3, "variable uncertainty"), on the paper's scale, the
    model's top class probability (``confidence`` of :meth:`BudgetManager.decide`): ask
    when ``confidence < θ``, then ``θ ← θ(1 − step)``; after a pass ``θ ← θ(1 + step)``,
    starting at ``θ = 1`` (the paper's setting). The rule runs only while the windowed
    spending is below the budget; otherwise the item is passed and θ stays. In calm
    periods θ climbs until items are asked again, so the budget is spent evenly over time.

    Parameters
    ----------
    budget : float
        Share of arrivals that may be labeled.
    threshold : float
        Initial confidence threshold θ (> 0; the paper starts at 1).
    step : float
        Adjustment step ``s`` (the paper uses 0.01).
    window : int
        Window of the spending estimate.
    """

    name = "variable_uncertainty"

    def __init__(
        self,
        budget: float = 0.1,
        *,
        threshold: float = 1.0,
        step: float = 0.01,
        window: int = 100,
        tolerance: float = 1.0,
        random_state: int = 0,
    ):
        super().__init__(budget, window=window, tolerance=tolerance, random_state=random_state)
        self.threshold = threshold
        self.step = step

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "threshold": self.threshold, "step": self.step}

    def _check(self) -> None:
        super()._check()
        if not float(self.threshold) > 0.0:
            raise ConfigError(f"threshold must be positive, got {self.threshold!r}")
        if not 0.0 < float(self.step) < 1.0:
            raise ConfigError(f"step must be in (0, 1), got {self.step!r}")

    def _init_inner(self) -> None:
        super()._init_inner()
        self._theta = float(self.threshold)

    def _wish(self, utility: float) -> tuple[bool, float | None]:
        return self._confidence < self._theta, self._theta

    def _after(self, utility: float, asked: bool, affordable: bool) -> None:
        super()._after(utility, asked, affordable)
        if affordable:  # the paper adapts only while budget is left (Algorithm 3)
            self._adapt(asked)

    def _adapt(self, asked: bool) -> None:
        self._theta *= (1.0 - self.step) if asked else (1.0 + self.step)
        self._theta = max(self._theta, 1e-12)

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "threshold": self._theta}

    def _inner_state(self) -> dict[str, Any]:
        return {**super()._inner_state(), "theta": self._theta}

    def _load_inner(self, inner: Mapping[str, Any]) -> None:
        super()._load_inner(inner)
        self._theta = float(inner.get("theta", self.threshold))


class Split(VariableUncertainty):
    """A share ``v`` of arrivals decided at random, the rest by variable uncertainty.

    Žliobaitė et al. (2014, Algorithm 5, "split"): with probability ``random_share`` an
    arrival is labeled with probability ``budget`` (an unbiased sample that keeps seeing
    the whole input space, for drift); otherwise the variable-uncertainty rule decides
    (and only those decisions move its threshold).

    Parameters
    ----------
    budget : float
        Share of arrivals that may be labeled.
    random_share : float
        ``v``, the share of arrivals decided by a coin (the paper uses 0.2).
    threshold, step, window
        As in :class:`VariableUncertainty`.
    """

    name = "split"

    def __init__(
        self,
        budget: float = 0.1,
        *,
        random_share: float = 0.2,
        threshold: float = 1.0,
        step: float = 0.01,
        window: int = 100,
        tolerance: float = 1.0,
        random_state: int = 0,
    ):
        super().__init__(
            budget,
            threshold=threshold,
            step=step,
            window=window,
            tolerance=tolerance,
            random_state=random_state,
        )
        self.random_share = random_share

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "random_share": self.random_share}

    def _check(self) -> None:
        super()._check()
        if not 0.0 <= float(self.random_share) <= 1.0:
            raise ConfigError(f"random_share must be in [0, 1], got {self.random_share!r}")

    def _init_inner(self) -> None:
        super()._init_inner()
        self._coin = False

    def _wish(self, utility: float) -> tuple[bool, float | None]:
        self._coin = bool(self.rng.random() < self.random_share)
        if self._coin:
            return bool(self.rng.random() < self.budget), None
        return super()._wish(utility)

    def _after(self, utility: float, asked: bool, affordable: bool) -> None:
        self._spending.update(asked)
        if affordable and not self._coin:
            self._adapt(asked)

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "random_decision": self._coin}


class BalancedIncremental(BudgetManager):
    """Balanced incremental quantile filter: ask for the top ``budget`` share of recent items.

    Kottke, Krempl & Spiliopoulou (2015, "Probabilistic active learning in datastreams",
    IDA): the threshold is the ``1 - budget`` quantile of the last ``window`` utilities
    (the current item included), so the manager asks for items that rank in the top
    ``budget`` share of what arrived recently, whatever the utility's scale. A balance
    term keeps the spent budget on target: with ``acq_left = budget * arrivals - asked``
    labels left over (or overspent, negative), the threshold is lowered (raised) by
    ``range(window) * acq_left / tolerance_window``.

    Parameters
    ----------
    budget : float
        Share of arrivals that may be labeled.
    window : int
        Utilities kept for the quantile.
    tolerance_window : int
        How fast the balance term reacts (arrivals over which a deficit is made up).
    """

    name = "balanced_incremental"

    def __init__(
        self,
        budget: float = 0.1,
        *,
        window: int = 100,
        tolerance_window: int = 50,
        tolerance: float = 1.0,
        random_state: int = 0,
    ):
        super().__init__(budget, tolerance=tolerance, random_state=random_state)
        self.window = window
        self.tolerance_window = tolerance_window

    def _params(self) -> dict[str, Any]:
        return {"window": self.window, "tolerance_window": self.tolerance_window}

    def _check(self) -> None:
        if int(self.window) < 1:
            raise ConfigError(f"window must be at least 1, got {self.window!r}")
        if int(self.tolerance_window) < 1:
            raise ConfigError(f"tolerance_window must be at least 1, got {self.tolerance_window!r}")

    def _init_inner(self) -> None:
        self._recent: deque[float] = deque(maxlen=int(self.window))
        self._theta: float | None = None

    def _wish(self, utility: float) -> tuple[bool, float | None]:
        self._recent.append(utility)
        values = np.fromiter(self._recent, dtype=float)
        theta = float(np.quantile(values, 1.0 - self.budget))
        span = float(values.max() - values.min())
        # ``arrivals`` already counts this item: the deficit before deciding on it.
        left = self.budget * (self.arrivals - 1) - self.asked
        theta_balanced = theta - span * left / float(self.tolerance_window)
        self._theta = theta_balanced
        return utility >= theta_balanced, theta_balanced

    def _extra_state(self) -> dict[str, Any]:
        return {"threshold": self._theta, "window_size": len(self._recent)}

    def _inner_state(self) -> dict[str, Any]:
        return {"recent": list(self._recent), "theta": self._theta}

    def _load_inner(self, inner: Mapping[str, Any]) -> None:
        self._recent = deque((float(v) for v in inner.get("recent", [])), maxlen=int(self.window))
        theta = inner.get("theta")
        self._theta = None if theta is None else float(theta)


class RandomBudget(BudgetManager):
    """The control: ask at random, whatever the utility, spending the budget on target.

    Each arrival is asked for with probability ``budget``, corrected by a balance term
    ``(budget * arrivals - asked) / balance`` (clipped to [0, 1]), so the labels a plain
    coin would leave unspent, or refuse at the hard cap, are made up: random spends the
    same budget as the managers it is compared with, and is still blind to utility.

    Parameters
    ----------
    budget : float
        Share of arrivals that may be labeled.
    balance : int
        Arrivals over which a deficit is made up (larger: closer to a plain coin).
    """

    name = "random"

    def __init__(
        self,
        budget: float = 0.1,
        *,
        balance: int = 50,
        tolerance: float = 1.0,
        random_state: int = 0,
    ):
        super().__init__(budget, tolerance=tolerance, random_state=random_state)
        self.balance = balance

    def _params(self) -> dict[str, Any]:
        return {"balance": self.balance}

    def _check(self) -> None:
        if int(self.balance) < 1:
            raise ConfigError(f"balance must be at least 1, got {self.balance!r}")

    def _wish(self, utility: float) -> tuple[bool, float | None]:
        deficit = self.budget * (self.arrivals - 1) - self.asked
        p = min(1.0, max(0.0, self.budget + deficit / float(self.balance)))
        return bool(self.rng.random() < p), None


#: Manager name -> class (the names ``[stream] manager`` and ``--managers`` accept).
MANAGERS: dict[str, type[BudgetManager]] = {
    cls.name: cls
    for cls in (FixedUncertainty, VariableUncertainty, Split, BalancedIncremental, RandomBudget)
}


def make_manager(
    name: str,
    budget: float,
    params: Mapping[str, Any] | None = None,
    *,
    random_state: int = 0,
) -> BudgetManager:
    """Build the manager ``name`` with ``budget`` and extra ``params`` (checked).

    Raises
    ------
    ConfigError
        Unknown manager, unknown parameter, or a parameter out of range.
    """
    cls = MANAGERS.get(name)
    if cls is None:
        raise ConfigError(
            f"unknown budget manager {name!r}; choose one of {', '.join(sorted(MANAGERS))}"
        )
    for key, value in dict(params or {}).items():
        default = inspect.signature(cls.__init__).parameters.get(key)
        numeric = default is not None and isinstance(default.default, (int, float))
        if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(
                f"budget manager {name!r}: parameter {key} must be a number, got {value!r}"
            )
    try:
        manager = cls(budget, random_state=random_state, **dict(params or {}))
    except TypeError as exc:
        raise ConfigError(f"bad parameters for budget manager {name!r}: {exc}") from None
    try:
        manager.state()  # validates now, not at the first arrival
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad parameters for budget manager {name!r}: {exc}") from None
    return manager


def _jsonable(value: Any) -> Any:
    """A generator state as plain dicts/ints (numpy's own state dict already is)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value
