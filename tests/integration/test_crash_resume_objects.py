"""``kill -9`` at the states of a detection project's ``exemplar run``, then resume (issue #11).

A small project of synthetic cells (64 px images, one CenterNet candidate, every proposal
kept) runs three cycles: a cold-start batch of 6 images, then two batches of 3 picked by a
detector that proposes objects on them, which the simulated oracle verifies (moved onto the
true box), rejects, or completes by drawing the objects it missed. Killed at a state (or in
the middle of the oracle's per-image transactions) and resumed, the project must end exactly
like an uninterrupted run on a copy of it: the same queue per cycle, labels, cycles and
model versions, and the same history of every object (proposals, verdicts, drawn objects),
which detector training reproduces bit for bit given the cycle's seed. Beyond that equality:
every proposal is settled exactly once, no item gets a second set of proposals, the labeled
images hold exactly their true objects, and nothing committed before the kill is lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exemplar.objects import box_iou
from exemplar.project import Project
from exemplar.store.annotations import AnnotationStatus
from exemplar.store.schema import Annotation, Label, LabelSource, QueueEntry
from loop_helpers import make_cells_project, object_snapshot

pytest.importorskip("torch")

BUDGET = 12  # cycle 0: 6 cold-start images; cycles 1 and 2: 3 each; stops at cycle 2
#: Enough steps on 6 images for the detector to find a few true objects (verified proposals).
PARAMS = {"epochs": 2, "batch_size": 2, "lr": 0.01}
KILL_POINTS = [
    "enter:train:1",
    "train:1:saved",
    "enter:score:1",
    "score:1:saved",
    "enter:select:1",
    "enter:label:1",  # proposals written with the batch, none settled yet
    "enter:compare:1",
    "enter:stop_check:1",
    "label:0:2",  # the cold-start batch: objects drawn, no proposals
    "label:2:0",
    "enter:stop_check:2",  # the stopping cycle
]
#: The representative case that runs without ``-m slow``: mid-way through the oracle's
#: per-image transactions on a batch with proposals.
FAST_POINT = "label:1:1"


def _run_cli(root: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EXEMPLAR_CRASH_AT"}
    if crash_at:
        env["EXEMPLAR_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "exemplar", "run", "--project", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _rows(root: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every label row and annotation row, by id (what a resume must keep unchanged)."""
    with Project.open(root) as p, p.db.read() as s:
        labels = [
            (lab.id, lab.item_id, lab.label, lab.status, lab.cycle_id, lab.strategy)
            for lab in s.scalars(select(Label).order_by(Label.id))
        ]
        annotations = [
            (a.id, a.object_id, a.item_id, a.label, a.status, a.source, a.cycle_id)
            + (a.x0, a.y0, a.x1, a.y1, a.confidence)
            for a in s.scalars(select(Annotation).order_by(Annotation.id))
        ]
    return labels, annotations


