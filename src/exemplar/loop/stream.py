"""Stream mode: items arrive one at a time, and each is asked for (or not) at once.

Two pieces:

* :class:`StreamLearner`, in memory: a model, a budget manager
  (:mod:`exemplar.stream.budget`) and the labels received so far. For each arriving item
  it computes the model's uncertainty (:func:`exemplar.stream.uncertainty`), lets the
  manager decide, and, given the label, retrains from scratch every ``retrain_every`` new
  labels (the simulator drives it, with an oracle that answers at once).
* :class:`ProjectStream`, a project's stream: the same decision for items already stored
  in the project, with each decision logged as a
  :class:`~exemplar.store.schema.StreamDecision` row (seq, utility, threshold, asked,
  budget state, model version) and the manager's full state saved in the same
  transaction, so a stream resumed in another process continues the same decisions.
  Asked items go to the labeling queue (a human oracle), or are labeled at once from
  their hidden ground truth (``[oracle] kind = "simulated"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from exemplar.errors import ConfigError, StoreError
from exemplar.loop.context import LoopContext
from exemplar.models import ModelAdapter, make_model
from exemplar.store.labels import add_label, count_current_labels, current_labels
from exemplar.store.queue import enqueue, unpark
from exemplar.store.schema import Item, LabelSource, Meta, QueueEntry, StreamDecision
from exemplar.stream import BudgetManager, Decision, make_manager, uncertainty

__all__ = [
    "STREAM_STRATEGY",
    "ProjectStream",
    "StreamLearner",
    "StreamStep",
    "StreamedItem",
    "enqueue_stream_item",
]

#: The ``strategy`` recorded on queue entries and labels of stream items.
STREAM_STRATEGY = "stream"
#: The meta key holding the manager's full state (see :meth:`BudgetManager.state_dict`).
STATE_KEY = "stream_state"
#: The PostgreSQL advisory lock key that serialises stream decisions across processes.
STREAM_LOCK_KEY = 0x57E4A


@dataclass(frozen=True)
class StreamStep:
    """One arrival as :meth:`StreamLearner.process` handled it."""

    decision: Decision
    predicted: Any
    label: Any = None
    retrained: bool = False


class StreamLearner:
    """A model that learns from a stream under a labeling budget.

    Parameters
    ----------
    model_factory : callable
        Returns a fresh, unfitted :class:`~exemplar.models.ModelAdapter` (retrained from
        scratch at each retrain: small-text's model-factory contract).
    manager : BudgetManager
        Decides, from an item's utility, whether to ask for its label.
    retrain_every : int
        New labels between two retrains (the first model is fitted as soon as the labels
        hold two classes).

    Notes
    -----
    Before any model exists every item has utility 1 (maximal uncertainty): the manager's
    budget alone decides, which is the cold start of Žliobaitė et al. (2014).
    """

    def __init__(
        self,
        model_factory: Callable[[], ModelAdapter],
        manager: BudgetManager,
        *,
        retrain_every: int = 10,
    ):
        if retrain_every < 1:
            raise ConfigError(f"retrain_every must be at least 1, got {retrain_every}")
        self.model_factory = model_factory
        self.manager = manager
        self.retrain_every = retrain_every
        self.model: ModelAdapter | None = None
        self.fits = 0
        self._X: list[np.ndarray] = []
        self._y: list[Any] = []
        self._since_fit = 0

    @property
    def n_labels(self) -> int:
        """Labels received so far."""
        return len(self._y)

    def fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> StreamLearner:
        """Replace the labels with ``(X, y)`` and fit the model on them now (a warm start)."""
        X = np.asarray(X)
        self._X = [row for row in X]
        self._y = list(y)
        self._refit()
        return self

    def proba(self, x: np.ndarray) -> np.ndarray | None:
        """The current model's class probabilities for one item (None: no model yet)."""
        if self.model is None:
            return None
        pred = self.model.predict(np.asarray(x)[None, ...])
        assert pred.proba is not None
        return np.asarray(pred.proba[0])

    def utility(self, x: np.ndarray) -> float:
        """The item's utility: the model's normalized uncertainty (1 without a model)."""
        p = self.proba(x)
        return 1.0 if p is None else float(uncertainty(p)[0])

    def decide(self, x: np.ndarray) -> Decision:
        """Decide at once whether to ask for ``x``'s label."""
        p = self.proba(x)
        if p is None:
            return self.manager.decide(1.0)
        return self.manager.decide(float(uncertainty(p)[0]), confidence=float(p.max()))

    def learn(self, x: np.ndarray, label: Any) -> bool:
        """Add one label; retrain when ``retrain_every`` labels arrived since the last fit
        (or when no model exists yet and the labels now hold two classes).

        Returns
        -------
        bool
            Whether the model was retrained.
        """
        self._X.append(np.asarray(x))
        self._y.append(label)
        self._since_fit += 1
        if self._since_fit >= self.retrain_every or (self.model is None and len(set(self._y)) >= 2):
            return self._refit()
        return False

    def process(self, x: np.ndarray, oracle: Callable[[], Any] | None = None) -> StreamStep:
        """Handle one arrival: predict, decide, and (if asked and ``oracle`` is given)
        learn its label at once."""
        p = self.proba(x)
        u = 1.0 if p is None else float(uncertainty(p)[0])
        predicted = (
            None if p is None or self.model is None else self.model.classes_[int(p.argmax())]
        )
        decision = self.manager.decide(u, confidence=None if p is None else float(p.max()))
        if not decision.asked or oracle is None:
            return StreamStep(decision, predicted)
        label = oracle()
        return StreamStep(decision, predicted, label, self.learn(x, label))

    def _refit(self) -> bool:
        self._since_fit = 0
        if len(set(self._y)) < 2:
            self.model = None
            return False
        model = self.model_factory()
        with threadpool_limits(limits=1):
            model.fit(np.stack(self._X), np.asarray(self._y))
        self.model = model
        self.fits += 1
        return True


@dataclass(frozen=True)
class StreamedItem:
    """What :meth:`ProjectStream.process` decided for one stored item."""

    seq: int
    item_id: int
    asked: bool
    utility: float
    threshold: float | None
    budget_state: dict[str, Any]
    model_version: str | None
    label: str | None = None
    #: The item was stored and decided before: this is that earlier decision, unchanged.
    duplicate: bool = False

    @classmethod
    def from_row(cls, row: StreamDecision, *, duplicate: bool = False) -> StreamedItem:
        """A logged decision (``label`` is not logged: None)."""
        return cls(
            row.seq,
            row.item_id,
            row.asked,
            row.utility,
            row.threshold,
            dict(row.budget_state or {}),
            row.model_version,
            None,
            duplicate,
        )


class ProjectStream:
    """A project's stream: decisions on stored items, logged, resumable, feeding the queue.

    The model is the project's first model candidate (``[model] candidates[0]``),
    refitted on every verified label of the project whenever ``[stream] retrain_every``
    new ones arrived (labels from the labeling app count as they come in). The budget
    manager is ``[stream] manager`` with ``budget`` and ``params``; its state is restored
    from the database when the stream is opened and re-read when another process moved
    the stream on. An asked item is queued at the end of the feed (human oracle) or labeled
    at once from its ground truth (``[oracle] kind = "simulated"``).
    """

    def __init__(self, ctx: LoopContext):
        if ctx.config.project.task != "classification":
            raise ConfigError(
                f"stream mode labels classes; this project's task is {ctx.config.project.task}"
            )
        self.ctx = ctx
        self.manager = self._fresh_manager()
        self.seq = 0
        self.model: ModelAdapter | None = None
        self.model_version: str | None = None
        self._trained_on = -1
        self._trained_upto = -1

    # -- public -----------------------------------------------------------------------

    def process(self, item_ids: Sequence[int]) -> list[StreamedItem]:
        """Decide, in order, for each of ``item_ids`` (items stored in the project).

        The decisions, the manager's state, the queue entries and (simulated oracle) the
        labels are written together, in one transaction per run of items between two
        retrains (one for the whole call unless a simulated label makes a retrain due).
        """
        out: list[StreamedItem] = []
        todo = [int(i) for i in item_ids]
        try:
            while todo:
                n_labels = self._maybe_retrain()
                done = self._process_some(todo, n_labels)
                out.extend(done)
                todo = todo[len(done) :]
        except SQLAlchemyError as exc:
            self.seq = -1  # the transaction rolled back: reload the state next time
            raise StoreError(f"the stream's decisions were not saved, retry: {exc}") from exc
        except BaseException:
            self.seq = -1
            raise
        return out

    def _process_some(self, item_ids: list[int], n_labels: int) -> list[StreamedItem]:
        """Decide for a prefix of ``item_ids`` in one transaction; stop after the item whose
        (simulated) label makes a retrain due, so the next item sees the new model."""
        features = self.ctx.features()
        out: list[StreamedItem] = []
        simulated = self.ctx.config.oracle.kind == "simulated"
        every = self.ctx.config.stream.retrain_every
        classes = self.ctx.classes
        with self.ctx.db.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                # One decider at a time across processes (SQLite: BEGIN IMMEDIATE already).
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STREAM_LOCK_KEY})
            self._sync(s)
            wanted = sorted(set(item_ids))
            rows: dict[int, int] = dict(
                s.execute(select(Item.id, Item.row).where(Item.id.in_(wanted))).all()
            )
            missing = [i for i in item_ids if i not in rows]
            if missing:
                raise StoreError(f"no item with id {missing[0]} in this project")
            truths: dict[int, str | None] = {}
            if simulated:
                query = select(Item.id, Item.ground_truth).where(Item.id.in_(wanted))
                truths = dict(s.execute(query).all())
            position = self._feed_length(s)
            added = 0
            for item_id in item_ids:
                x = np.asarray(features[rows[item_id]])
                utility, confidence = self._utility(x)
                decision = self.manager.decide(utility, confidence=confidence)
                self.seq += 1
                label = None
                s.add(
                    StreamDecision(
                        seq=self.seq,
                        item_id=item_id,
                        manager=self.manager.name,
                        utility=decision.utility,
                        threshold=decision.threshold,
                        asked=decision.asked,
                        budget_state=decision.state,
                        model_version=self.model_version,
                    )
                )
                if decision.asked:
                    truth = truths.get(item_id)
                    if simulated and truth is not None:
                        label = truth
                        add_label(
                            s,
                            item_id,
                            label,
                            classes=classes,
                            source=LabelSource.SIMULATED,
                            strategy=STREAM_STRATEGY,
                            score=decision.utility,
                            model_version=self.model_version,
                        )
                        added += 1
                    else:
                        s.flush()
                        position += enqueue_stream_item(s, item_id, decision.utility, position)
                out.append(
                    StreamedItem(
                        self.seq,
                        item_id,
                        decision.asked,
                        decision.utility,
                        decision.threshold,
                        decision.state,
                        self.model_version,
                        label,
                    )
                )
                if added and (n_labels + added - self._trained_on >= every or self.model is None):
                    break
            self._save_state(s)
        return out

    def retrain(self, upto: int | None = None) -> bool:
        """Refit the model on every verified label now; False if they hold < 2 classes.

        With ``upto`` (a label id), only labels written up to it count: the model another
        process (or this stream before a restart) trained, rebuilt exactly.
        """
        with self.ctx.db.read() as s:
            labels = current_labels(s)
        if upto is not None:
            labels = [lab for lab in labels if lab.label_id <= upto]
        self._trained_on = len(labels)
        self._trained_upto = max((lab.label_id for lab in labels), default=0)
        if len({lab.label for lab in labels}) < 2:
            self.model, self.model_version = None, None
            return False
        candidate = self.ctx.config.model.candidates[0]
        model = make_model(
            candidate.recipe,
            self.ctx.config.project.seed,
            device=self.ctx.config.model.device,
            **candidate.params,
        )
        rows = np.fromiter((lab.row for lab in labels), dtype=np.int64, count=len(labels))
        y = np.asarray([lab.label for lab in labels])
        with threadpool_limits(limits=1):
            model.fit(np.asarray(self.ctx.features()[rows]), y)
        self.model = model
        self.model_version = f"stream-{len(labels)}"
        return True

    # -- internals --------------------------------------------------------------------

    def _maybe_retrain(self) -> int:
        """Rebuild the stream's saved model if ours differs, then retrain when due; return
        the number of verified labels now."""
        with self.ctx.db.read() as s:
            n = count_current_labels(s)
            raw = s.scalar(select(Meta.value).where(Meta.key == STATE_KEY))
        saved = None if raw is None else json.loads(raw).get("model")
        if saved is not None and saved["upto"] != self._trained_upto:
            self.retrain(upto=int(saved["upto"]))
        every = self.ctx.config.stream.retrain_every
        if (
            self._trained_on < 0
            or n - self._trained_on >= every
            or (self.model is None and n != self._trained_on)
        ):
            self.retrain()
        return n

    def _utility(self, x: np.ndarray) -> tuple[float, float | None]:
        """The item's utility and the model's top class probability (None: no model)."""
        if self.model is None:
            return 1.0, None
        pred = self.model.predict(x[None, ...])
        assert pred.proba is not None
        return float(uncertainty(pred.proba)[0]), float(np.max(pred.proba[0]))

    def _fresh_manager(self) -> BudgetManager:
        cfg = self.ctx.config.stream
        try:
            return make_manager(
                cfg.manager, cfg.budget, cfg.params, random_state=self.ctx.config.project.seed
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[stream] params for manager {cfg.manager!r}: {exc}") from None

    def _sync(self, s: Session) -> None:
        """Continue from the stream's stored state (read under the stream's lock) when it
        is not ours: another process moved it on, or our last transaction failed."""
        last = s.scalar(select(func.max(StreamDecision.seq)))
        last = int(last or 0)
        if last == self.seq:
            return
        raw = s.scalar(select(Meta.value).where(Meta.key == STATE_KEY))
        if raw is None and last == 0:  # nothing decided yet: a new stream
            self.manager = self._fresh_manager()
            self.seq = 0
            return
        if raw is None:
            raise StoreError(
                f"the stream has {last} decisions but no saved manager state ({STATE_KEY})"
            )
        state = json.loads(raw)
        if int(state.get("seq", -1)) != last:
            raise StoreError(
                f"the saved stream state is at seq {state.get('seq')}, the log at {last}"
            )
        manager = self._fresh_manager()
        try:
            manager.load_state_dict(state["manager"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"the saved stream state is unreadable: {exc}") from None
        self.manager = manager
        self.seq = last

    def _save_state(self, s: Session) -> None:
        model = {"upto": self._trained_upto, "n": self._trained_on}
        value = json.dumps({"seq": self.seq, "manager": self.manager.state_dict(), "model": model})
        row = s.get(Meta, STATE_KEY)
        if row is None:
            s.add(Meta(key=STATE_KEY, value=value))
        else:
            row.value = value

    @staticmethod
    def _feed_length(s: Session) -> int:
        """Entries queued by the stream so far: the next entry's rank (its feed position)."""
        n = s.scalar(
            select(func.count())
            .select_from(QueueEntry)
            .where(
                QueueEntry.cycle_id.is_(None),
                QueueEntry.strategy == STREAM_STRATEGY,
                QueueEntry.slot == 0,
            )
        )
        return int(n or 0)


def enqueue_stream_item(s: Session, item_id: int, utility: float, position: int) -> int:
    """Queue one asked item at feed position ``position`` (its rank); returns entries added.

    Stream entries have no cycle; an item already queued by the stream is not queued twice.
    """
    added = enqueue(s, None, [(item_id, STREAM_STRATEGY, utility)], first_rank=position)
    unpark(s, None, STREAM_STRATEGY, position)
    return added
