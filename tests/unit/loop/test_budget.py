"""The label budget is a hard limit on every path that queues (issue 10, defect 2).

With ``--budget 40`` the labeling server's background learner and its stale refills let 44
labels in on SQLite and 45 on PostgreSQL: a refill made while annotators held the last
entries of a batch counted the labels but not the open entries. Now labeled items plus
items with an open queue entry never exceed the budget, so every queued entry can be
labeled and the project ends with exactly ``budget`` labels. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import func, select

from exemplar.loop.refill import refill_queue
from exemplar.project import Project
from exemplar.server.worker import BackgroundLearner
from exemplar.store.pool import budget_room, budget_spent
from exemplar.store.queue import LeasedItem
from exemplar.store.schema import Item, Label
from loop_helpers import make_project

BUDGET = 40
_NAMES = itertools.count()  # every lease by a new annotator


def _truth(project: Project, item_id: int) -> str:
    with project.db.read() as s:
        value = s.get_one(Item, item_id).ground_truth
    assert value is not None
    return value


def _n_labeled(project: Project) -> int:
    with project.db.read() as s:
        return int(s.scalar(select(func.count(func.distinct(Label.item_id)))) or 0)


def _spent(project: Project) -> int:
    with project.db.read() as s:
        return budget_spent(s)


def _lease_all(project: Project) -> list[LeasedItem]:
    """Lease every waiting entry, one annotator per entry (as a crowd of annotators would)."""
    held: list[LeasedItem] = []
    while (leased := project.next_item(f"annotator-{next(_NAMES)}")) is not None:
        held.append(leased)
    return held


def _submit(project: Project, leased: list[LeasedItem]) -> None:
    for item in leased:
        project.submit_label(item.entry_id, item.annotator, _truth(project, item.item_id))


@pytest.mark.parametrize("hold", [3, 7])
def test_background_learner_and_stale_refills_stop_at_the_budget(
    tmp_path: Path, database_url: str, hold: int
) -> None:
    with make_project(
        tmp_path / "p", database_url=database_url, oracle="human", budget=BUDGET, n=200
    ) as project:
        learner = BackgroundLearner(project)  # not started: the test calls tick() itself
        for _ in range(30):
            learner.tick(force=True)  # retrain when it can, else refill from stale scores
            held = _lease_all(project)
            if not held:
                break
            # Annotators label all but the last few, which they still hold while the
            # learner looks again: it refills the queue while those leases are open.
            _submit(project, held[:-hold])
            learner.tick()
            assert _spent(project) <= BUDGET
            more = _lease_all(project)
            _submit(project, held[-hold:] + more)
            assert _spent(project) <= BUDGET
        assert _n_labeled(project) == BUDGET
        assert project.status()["cycle"]["state"] == "stopped"
        assert refill_queue(project).added == 0  # nothing more may be queued


def test_refill_counts_open_entries_against_the_budget(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", oracle="human", budget=25, n=200) as project:
        assert project.run().status == "waiting"  # cycle 0: 20 entries, none labeled yet
        held = _lease_all(project)
        assert len(held) == 20
        # Nothing waits (all 20 are held): a refill may add only the 5 the budget has left.
        assert refill_queue(project, size=40, while_leased=True).added == 5
        with project.db.read() as s:
            assert budget_spent(s) == 25 and budget_room(s, 25, lock=False) == 0
        assert len(_lease_all(project)) == 5  # nothing waits again, but the budget is spent
        refill = refill_queue(project, size=40, while_leased=True)
        assert refill.added == 0 and "label budget of 25 is spent" in refill.reason


def test_overlap_slots_count_once_per_item(tmp_path: Path) -> None:
    with make_project(
        tmp_path / "p", oracle="human", budget=25, n=200, oracle_extra={"overlap": 2}
    ) as project:
        assert project.run().status == "waiting"  # 20 items, 2 slots each
        _lease_all(project)
        refill = refill_queue(project, size=40, while_leased=True)
        assert refill.added == 10  # 5 items, 2 slots each
        with project.db.read() as s:
            assert budget_spent(s) == 25


def test_no_budget_means_no_limit(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", oracle="human", n=100) as project, project.db.read() as s:
        assert budget_room(s, float("inf")) > 10**9


def test_budget_spent_before_the_first_model_is_reported_in_whole_labels(tmp_path: Path) -> None:
    # Cycle 0 has no model: its stop check compares the labels with the budget itself.
    with make_project(tmp_path / "p", budget=20, n=200) as project:
        outcome = project.run()
        assert outcome.status == "stopped" and outcome.cycle == 0
        assert outcome.message == "label budget of 20 reached"  # was "20.0"
        assert _n_labeled(project) == 20


def test_select_checks_the_budget_again_in_its_enqueueing_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exemplar.loop.engine import LoopEngine
    from exemplar.store.pool import STALE_PREFIX, pool_items
    from exemplar.store.queue import enqueue

    with make_project(tmp_path / "p", oracle="human", budget=25, n=200) as project:
        assert project.run().status == "waiting"  # cycle 0: 20 entries
        _submit(project, _lease_all(project))
        estimate = LoopEngine._budget_left
        raced: list[int] = []

        def race(engine: LoopEngine) -> int:
            # Once, after select's estimate (5 left): another enqueuer queues 5 items that
            # annotators lease at once (a refill elsewhere), before select enqueues.
            room = estimate(engine)
            if not raced:
                with project.db.session() as s:
                    _, ids = pool_items(s)
                    labeled = set(s.scalars(select(Label.item_id)))
                    others = [int(i) for i in ids[::-1] if int(i) not in labeled][:5]
                    enqueue(s, None, [(i, f"{STALE_PREFIX}elsewhere", None) for i in others])
                raced.append(len(_lease_all(project)))
            return room

        monkeypatch.setattr(LoopEngine, "_budget_left", race)
        project.run()
        assert raced == [5]
        assert _spent(project) == 25  # 20 labeled + 5 leased: select queued nothing more
