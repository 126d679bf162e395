"""Background learning for the labeling server: retrain without making annotators wait.

:class:`BackgroundLearner` is a daemon thread the app starts for a human-oracle project
(``create_app(..., background_learning=True)``); ``exemplar serve`` runs it in a process of
its own instead (:class:`LearnerProcess`). Every ``poll_seconds``, or at once when
:meth:`BackgroundLearner.request_retrain` wakes it (``POST /api/v1/retrain``), it looks at
the newest cycle:

* **labeling**: the cycle still has open queue entries. If none of them waits (the last
  items of the batch are all held by annotators), the worker refills the queue from the
  previous ranking, so the other annotators keep labeling; otherwise nothing to do.
* **batch complete, fewer than K new labels**: K is ``[selection] retrain_every`` (0 means
  ``batch_size``); new labels are those not in the cycle model's training set. The loop
  cannot advance mid-batch, so K below ``batch_size`` means "when the batch is complete".
  While fewer than K new labels exist, the worker keeps the queue non-empty from the
  previous ranking (below) and waits for more labels.
* **batch complete and K reached, a retrain was requested, or the cycle is between
  steps**: the worker refills the queue from the previous ranking, then calls
  ``LoopEngine(project).run(max_cycles=2)`` in this thread. That runs compare and
  stop_check, trains, scores and selects the next batch, and returns when the new batch
  waits for labels. The engine takes the project lock: if an ``exemplar run`` holds it, the
  worker logs that and tries again later. Errors are logged, never raised into the server.

**Serving from the previous ranking** (:func:`exemplar.loop.refill.refill_queue`, which
``exemplar refill`` runs too): when no entry is open (or, in the labeling case above, none
waits), up to ``stale_batches * batch_size`` unlabeled, unqueued pool items are enqueued
(no cycle), ranked by the project's strategy on the newest stored scores (``margin`` when
the strategy reads arrays that were not stored; random before the first model). Their
strategy name is ``"stale:<strategy>"``: the queue entries and the labels written for them
say they came from stale scores. When the new model's batch is enqueued, the ``select``
step deletes, in the same transaction, every stale entry still pending and never leased, so
stale scores are never served as fresh. A stale entry an annotator already holds stays
until labeled (or until its lease ends and it is served again); its label is kept and
counts for the next model like any other. Every refill and every batch respects the label
budget: labeled items plus items with an open queue entry never exceed it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

from sqlalchemy import select

from exemplar.errors import ProjectError
from exemplar.loop.engine import LoopEngine, RunOutcome
from exemplar.loop.refill import has_waiting_entries, refill_queue
from exemplar.project import Project
from exemplar.store.labels import current_labels
from exemplar.store.pool import PoolIndex
from exemplar.store.schema import (
    OPEN_QUEUE_STATUSES,
    Cycle,
    CycleState,
    ModelVersion,
    QueueEntry,
    Split,
)

__all__ = [
    "BackgroundLearner",
    "LearnerLink",
    "LearnerProcess",
    "has_waiting_entries",
    "run_learner_process",
]

log = logging.getLogger("exemplar.server.worker")


class BackgroundLearner:
    """Advance the loop in a background thread (see the module docstring for the rules).

    Parameters
    ----------
    project : Project
        The open project the server serves.
    poll_seconds : float, default=1.0
        How often the thread looks at the loop when nobody wakes it.
    max_cycles : int, default=2
        Passed to ``LoopEngine.run``: finish the complete cycle and run the next one up to
        its labels.
    stale_batches : int, default=4
        A stale refill holds up to this many batches (``batch_size`` each), so annotators
        have items for the whole time the next model trains. Stale entries never leased are
        dropped when the fresh batch arrives, so a large refill costs nothing later.
    link : LearnerLink or None
        Set when the learner runs in a process of its own (:class:`LearnerProcess`).
    """

    def __init__(
        self,
        project: Project,
        *,
        poll_seconds: float = 1.0,
        max_cycles: int = 2,
        stale_batches: int = 4,
        link: LearnerLink | None = None,
    ):
        self.project = project
        self.poll_seconds = poll_seconds
        self.max_cycles = max_cycles
        self.stale_batches = stale_batches
        self.link = link
        self._engine: LoopEngine | None = None
        self._index = PoolIndex(project.db)  # caches the pool's item list between refills
        self.runs = 0
        self.last_outcome: RunOutcome | None = None
        self.busy = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._demand = False
        self._lock = threading.Lock()
        self._last_error = ""
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="exemplar-learner", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds (a fit is not cut short)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def request_retrain(self) -> None:
        """Run the loop at the next chance, without waiting for ``retrain_every`` labels."""
        with self._lock:
            self._demand = True
        self._wake.set()

    # -- work ----------------------------------------------------------------------------

    def _main(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                force, self._demand = self._demand, False
            if self.link is not None:
                force = self.link.take_request() or force
            try:
                self.tick(force=force)
            except ProjectError as exc:  # the lock is taken, or the project cannot run yet
                self._note(f"background learning waits: {exc}", logging.INFO)
                if force:
                    with self._lock:
                        self._demand = True  # keep the request for the next try
            except Exception:  # a worker error must never stop the server
                log.exception("background learning failed; retrying in %.1fs", self.poll_seconds)
            if self.link is not None:
                self.link.write_state(self.state())

    def tick(self, *, force: bool = False) -> str:
        """One look at the loop; returns what it did (for tests and logs).

        A stream project (``[stream] enabled``) runs no pool cycle and no refill: its
        stream decides, item by item, what is asked, and retrains its own model.
        """
        if self.project.config.stream.enabled:
            return "stream"
        # One engine for every tick: it caches the pool's item index between cycles.
        engine = self._engine = self._engine or LoopEngine(self.project)
        with self.project.db.read() as s:
            cycle = s.scalar(select(Cycle).order_by(Cycle.number.desc()).limit(1))
            batch_open = cycle is not None and s.scalar(
                select(QueueEntry.id)
                .where(QueueEntry.cycle_id == cycle.id, QueueEntry.status.in_(OPEN_QUEUE_STATUSES))
                .limit(1)
            )
        if cycle is not None and cycle.state == CycleState.STOPPED:
            return "stopped"
        if cycle is not None and cycle.state == CycleState.LABEL:
            if batch_open:
                # The batch's last items are held: keep the other annotators busy.
                if has_waiting_entries(self.project):
                    return "labeling"
                with engine.lock():
                    added = self._refill(while_leased=True)
                return f"labeling (refilled {added})"
            if not force and self._new_labels(cycle) < self._every():
                with engine.lock():
                    added = self._refill()
                return f"collecting labels (refilled {added})"
        self.busy = True
        try:
            with engine.lock():
                self._refill()
            outcome = engine.run(max_cycles=self.max_cycles)
        finally:
            self.busy = False
        self.runs += 1
        self.last_outcome = outcome
        self._last_error = ""
        log.info("background learning: %s (cycle %d)", outcome.status, outcome.cycle)
        return outcome.status

    def _refill(self, *, while_leased: bool = False) -> int:
        size = self.stale_batches * self.project.config.selection.batch_size
        refill = refill_queue(self.project, size=size, while_leased=while_leased, index=self._index)
        if refill.added:
            log.info(
                "queued %d entries from the previous ranking (%s)", refill.added, refill.strategy
            )
        return refill.added

    def _every(self) -> int:
        sel = self.project.config.selection
        return sel.retrain_every or sel.batch_size

    def _new_labels(self, cycle: Cycle) -> int:
        """Labels the cycle's model was not trained on (the training set's growth since)."""
        with self.project.db.read() as s:
            trained_on = 0
            if cycle.model_version_id is not None:
                version = s.get(ModelVersion, cycle.model_version_id)
                trained_on = version.n_labels if version is not None else 0
            n_labeled = len(current_labels(s, splits=(Split.POOL, Split.TRAIN)))
        return n_labeled - trained_on

    def _note(self, message: str, level: int) -> None:
        if message != self._last_error:  # log a repeated condition once
            log.log(level, message)
            self._last_error = message

    def state(self) -> dict[str, Any]:
        """What the worker is doing, for an admin view."""
        last = self.last_outcome
        return {
            "busy": self.busy,
            "runs": self.runs,
            "last": None if last is None else {"status": last.status, "cycle": last.cycle},
        }


# -- the learner in a process of its own (``exemplar serve``) --------------------------------


class LearnerLink:
    """How web workers talk to a learner in another process: two files in the project folder.

    ``POST /api/v1/retrain`` creates ``RETRAIN_FILE`` (the learner removes it and runs);
    the learner rewrites ``STATE_FILE`` (JSON of :meth:`BackgroundLearner.state`) after
    each look at the loop.
    """

    RETRAIN_FILE = ".learner-retrain"
    STATE_FILE = ".learner-state.json"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def request_retrain(self) -> None:
        """Ask the learner to run the loop at its next look (within ``poll_seconds``)."""
        (self.root / self.RETRAIN_FILE).touch()

    def take_request(self) -> bool:
        """Whether a retrain was requested since the last call (consumes the request)."""
        try:
            (self.root / self.RETRAIN_FILE).unlink()
        except FileNotFoundError:
            return False
        return True

    def write_state(self, state: dict[str, Any]) -> None:
        """Publish the learner's state (atomically: readers never see half a file)."""
        path = self.root / self.STATE_FILE
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def state(self) -> dict[str, Any]:
        """The state the learner published last (``runs`` 0 and no ``last`` before that)."""
        try:
            state: dict[str, Any] = json.loads((self.root / self.STATE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            state = {"busy": False, "runs": 0, "last": None}
        return state


def run_learner_process(
    root: str, poll_seconds: float, nice: int, stop: ProcessEvent, parent: int
) -> None:
    """The body of the learner process: a niced :class:`BackgroundLearner` on one CPU thread.

    Runs until ``stop`` is set or the parent process ``parent`` is gone.
    """
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; the parent stops us
    if nice > 0:
        os.nice(nice)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s:     learner %(asctime)s: %(message)s"
    )
    with threadpool_limits(1), Project.open(root) as project:
        link = LearnerLink(project.root)
        link.take_request()  # a request left from an earlier server is stale
        learner = BackgroundLearner(project, poll_seconds=poll_seconds, link=link)
        learner.start()
        try:
            while not stop.wait(1.0) and os.getppid() == parent:
                pass
        finally:
            learner.stop(timeout=10.0)


class LearnerProcess:
    """Run the background learner in a process of its own, at a lower CPU priority.

    Training then never holds the web processes' interpreter lock, and with ``nice`` the
    kernel gives the web processes the CPU first: annotators never wait for training.

    Parameters
    ----------
    root : Path
        The project folder.
    poll_seconds : float, default=1.0
        How often the learner looks at the loop (and for retrain requests).
    nice : int, default=10
        Added to the learner's niceness (0 keeps the server's priority).
    """

    def __init__(self, root: Path, *, poll_seconds: float = 1.0, nice: int = 10) -> None:
        self.root = Path(root)
        self.poll_seconds = poll_seconds
        self.nice = nice
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._process = context.Process(
            target=run_learner_process,
            args=(str(self.root), poll_seconds, nice, self._stop, os.getpid()),
            name="exemplar-learner",
            daemon=True,
        )

    @property
    def pid(self) -> int | None:
        """The learner's process id once started."""
        return self._process.pid

    def is_alive(self) -> bool:
        """Whether the learner process runs."""
        return self._process.is_alive()

    def start(self) -> None:
        """Start the learner process."""
        self._process.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the learner to end, wait up to ``timeout`` s, then terminate it.

        The learner waits up to 10 s for a step in progress; a step cut short is safe (the
        loop resumes at the step it was in).
        """
        self._stop.set()
        self._process.join(timeout)
        if self._process.is_alive():
            log.warning("the learner did not stop within %.0f s; terminating it", timeout)
            self._process.terminate()
            self._process.join(5.0)
