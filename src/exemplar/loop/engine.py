"""The resumable loop: train → select_model → score → select → label → compare → stop?

Each cycle is a row in ``cycles`` whose ``state`` names the step to run next. A step
does its work, then records its results and the next state in **one** transaction, so a
process killed anywhere resumes at the step it was in. Steps are deterministic given the
database (seeds are derived from the project seed and the cycle number; files are
written atomically under names fixed by the cycle), so re-running an interrupted step
gives the same result as a run that was never killed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock
from sklearn.model_selection import KFold
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from exemplar.curation.relabel import (
    NO_LABEL,
    activelab_scores,
    majority_vote,
    plan_batch,
    to_project_classes,
)
from exemplar.engines import score_pool_ray
from exemplar.errors import ConfigError, ModelError, ProjectError, StoreError
from exemplar.loop.context import LoopContext
from exemplar.loop.curate import curate_cycle, finish_class_change
from exemplar.loop.faults import crash_point
from exemplar.loop.lock import project_lock
from exemplar.loop.model_selector import CandidateResult, best_candidate
from exemplar.loop.oracle import Oracle, make_oracle
from exemplar.loop.scoring import (
    ScoredPool,
    drop_scored,
    load_scored,
    save_scored,
    score_pool,
)
from exemplar.loop.segments import frame_segments
from exemplar.loop.selection import pick_batch
from exemplar.loop.tasks import (
    LabeledSet,
    ObjectTask,
    bind_files,
    make_task,
    model_inputs,
    predict_proposals,
    reads_files,
    write_proposals,
)
from exemplar.models import (
    ModelAdapter,
    checkpoint_classes,
    checkpoint_suffix,
    family_of,
    get_recipe,
    load_model,
    make_model,
    save_model,
)
from exemplar.models.label_cost import LabelCostModel
from exemplar.objects import Objects
from exemplar.predictions import Predictions
from exemplar.stopping import Observation
from exemplar.store.annotations import objects_labeled
from exemplar.store.label_times import timed_labels
from exemplar.store.pool import NO_BUDGET, PoolIndex, budget_room, drop_stale_entries, still_free
from exemplar.store.queue import add_vote_slots, enqueue
from exemplar.store.schema import (
    OPEN_QUEUE_STATUSES,
    Cycle,
    CycleState,
    Item,
    Label,
    ModelVersion,
    QueueEntry,
    Split,
)
from exemplar.store.votes import item_votes
from exemplar.strategies import ALBL, CostAware, ReducedSamples, Strategy, get_strategy

__all__ = ["LoopEngine", "RunOutcome", "cycle_seed"]

#: Items in the fixed "stop set" on which stabilizing predictions are compared.
STOP_SET_SIZE = 1000


def cycle_seed(project_seed: int, number: int) -> int:
    """The recorded seed of a cycle: a function of the project seed and cycle number only."""
    return int(np.random.SeedSequence([project_seed, number]).generate_state(1)[0])


@dataclass(frozen=True)
class RunOutcome:
    """Why ``run`` returned."""

    status: str  # "stopped" | "waiting" | "max_cycles"
    cycle: int
    state: str
    message: str


class LoopEngine:
    """Drives one project's cycles. Use :meth:`run`; it takes the project lock.

    Parameters
    ----------
    project : LoopContext
        An open project (:class:`~exemplar.project.Project` satisfies the protocol).
    wait : bool, default=False
        With a human or file oracle, poll until the batch is labeled instead of returning
        ``"waiting"``.
    poll_seconds : float, default=1.0
        Poll interval while waiting for labels.
    on_event : callable, optional
        Called with a short message at every state transition (for progress display).
    """

    def __init__(
        self,
        project: LoopContext,
        *,
        wait: bool = False,
        poll_seconds: float = 1.0,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.project = project
        self.cfg = project.config
        self.oracle: Oracle = make_oracle(project, project.config.oracle)
        self.task = make_task(project)
        self.wait = wait
        self.poll_seconds = poll_seconds
        self.on_event = on_event or (lambda _msg: None)
        self._index = PoolIndex(project.db)  # the pool's item list, cached between cycles

    # -- driving -----------------------------------------------------------------------

    def run(self, max_cycles: int | None = None) -> RunOutcome:
        """Run cycles until a stopping criterion fires, labels are awaited, or ``max_cycles``."""
        if self.project.config.stream.enabled:
            raise ProjectError(
                "this is a stream project ([stream] enabled = true): its items are decided as "
                "they arrive (exemplar stream feed, POST /api/v1/stream/items), not by pool "
                "cycles; `exemplar run` does not apply"
            )
        with self.lock():
            if self.project.n_rows == 0:
                raise ProjectError("the project has no items; run `exemplar import` first")
            if finish_class_change(self.project):  # a split or merge a crash interrupted
                self.on_event("finished an interrupted class change in exemplar.toml")
            self._check_budget()
            finished = 0
            while True:
                cycle = self._current_cycle()
                if cycle.state == CycleState.STOPPED:
                    return RunOutcome("stopped", cycle.number, cycle.state, cycle.stop_reason or "")
                if max_cycles is not None and finished >= max_cycles:
                    return RunOutcome(
                        "max_cycles", cycle.number, cycle.state, f"ran {finished} cycle(s)"
                    )
                crash_point(f"enter:{cycle.state}:{cycle.number}")
                t0 = time.perf_counter()
                waiting = self._step(cycle)
                if waiting is not None:
                    return RunOutcome("waiting", cycle.number, cycle.state, waiting)
                after = self._current_cycle()
                self.on_event(
                    f"cycle {cycle.number}: {cycle.state} done in {time.perf_counter() - t0:.2f}s"
                )
                if after.number != cycle.number:
                    finished += 1

    def _step(self, cycle: Cycle) -> str | None:
        """Run the cycle's current state; return a message if labels must be awaited."""
        handlers: dict[str, Callable[[Cycle], str | None]] = {
            CycleState.TRAIN: self._train,
            CycleState.SELECT_MODEL: self._select_model,
            CycleState.SCORE: self._score,
            CycleState.CURATE: self._curate,
            CycleState.SELECT: self._select,
            CycleState.LABEL: self._label,
            CycleState.COMPARE: self._compare,
            CycleState.STOP_CHECK: self._stop_check,
        }
        return handlers[cycle.state](cycle)

    # -- states ------------------------------------------------------------------------

    def _train(self, cycle: Cycle) -> None:
        t0 = time.perf_counter()
        labeled = self.task.labeled(self.project, for_training=True)
        previous = self._cycle(cycle.number - 1)
        missing = sorted(set(self.project.classes) - set(self._labeled_classes(labeled)))
        if missing:
            self.on_event(
                f"warning: no labels yet for class(es) {', '.join(missing)}; the model cannot "
                "predict them until some are labeled"
            )
        if not self.task.trainable(labeled):
            self._advance(cycle, CycleState.SELECT, decision_note="cold_start")
            return
        if previous is not None and previous.decision == "skip" and previous.model_version_id:
            self._advance(
                cycle,
                CycleState.SELECT,
                model_version_id=previous.model_version_id,
                metrics={"reused_model": True},
            )
            return
        objects = isinstance(self.task, ObjectTask)  # each candidate reads its own inputs
        X = np.empty(0) if objects else np.asarray(self.project.features()[labeled.rows])
        results = self._evaluate(labeled, X, cycle.seed)
        versions = []
        for k, res in enumerate(results):
            version = f"c{cycle.number:04d}-m{k}"
            path = self._save_checkpoint(version, res.candidate.recipe, res.model)
            versions.append(
                ModelVersion(
                    version=version,
                    cycle_id=cycle.id,
                    recipe=res.candidate.recipe,
                    params=res.candidate.params,
                    path=str(path.relative_to(self.project.root)),
                    # verified labels only: weak labels (curation) are not labels
                    n_labels=int(
                        labeled.size if labeled.trusted is None else labeled.trusted.sum()
                    ),
                    metrics={**res.metrics, "protocol": res.protocol, **self._units(labeled)},
                )
            )
        crash_point(f"train:{cycle.number}:saved")
        with self.project.db.session() as s:
            for old in s.scalars(select(ModelVersion).where(ModelVersion.cycle_id == cycle.id)):
                s.delete(old)
            s.flush()
            s.add_all(versions)
            self._transition(s, cycle, CycleState.SELECT_MODEL, timing=("train", t0))

    def _evaluate(self, labeled: LabeledSet, X: np.ndarray, seed: int) -> list[CandidateResult]:
        """Fit and validate every candidate on the labeled set (the task decides how)."""
        if isinstance(self.task, ObjectTask):  # a detector uses every core
            return self.task.evaluate(self.project, labeled, X, seed)
        with threadpool_limits(limits=1):  # small fits: a second BLAS thread only contends
            return self.task.evaluate(self.project, labeled, X, seed)

    def _select_model(self, cycle: Cycle) -> None:
        t0 = time.perf_counter()
        with self.project.db.session() as s:
            versions = list(
                s.scalars(
                    select(ModelVersion)
                    .where(ModelVersion.cycle_id == cycle.id)
                    .order_by(ModelVersion.version)
                )
            )
            best = versions[best_candidate([v.metrics for v in versions], self.cfg.model.criterion)]
            for v in versions:
                v.selected = v.id == best.id
            row = s.get_one(Cycle, cycle.id)
            row.model_version_id = best.id
            row.metrics = {
                **row.metrics,
                "model": best.version,
                "validation": {k: v for k, v in best.metrics.items()},
                "n_labels": best.n_labels,
            }
            self._transition(s, cycle, CycleState.SCORE, timing=("select_model", t0))
        self._prune_checkpoints(cycle.number)

    def _score(self, cycle: Cycle) -> None:
        t0 = time.perf_counter()
        self._score_version(self._version(cycle), cycle)
        crash_point(f"score:{cycle.number}:saved")
        cur = self.cfg.curation
        after = CycleState.CURATE if cur.auto or cur.unverified == "expire" else CycleState.SELECT
        with self.project.db.session() as s:
            self._transition(s, cycle, after, timing=("score", t0))

    def _curate(self, cycle: Cycle) -> None:
        """Run ``[curation] auto`` (propose, label errors, prune): proposals and operations
        a reviewer confirms; nothing is relabeled or removed here."""
        t0 = time.perf_counter()
        version = self._version(cycle) if cycle.model_version_id else None
        model = self._load_model(version, cycle, committee=False) if version else None

        def proba() -> np.ndarray | None:
            if version is None:
                return None
            self._rescore_if_lost(version)
            return np.asarray(self.project.arrays.load(f"proba-{version.version}"))

        found = curate_cycle(
            self.project,
            cycle,
            model=model,
            version=version.version if version else None,
            recipe=version.recipe if version else None,
            proba=proba,
        )
        crash_point(f"curate:{cycle.number}:recorded")
        with self.project.db.session() as s:
            row = s.get_one(Cycle, cycle.id)
            row.metrics = {
                **row.metrics,
                "curation": {
                    "proposed": found.proposed,
                    "expired": found.expired,
                    "operations": found.operations or [],
                },
            }
            self._transition(s, cycle, CycleState.SELECT, timing=("curate", t0))

    def _select(self, cycle: Cycle) -> None:
        t0 = time.perf_counter()
        labeled = self._labeled()
        version = self._version(cycle) if cycle.model_version_id else None
        n_scored = self.project.n_rows
        predictions: Predictions | None = None
        reduced: ReducedSamples | None = None
        if version is not None:
            predictions, reduced = self._load_scored(version)
            n_scored = predictions.n_items
        pool_rows, pool_ids = self._pool(n_scored)
        if pool_rows.size == 0:
            with self.project.db.session() as s:
                self._stop(s, cycle, "the pool is exhausted: every item is labeled or queued")
            return
        budget_left = self._budget_left()
        if budget_left < 1:  # the label budget is a hard limit: labeled + queued <= budget
            with self.project.db.session() as s:
                self._stop(
                    s,
                    cycle,
                    f"label budget of {self._budget():.0f} reached: every item it allows is "
                    "labeled or queued",
                )
            return
        # The recorded cycle is the source of truth: its batch size and strategy, not the
        # config as it reads now (a user may edit exemplar.toml between cycles).
        scored = labeled.rows < n_scored
        objects = isinstance(self.task, ObjectTask)
        segments = None
        if self.cfg.data.segment_frames > 0:  # video frames: one per segment in a batch first
            with self.project.db.read() as s:
                segments = frame_segments(s, pool_ids.tolist(), self.cfg.data.segment_frames)
        base = self._strategy(cycle)
        bandit = self._bandit(base, cycle, version) if predictions is not None else None
        if bandit is not None and version is not None and predictions is not None:
            predictions = self._with_classes(predictions, version)
        strategy, cost_record = self._cost_aware(base, cycle, predictions, version)
        # ActiveLab: part of the batch may go to one more vote on labeled items.
        activelab = self.cfg.oracle.relabel == "activelab" and not objects
        relabels: list[tuple[int, int | None, str | None, float | None, int]] = []
        relabel_record = None
        if activelab and version is not None and predictions is not None:
            relabels, relabel_record = self._relabel_slots(
                version, predictions, pool_rows, cycle.batch_size
            )
        new_size = cycle.batch_size - len(relabels)
        picks = (
            pick_batch(
                predictions,
                strategy,
                pool_rows,
                labeled.rows[scored],
                None if objects else labeled.y[scored],
                batch_size=new_size,
                seed=cycle.seed,
                cold_start=version is None,
                n_labeled=int(labeled.y.size),
                initial_size=self.cfg.selection.initial_size,
                control_fraction=self.cfg.selection.control_fraction,
                budget_left=budget_left,
                reduced=reduced,
                segments=segments,
            )
            if new_size > 0
            else []
        )
        position = np.searchsorted(pool_rows, [p.row for p in picks])
        entries: list[tuple[int, str | None, float | None]] = [
            (int(pool_ids[k]), p.strategy, p.score) for k, p in zip(position, picks, strict=True)
        ]
        proposals = (
            self._proposals(version, cycle, [p.row for p in picks], pool_ids[position])
            if objects and version is not None
            else {}
        )
        with self.project.db.session() as s:
            drop_stale_entries(s)
            # The budget once more in the enqueueing transaction: it is a hard limit.
            free = still_free(s, entries)[: self._room(s)]
            # With ActiveLab a new item gets one annotator; relabels ask for more.
            enqueue(s, cycle.id, free, overlap=1 if activelab else self.cfg.oracle.overlap)
            if relabels:
                add_vote_slots(s, relabels)
            if bandit is not None and bandit.last_arm is not None:  # ALBL: resumable bandit
                row = s.get_one(Cycle, cycle.id)
                row.metrics = {
                    **row.metrics,
                    "albl": bandit.state_dict(),
                    "albl_arm": bandit.last_arm,
                }
            if cost_record is not None or relabel_record is not None:  # for the record
                row = s.get_one(Cycle, cycle.id)
                extra = {"cost_model": cost_record, "relabel": relabel_record}
                row.metrics = {**row.metrics, **{k: v for k, v in extra.items() if v}}
            if proposals:
                queued = {item_id for item_id, _, _ in free}
                write_proposals(
                    s,
                    {i: objs for i, objs in proposals.items() if i in queued},
                    self.project,
                    model_version=version.version if version is not None else None,
                    cycle_id=cycle.id,
                )
            self._transition(s, cycle, CycleState.LABEL, timing=("select", t0))

    def _label(self, cycle: Cycle) -> str | None:
        """Hand the open entries to the oracle until none is left, or return why not."""
        while entries := self._open_entries(cycle):
            waiting = self.oracle.collect(cycle, entries)
            if waiting is None:
                continue
            if not self.wait:
                return waiting
            time.sleep(self.poll_seconds)
        with self.project.db.session() as s:
            self._transition(s, cycle, CycleState.COMPARE)
        return None

    def _compare(self, cycle: Cycle) -> None:
        t0 = time.perf_counter()
        with self.project.db.read() as s:
            batch_ids = sorted(
                set(s.scalars(select(QueueEntry.item_id).where(QueueEntry.cycle_id == cycle.id)))
            )
        decision, batch_metrics = "retrain", {}
        if cycle.model_version_id and batch_ids:
            version = self._version(cycle)
            model = self._load_model(version, cycle, committee=False)
            batch_metrics = self.task.batch_metrics(self.project, model, batch_ids)
            kpi = self.cfg.kpi
            if batch_metrics:
                decision = "skip" if batch_metrics[kpi.metric] >= kpi.target else "retrain"
        with self.project.db.session() as s:
            row = s.get_one(Cycle, cycle.id)
            row.decision = decision
            row.metrics = {**row.metrics, "batch": batch_metrics}
            self._transition(s, cycle, CycleState.STOP_CHECK, timing=("compare", t0))

    def _stop_check(self, cycle: Cycle) -> None:
        criteria = self.cfg.stopping.build()
        previous = self._cycle(cycle.number - 1)
        if previous is not None and previous.stopping_state:
            criteria.load_state_dict(previous.stopping_state)
        spent = self._spent()
        if cycle.model_version_id is None:
            state = previous.stopping_state if previous is not None else {}
            if spent >= self._budget():
                with self.project.db.session() as s:
                    self._stop(s, cycle, f"label budget of {self._budget():.0f} reached")
                return
            with self.project.db.session() as s:
                self._finish(s, cycle, state)
            return
        version = self._version(cycle)
        self._rescore_if_lost(version)
        objects = isinstance(self.task, ObjectTask)
        kind = "counts" if objects else "proba"
        scores = self.project.arrays.load(f"{kind}-{version.version}")
        classes = np.asarray(self._load_model(version, cycle, committee=False).classes_)
        pool_rows, _ = self._pool(scores.shape[0])
        stop_rows = self._stop_set(scores.shape[0])
        obs = Observation(
            round=cycle.number,
            n_labeled=int(spent),
            stop_set_predictions=self.task.stop_predictions(scores[stop_rows], classes),
            pool_proba=np.asarray(scores[pool_rows]) if pool_rows.size and not objects else None,
            metrics=_flat_metrics(cycle.metrics),
        )
        decision = criteria.update(obs)
        with self.project.db.session() as s:
            if decision.stop:
                row = s.get_one(Cycle, cycle.id)
                row.stopping_state = criteria.state_dict()
                self._stop(s, cycle, decision.reason)
            else:
                self._finish(s, cycle, criteria.state_dict())

    # -- queries -------------------------------------------------------------------------

    def _current_cycle(self) -> Cycle:
        with self.project.db.read() as s:
            cycle = s.scalar(select(Cycle).order_by(Cycle.number.desc()).limit(1))
        if cycle is not None:
            return cycle
        if self.project.n_rows == 0:
            raise ProjectError("the project has no items; run `exemplar import` first")
        with self.project.db.session() as s:
            cycle = s.scalar(select(Cycle).order_by(Cycle.number.desc()).limit(1))
            return cycle if cycle is not None else self._new_cycle(s, 0)

    def _cycle(self, number: int) -> Cycle | None:
        if number < 0:
            return None
        with self.project.db.read() as s:
            return s.scalar(select(Cycle).where(Cycle.number == number))

    def _labeled(self) -> LabeledSet:
        return self.task.labeled(self.project)

    def _labeled_classes(self, labeled: LabeledSet) -> set[str]:
        if labeled.objects is None:
            return set(labeled.y.tolist())
        classes = self.project.classes
        return {classes[int(c)] for objs in labeled.objects for c in objs.classes}

    def _units(self, labeled: LabeledSet) -> dict[str, int]:
        """What a model was trained on, beyond its items: its objects, for object tasks."""
        return {} if labeled.objects is None else {"n_objects": labeled.n_objects}

    def _pool(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows (ascending) and item ids of pool items below ``n_rows`` with no label and no
        open queue entry (a droppable stale entry does not count)."""
        return self._index.free(n_rows, self.project.n_rows)

    def _stop_set(self, n_rows: int) -> np.ndarray:
        """A fixed sample of item rows (from the project seed) for stabilizing predictions."""
        rng = np.random.default_rng([self.cfg.project.seed, 7_919])
        size = min(STOP_SET_SIZE, n_rows)
        return np.sort(rng.choice(n_rows, size=size, replace=False))

    def _open_entries(self, cycle: Cycle) -> list[QueueEntry]:
        with self.project.db.read() as s:
            return list(
                s.scalars(
                    select(QueueEntry)
                    .where(
                        QueueEntry.cycle_id == cycle.id,
                        QueueEntry.status.in_(OPEN_QUEUE_STATUSES),
                    )
                    .order_by(QueueEntry.rank)
                )
            )

    def _version(self, cycle: Cycle) -> ModelVersion:
        with self.project.db.read() as s:
            return s.get_one(ModelVersion, cycle.model_version_id)

    def _strategy(self, cycle: Cycle) -> Strategy:
        """The strategy the cycle recorded, with the parameters it recorded.

        Cycles recorded before parameters were recorded take the config's parameters
        when the config still names the same strategy.
        """
        params = cycle.metrics.get("strategy_params")
        if params is None:
            sel = self.cfg.selection
            same = get_strategy(sel.strategy).name == cycle.strategy
            params = dict(sel.params) if same else {}
        return get_strategy(cycle.strategy, **params)

    def _bandit(
        self, strategy: Strategy, cycle: Cycle, version: ModelVersion | None
    ) -> ALBL | None:
        """An :class:`~exemplar.strategies.ALBL` strategy continuing the bandit recorded by
        the latest earlier cycle, with the predictions that cycle selected on (the reward's
        previous model); None for any other strategy or at cold start.

        When that cycle's checkpoint was pruned, the bandit continues without them and
        skips one reward (``[model] keep_checkpoints`` of 2 or more keeps it).
        """
        if not isinstance(strategy, ALBL) or version is None:
            return None
        with self.project.db.read() as s:
            earlier = s.scalars(
                select(Cycle).where(Cycle.number < cycle.number).order_by(Cycle.number.desc())
            )
            last = next((c for c in earlier if "albl" in (c.metrics or {})), None)
            previous = s.get(ModelVersion, last.model_version_id) if last is not None else None
        if last is None:
            return strategy
        strategy.load_state_dict(last.metrics["albl"])
        if previous is not None:
            try:
                seen, _ = self._load_scored(previous)
                strategy.remember(self._with_classes(seen, previous))
            except (ProjectError, StoreError, ModelError):
                self.on_event(f"albl: model {previous.version} is gone; one reward is skipped")
        return strategy

    def _with_classes(self, predictions: Predictions, version: ModelVersion) -> Predictions:
        """``predictions`` with the class of each probability column (from the checkpoint)."""
        if predictions.classes is not None or predictions.proba is None:
            return predictions
        classes = checkpoint_classes(self.project.root / version.path, version.recipe)
        return dataclasses.replace(predictions, classes=np.asarray(classes))

    def _cost_aware(
        self,
        strategy: Strategy,
        cycle: Cycle,
        predictions: Predictions | None,
        version: ModelVersion | None,
    ) -> tuple[Strategy, dict[str, Any] | None]:
        """``strategy`` wrapped in :class:`~exemplar.strategies.CostAware` when the project
        asks for cost-aware selection and ``cost_min_labels`` labels carry a time.

        The expected seconds come from a :class:`~exemplar.models.label_cost.LabelCostModel`
        fitted on the timed labels (Settles, Craven & Friedland 2008): item features and,
        for a scikit-learn recipe of feature rows, the model's *out-of-sample* probabilities
        of the timed items (3-fold, as :meth:`_out_of_sample`), since the stored ones are
        in-sample for labeled items and would not look like the pool's; other recipes use
        item features only. Items imported after the pool was scored are left out. The
        second value is what is recorded in the cycle's metrics (None when off).
        """
        sel = self.cfg.selection
        if not sel.cost_aware:
            return strategy, None
        if isinstance(strategy, ALBL):
            raise ConfigError(
                "[selection].cost_aware = true does not work with strategy 'albl' (its "
                "importance weights assume its arm's batch is the batch labeled)"
            )
        if predictions is None or version is None:
            return strategy, {"applied": False, "reason": "no model yet (cold start)"}
        if predictions.proba is None or isinstance(self.task, ObjectTask):
            return strategy, {"applied": False, "reason": "classification only"}
        with self.project.db.read() as s:
            newest = s.scalar(select(func.max(Label.id)))
            timed = timed_labels(s, through_label_id=newest)
        if len(timed) < sel.cost_min_labels:
            reason = f"{len(timed)} timed labels, fewer than cost_min_labels={sel.cost_min_labels}"
            return strategy, {"applied": False, "reason": reason, "n_timed": len(timed)}
        proba = predictions.proba
        n_scored = int(proba.shape[0])
        try:
            X: np.ndarray | None = self.project.features()[:n_scored]
        except ProjectError:
            X = None
        # Items imported since the pool was scored have no probabilities: left out.
        keep = timed.rows < n_scored
        rows, seconds, labels = timed.rows[keep], timed.seconds[keep], timed.labels[keep]
        held = self._timed_proba(version, rows, labels) if rows.size else None
        model = LabelCostModel(min_labels=sel.cost_min_labels, random_state=cycle.seed).fit(
            None if X is None else np.asarray(X[rows]), seconds, proba=held, labels=labels
        )
        costs = model.predict(X, proba=proba if held is not None or X is None else None)
        record = {
            "applied": True,
            "through_label_id": newest,
            "inputs": [
                name
                for name, used in (("features", X is not None), ("proba", held is not None))
                if used
            ],
            **model.summary_.to_dict(),
        }
        return CostAware(strategy, costs=costs), record

    def _timed_proba(
        self, version: ModelVersion, rows: np.ndarray, labels: np.ndarray
    ) -> np.ndarray | None:
        """Out-of-sample probabilities of timed ``rows`` in the columns of ``version``'s
        model (its stored pool probabilities' columns), or None when they cannot be had
        (a recipe :meth:`_out_of_sample` does not refit, or labels outside the classes)."""
        classes = list(self.project.classes)
        index = {c: i for i, c in enumerate(classes)}
        unique, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        given = [str(x) for x in np.asarray(labels)[first]]
        if any(c not in index for c in given):
            return None
        votes = np.array([index[c] for c in given], dtype=np.int64)
        held = self._out_of_sample(version, unique, votes, index)
        if held is None:
            return None
        model_classes = checkpoint_classes(self.project.root / version.path, version.recipe)
        if any(str(c) not in index for c in model_classes):
            return None
        out = held[:, [index[str(c)] for c in model_classes]].astype(np.float64)
        total = out.sum(axis=1, keepdims=True)
        out = np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / out.shape[1])
        return out[inverse.ravel()]

    def _relabel_slots(
        self,
        version: ModelVersion,
        predictions: Predictions,
        pool_rows: np.ndarray,
        batch_size: int,
    ) -> tuple[list[tuple[int, int | None, str | None, float | None, int]], dict[str, Any]]:
        """The labeled items that get one more vote in this batch (ActiveLab, Goh & Mueller
        2023), as :func:`~exemplar.store.queue.add_vote_slots` entries, and the record.

        Every labeled item and every pool candidate is scored on one scale
        (:func:`~exemplar.curation.relabel.activelab_scores`, from the standing votes and
        the model's probabilities); the lowest scores get the batch's labels. An item can
        be relabeled while it has fewer than ``overlap`` votes, its round has no open slot,
        and its votes came through the queue.
        """
        with self.project.db.read() as s:
            voted = item_votes(s)
        classes = list(self.project.classes)
        index = {c: i for i, c in enumerate(classes)}
        voted = [v for v in voted if all(c in index for c in v.votes.values())]
        if not voted or predictions.proba is None:
            return [], {"asked": 0, "reason": "no votes to weigh"}
        model_classes = [
            str(c) for c in checkpoint_classes(self.project.root / version.path, version.recipe)
        ]
        proba = predictions.proba
        # Classes the model knows but the project no longer has: columns dropped.
        dropped = to_project_classes(proba[:0], model_classes, classes)[1]

        def full(rows: np.ndarray) -> np.ndarray:
            return to_project_classes(proba[rows], model_classes, classes)[0]

        annotators = sorted({a for v in voted for a in v.votes})
        matrix = np.full((len(voted), len(annotators)), NO_LABEL, dtype=np.int64)
        for i, v in enumerate(voted):
            for a, c in v.votes.items():
                matrix[i, annotators.index(a)] = index[c]
        rows = np.array([v.row for v in voted], dtype=np.int64)
        votes = majority_vote(matrix, len(classes))
        held_out = self._out_of_sample(version, rows, votes, index)
        labeled_proba = full(rows) if held_out is None else held_out
        scores = activelab_scores(
            matrix, labeled_proba, full(pool_rows) if pool_rows.size else None
        )
        eligible = np.array([v.slots > 0 and not v.open for v in voted], dtype=bool)
        plan = plan_batch(
            scores, matrix, batch_size, max_labels=self.cfg.oracle.overlap, eligible=eligible
        )
        entries: list[tuple[int, int | None, str | None, float | None, int]] = [
            (voted[i].item_id, voted[i].cycle_id, "activelab", float(score), rank)
            for rank, ((kind, i), score) in enumerate(zip(plan.order, plan.scores, strict=True))
            if kind == "relabel"
        ]
        accuracy = dict(zip(annotators, scores.annotator_accuracy.tolist(), strict=True))
        record = {
            "asked": len(entries),
            "new": batch_size - len(entries),
            "annotator_accuracy": {a: round(x, 4) for a, x in accuracy.items()},
            "model_weight": round(scores.model_weight, 4),
            "out_of_sample": held_out is not None,
        }
        if dropped:
            record["dropped_classes"] = dropped
        return entries, record

    def _out_of_sample(
        self, version: ModelVersion, rows: np.ndarray, votes: np.ndarray, index: dict[str, int]
    ) -> np.ndarray | None:
        """Cross-validated probabilities of labeled ``rows`` (3 folds of ``version``'s recipe
        fit on the majority ``votes``), as ActiveLab asks; None for a recipe that is not a
        scikit-learn model of feature rows (the stored, in-sample ones are used then)."""
        recipe = get_recipe(version.recipe)
        if recipe.family != "sklearn" or recipe.inputs != "rows" or rows.size < 6:
            return None
        classes = list(self.project.classes)
        X = np.asarray(self.project.features()[rows])
        y = np.array([classes[int(v)] for v in votes])
        out = np.full((rows.size, len(classes)), 1.0 / len(classes), dtype=np.float32)
        folds = KFold(3, shuffle=True, random_state=0)
        with threadpool_limits(limits=1):
            for train, test in folds.split(X):
                if np.unique(y[train]).size < 2:
                    continue
                model = make_model(
                    version.recipe, 0, device=self.cfg.model.device, **version.params
                ).fit(X[train], y[train])
                proba = model.predict(X[test]).require_proba()
                out[test] = 0.0
                out[np.ix_(test, [index[str(c)] for c in model.classes_])] = proba
        return out

    def _budget(self) -> float:
        budget = self.cfg.stopping.label_budget
        return float(budget) if budget is not None else float("inf")

    def _unit(self) -> Literal["items", "objects"]:
        return self.cfg.stopping.budget_unit

    def _budget_left(self) -> int:
        """Items a fresh batch may still queue: the budget less labeled and queued items.

        Stale entries that the fresh batch replaces (never leased) do not count. With a
        budget in objects, a batch may be queued while objects are left (its size in items
        is the cycle's batch size).
        """
        with self.project.db.read() as s:
            room = budget_room(
                s, self._budget(), keep_droppable=False, lock=False, unit=self._unit()
            )
        return room if self._unit() == "items" or room < 1 else NO_BUDGET

    def _room(self, s: Session) -> int:
        """The budget's room in the enqueueing transaction (items; see :meth:`_budget_left`)."""
        room = budget_room(s, self._budget(), unit=self._unit())
        return room if self._unit() == "items" or room < 1 else NO_BUDGET

    def _spent(self) -> int:
        """Labels used so far, in the budget's unit (labeled items, or objects)."""
        if self._unit() == "items":
            return self._labeled().size
        with self.project.db.read() as s:
            return objects_labeled(s)

    def _check_budget(self) -> None:
        budget = self._budget()
        if budget == float("inf") or self._unit() == "objects":
            return
        with self.project.db.read() as s:
            n_pool = (
                s.scalar(select(func.count()).select_from(Item).where(Item.split == Split.POOL))
                or 0
            )
        if budget > n_pool:
            raise ConfigError(
                f"the label budget ({budget:.0f}) is larger than the pool ({n_pool} items); "
                "lower [stopping] label_budget or import more items"
            )

    # -- models and arrays -------------------------------------------------------------

    def _save_checkpoint(self, version: str, recipe: str, model: ModelAdapter) -> Path:
        self.project.models_dir.mkdir(parents=True, exist_ok=True)
        return save_model(model, self.project.models_dir / f"{version}{checkpoint_suffix(recipe)}")

    def _load_model(
        self, version: ModelVersion, cycle: Cycle, *, committee: bool = True
    ) -> ModelAdapter:
        """The checkpoint as an adapter.

        Deep models give stochastic samples themselves (MC dropout or ensemble members);
        a scikit-learn checkpoint becomes a bagged committee when the strategy needs samples.
        """
        path = self.project.root / version.path
        if not path.exists():
            raise ProjectError(f"checkpoint {path} of model {version.version} is missing")
        # Local checkpoints written by this project only (DESIGN.md §4): never untrusted input.
        try:
            adapter = load_model(
                version.recipe,
                path,
                device=self.cfg.model.device,
                chunk_size=self.cfg.selection.chunk_size,
            )
        except ModelError as exc:
            raise ProjectError(f"model {version.version}: {exc}") from exc
        bind_files(self.project, adapter)
        family = family_of(version.recipe)
        if (
            committee
            and family.needs_committee_for_samples
            and "samples" in self._strategy(cycle).requires
        ):
            # The checkpoint stays the committee's main model: only the members are fitted.
            labeled = self._labeled()
            X = np.asarray(self.project.features()[labeled.rows])
            return family.with_samples(adapter, X, labeled.y, seed=cycle.seed)
        return adapter

    def _score_version(self, version: ModelVersion, cycle: Cycle) -> None:
        """Score the pool with ``version``'s checkpoint and store the arrays.

        ``cycle`` is the cycle that trained ``version``: its seed and strategy.
        """
        model = self._load_model(version, cycle)
        X = self._inputs(version)
        pool_rows, _ = self._pool(X.shape[0])
        if self.cfg.scoring.engine == "ray":  # same arrays, scored by Ray Data (docs/scale.md)
            # (a detection project with engine "ray" is refused when the config loads)
            arrays, scoring = self.project.arrays, self.cfg.scoring
            shards = arrays.root / "shards" / version.version
            # Embeddings and whole samples are assembled straight into their arrays/ files.
            on_disk = {
                k: arrays.root / "arrays" / f"{k}-{version.version}.npy"
                for k in ("embeddings", "samples")
            }
            scored = score_pool_ray(
                model,
                X,
                self._strategy(cycle),
                unlabeled=pool_rows,
                rows_per_task=scoring.rows_per_task,
                shard_dir=shards,
                shard_format=scoring.shard_format,
                address=scoring.ray_address,
                num_cpus=scoring.num_cpus,
                chunk_size=self.cfg.selection.chunk_size,
                x_rows=scoring.x_rows,
                out_paths=on_disk,
            )
            pred = scored.predictions
            stored = {
                k: None
                for k, path in on_disk.items()
                if Path(getattr(getattr(pred, k), "filename", None) or "").resolve()
                == path.resolve()
            }
            rest = ScoredPool(dataclasses.replace(pred, **stored), scored.reduced)
            save_scored(arrays, version.version, rest)  # the other arrays, as local scores
            shutil.rmtree(shards, ignore_errors=True)
            return
        scored = score_pool(
            model,
            X,
            self._strategy(cycle),
            unlabeled=pool_rows,
            chunk_size=self.cfg.selection.chunk_size,
            tmp_dir=self.project.arrays.root,
            objects=isinstance(self.task, ObjectTask),
        )
        save_scored(self.project.arrays, version.version, scored)

    def _rescore_if_lost(self, version: ModelVersion) -> None:
        """Score ``version`` again from its checkpoint when arrays it stored are gone.

        A deleted or lost ``arrays/`` folder then costs one scoring pass (recorded as the
        ``rescore`` timing of the current cycle), not the project. Scoring is deterministic
        given the checkpoint, the features and the cycle's seed, so the selection that
        follows is the one an uninterrupted run makes. One exception: a scikit-learn model
        scored for a sample strategy is a committee refit from the labels at scoring time;
        for a model reused from an earlier cycle, those labels have grown since, so the
        committee (and the picks) may differ from the lost ones.
        """
        store, name = self.project.arrays, version.version
        with self.project.db.read() as s:
            trained_in = s.get_one(Cycle, version.cycle_id)
        needs = self._strategy(trained_in).requires
        first = "counts" if isinstance(self.task, ObjectTask) else "proba"
        missing: list[str] = [k for k in (first, "embeddings") if k in {first, *needs}]
        missing = [k for k in missing if not store.exists(f"{k}-{name}")]
        if "samples" in needs and not any(
            store.exists(f"{k}-{name}") for k in ("utility", "samples")
        ):
            missing.append("samples")
        if not missing:
            return
        checkpoint = self.project.root / version.path
        if not checkpoint.exists():
            raise ProjectError(
                f"the scores of model {name} ({', '.join(missing)} in {store.root / 'arrays'}) "
                f"and its checkpoint {checkpoint} are missing, so the pool cannot be scored "
                f"again. Restore {checkpoint.parent} (and arrays/) from a backup of "
                f"{self.project.root} and run again. Without a backup, start a new project "
                "from the same data and labels: `exemplar export labels.csv -p OLD`, "
                "`exemplar init NEW ...`, `exemplar import DATA -p NEW`, "
                "`exemplar import-labels labels.csv -p NEW`, `exemplar run -p NEW`"
            )
        self.on_event(
            f"warning: the scores of model {name} ({', '.join(missing)}) are missing from "
            f"arrays/; scoring the pool again from checkpoint {version.path}"
        )
        t0 = time.perf_counter()
        try:
            self.project.features()
        except StoreError as exc:  # features.f32 is beside arrays/, not in it
            raise ProjectError(
                f"cannot score model {name} again: {exc}. Restore {store.features_path} "
                "from a backup, or re-import the data into a new project and carry the "
                "labels over: `exemplar export labels.csv -p OLD`, `exemplar init NEW ...`, "
                "`exemplar import DATA -p NEW`, `exemplar import-labels labels.csv -p NEW`"
            ) from exc
        self._score_version(version, trained_in)
        with self.project.db.session() as s:
            current = s.scalar(select(Cycle).order_by(Cycle.number.desc()).limit(1))
            if current is not None:
                seconds = round(time.perf_counter() - t0, 6)
                current.timings = {**current.timings, "rescore": seconds}

    def _load_scored(self, version: ModelVersion) -> tuple[Predictions, ReducedSamples | None]:
        """The arrays the score state stored (memory-mapped): predictions and reduced samples.

        Lost arrays are scored again from the checkpoint first (:meth:`_rescore_if_lost`).
        """
        self._rescore_if_lost(version)
        scored = load_scored(self.project.arrays, version.version)
        return scored.predictions, scored.reduced

    def _proposals(
        self, version: ModelVersion, cycle: Cycle, rows: Sequence[int], item_ids: np.ndarray
    ) -> dict[int, Objects]:
        """The model's objects on the picked items (its frame): the proposals an annotator
        verifies or rejects, once :func:`write_proposals` has stored them in image pixels."""
        if not rows:
            return {}
        model = self._load_model(version, cycle, committee=False)
        return predict_proposals(self.project, model, version.recipe, rows, item_ids)

    def _discard_run(self, version: ModelVersion) -> None:
        """Delete the run folder an external trainer's pruned checkpoint names (its weights
        and dataset), when it lies inside the project."""
        if not reads_files(version.recipe):
            return
        path = self.project.root / version.path
        try:
            run = Path(json.loads(path.read_text(encoding="utf-8"))["run_dir"]).resolve()
        except (OSError, ValueError, KeyError, TypeError):
            return
        if run.is_dir() and run.is_relative_to(self.project.root.resolve()):
            shutil.rmtree(run, ignore_errors=True)

    def _inputs(self, version: ModelVersion, rows: np.ndarray | None = None) -> np.ndarray:
        """What ``version``'s model reads for feature ``rows`` (all when None)."""
        if not isinstance(self.task, ObjectTask):
            features = self.project.features()
            return features if rows is None else np.asarray(features[rows])
        return model_inputs(self.project, reads_files(version.recipe), rows)

    def _prune_checkpoints(self, number: int) -> None:
        keep_from = number - self.cfg.model.keep_checkpoints + 1
        with self.project.db.read() as s:
            old = s.execute(
                select(ModelVersion, Cycle.number)
                .join(Cycle, Cycle.id == ModelVersion.cycle_id)
                .where(
                    (Cycle.number < keep_from) | (~ModelVersion.selected & (Cycle.number < number))
                )
            ).all()
            in_use = {
                c
                for c in s.scalars(select(Cycle.model_version_id).where(Cycle.number >= keep_from))
                if c is not None
            }
        for version, _ in old:
            if version.id in in_use:
                continue
            self._discard_run(version)
            (self.project.root / version.path).unlink(missing_ok=True)
            drop_scored(self.project.arrays, version.version)
        self._sweep_runs()

    def _sweep_runs(self) -> None:
        """Delete external trainers' run folders no checkpoint names: those of fits whose
        cycle was interrupted before its checkpoints were recorded (the resumed cycle
        trains again, in a new folder). Runs only under the project lock."""
        runs = self.project.root / "external"
        if not runs.is_dir():
            return
        named = set()
        for checkpoint in self.project.models_dir.glob("*.json"):
            try:
                named.add(Path(json.loads(checkpoint.read_text("utf-8"))["run_dir"]).resolve())
            except (OSError, ValueError, KeyError, TypeError):
                continue
        for run in runs.glob("run-*"):
            if run.is_dir() and run.resolve() not in named:
                shutil.rmtree(run, ignore_errors=True)

    # -- transitions -------------------------------------------------------------------

    def _advance(self, cycle: Cycle, state: CycleState, **fields: Any) -> None:
        with self.project.db.session() as s:
            row = s.get_one(Cycle, cycle.id)
            note = fields.pop("decision_note", None)
            if note:
                row.metrics = {**row.metrics, "note": note}
            for key, value in fields.items():
                if key == "metrics":
                    row.metrics = {**row.metrics, **value}
                else:
                    setattr(row, key, value)
            self._transition(s, cycle, state)

    def _transition(
        self,
        session: Session,
        cycle: Cycle,
        state: CycleState,
        *,
        timing: tuple[str, float] | None = None,
    ) -> None:
        row = session.get_one(Cycle, cycle.id)
        if row.state != cycle.state:
            raise ProjectError(
                f"cycle {cycle.number} moved from {cycle.state} to {row.state} underneath this "
                "process; is another `exemplar run` driving the project?"
            )
        if timing is not None:
            name, t0 = timing
            row.timings = {**row.timings, name: round(time.perf_counter() - t0, 6)}
        row.state = state

    def _finish(self, session: Session, cycle: Cycle, stopping_state: dict[str, Any]) -> None:
        row = session.get_one(Cycle, cycle.id)
        row.stopping_state = stopping_state
        self._transition(session, cycle, CycleState.DONE)
        self._new_cycle(session, cycle.number + 1)

    def _stop(self, session: Session, cycle: Cycle, reason: str) -> None:
        row = session.get_one(Cycle, cycle.id)
        row.stop_reason = reason
        self._transition(session, cycle, CycleState.STOPPED)

    def _new_cycle(self, session: Session, number: int) -> Cycle:
        sel = self.cfg.selection
        cycle = Cycle(
            number=number,
            state=CycleState.TRAIN,
            seed=cycle_seed(self.cfg.project.seed, number),
            strategy=get_strategy(sel.strategy).name,
            batch_size=sel.batch_size,
            metrics={"strategy_params": dict(sel.params)},
        )
        session.add(cycle)
        session.flush()
        return cycle

    def lock(self) -> FileLock:
        """The project lock that :meth:`run` takes (a context manager; raises ProjectError
        at once when another process holds it). Hold it to change the queue beside the loop,
        e.g. for :func:`~exemplar.loop.refill.refill_queue`."""
        return project_lock(self.project.root)


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in ("validation", "batch"):
        for name, value in (metrics.get(key) or {}).items():
            if isinstance(value, (int, float)):
                out[name if key == "validation" else f"batch_{name}"] = float(value)
    return out