def _check_objects(root: Path) -> Counter[str]:
    """Invariants of a finished project's objects; returns the proposals' verdicts."""
    verdicts: Counter[str] = Counter()
    with Project.open(root) as p, p.db.read() as s:
        queued = {
            (e.item_id, e.cycle_id) for e in s.scalars(select(QueueEntry)) if e.status == "done"
        }
        labeled = {lab.item_id for lab in s.scalars(select(Label))}
        history: dict[int, list[Annotation]] = defaultdict(list)
        for a in s.scalars(select(Annotation).order_by(Annotation.id)):
            history[a.object_id].append(a)
    proposals_of: dict[int, set[tuple[int | None, str | None]]] = defaultdict(set)
    verified: dict[int, list[Annotation]] = defaultdict(list)
    truth: dict[int, list[Annotation]] = defaultdict(list)
    for rows in history.values():
        first, last = rows[0], rows[-1]
        assert {r.item_id for r in rows} == {first.item_id}
        if first.status == AnnotationStatus.PROPOSED:
            # a proposal is settled exactly once, by the oracle, for an item its cycle queued
            assert [r.status for r in rows[:-1]] == [AnnotationStatus.PROPOSED], rows
            assert last.status in (AnnotationStatus.VERIFIED, AnnotationStatus.REJECTED)
            assert last.source == LabelSource.SIMULATED and last.cycle_id == first.cycle_id
            assert first.source == LabelSource.MODEL and first.model_version
            assert (first.item_id, first.cycle_id) in queued
            proposals_of[first.item_id].add((first.cycle_id, first.model_version))
            verdicts[last.status] += 1
        else:
            assert len(rows) == 1, rows  # ground truth and drawn objects are never revised
        if last.status == AnnotationStatus.VERIFIED:
            verified[last.item_id].append(last)
        elif last.status == AnnotationStatus.GROUND_TRUTH:
            truth[last.item_id].append(last)
    # one set of proposals per item: one cycle, one model
    assert all(len(v) == 1 for v in proposals_of.values()), proposals_of
    assert set(verified) == labeled  # every synthetic image holds objects
    for item_id in labeled:  # no lost and no extra object: the verified ones are the truth
        mine, want = verified[item_id], truth[item_id]
        assert len(mine) == len(want), item_id
        assert sorted(a.label for a in mine) == sorted(a.label for a in want)
        iou = box_iou(
            np.asarray([[a.x0, a.y0, a.x1, a.y1] for a in mine], np.float32),
            np.asarray([[a.x0, a.y0, a.x1, a.y1] for a in want], np.float32),
        )
        assert (iou.max(axis=1) > 0.999).all(), item_id
    return verdicts


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly imported detection project, copied for each case."""
    root = tmp_path_factory.mktemp("cells-template") / "project"
    make_cells_project(root, budget=BUDGET, model_params=PARAMS).close()
    return root


@pytest.fixture(scope="module")
def reference(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The snapshot of an uninterrupted run, checked to exercise every verdict."""
    root = tmp_path_factory.mktemp("cells-reference") / "project"
    shutil.copytree(template, root)
    done = _run_cli(root)
    assert done.returncode == 0, done.stderr
    verdicts = _check_objects(root)
    # the run is worth resuming: the detector proposed objects, some right, some wrong
    assert verdicts[AnnotationStatus.VERIFIED] > 0 and verdicts[AnnotationStatus.REJECTED] > 0
    with Project.open(root) as p:
        snap = object_snapshot(p)
    assert [c["state"] for c in snap["cycles"]] == ["done", "done", "stopped"]
    assert len(snap["queue"]) == BUDGET
    return snap


def _kill_and_resume(point: str, template: Path, root: Path) -> None:
    shutil.copytree(template, root)
    crashed = _run_cli(root, crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    labels, annotations = _rows(root)
    resumed = _run_cli(root)
    assert resumed.returncode == 0, resumed.stderr
    labels_after, annotations_after = _rows(root)
    assert labels_after[: len(labels)] == labels, "a committed label changed or vanished"
    assert annotations_after[: len(annotations)] == annotations, (
        "a committed annotation changed or vanished"
    )


def test_kill_mid_batch_of_proposals_then_resume(
    template: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "project"
    _kill_and_resume(FAST_POINT, template, root)
    _check_objects(root)
    with Project.open(root) as p:
        assert object_snapshot(p) == reference


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_at_point_then_resume(
    point: str, template: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "project"
    _kill_and_resume(point, template, root)
    _check_objects(root)
    with Project.open(root) as p:
        assert object_snapshot(p) == reference


@pytest.mark.slow
def test_two_kills_in_a_row_then_resume(
    template: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """Killed while labeling one cycle, then again after scoring the next."""
    root = tmp_path / "project"
    shutil.copytree(template, root)
    assert _run_cli(root, crash_at="label:1:0").returncode == -signal.SIGKILL
    labels, annotations = _rows(root)
    assert _run_cli(root, crash_at="score:2:saved").returncode == -signal.SIGKILL
    assert _run_cli(root).returncode == 0
    labels_after, annotations_after = _rows(root)
    assert labels_after[: len(labels)] == labels
    assert annotations_after[: len(annotations)] == annotations
    _check_objects(root)
    with Project.open(root) as p:
        assert object_snapshot(p) == reference


@pytest.mark.slow
def test_kill_and_resume_on_postgresql(
    template: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    """The same project on PostgreSQL, killed mid-batch, ends like the SQLite reference."""
    from pg_helpers import fresh_pg_database

    urls = fresh_pg_database()
    url = next(urls)
    try:
        root = tmp_path / "project"
        make_cells_project(root, database_url=url, budget=BUDGET, model_params=PARAMS).close()
        assert _run_cli(root, crash_at="label:1:1").returncode == -signal.SIGKILL
        labels, annotations = _rows(root)
        assert _run_cli(root).returncode == 0
        labels_after, annotations_after = _rows(root)
        assert labels_after[: len(labels)] == labels
        assert annotations_after[: len(annotations)] == annotations
        _check_objects(root)
        with Project.open(root) as p:
            assert object_snapshot(p) == reference
    finally:
        next(urls, None)
