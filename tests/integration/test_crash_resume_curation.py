"""``kill -9`` in curation (issue #12): the cycle's ``curate`` state, and a class split.

A digits project with ``[curation] auto = ["propose", "label_errors", "prune"]`` runs three
cycles (20 cold-start labels, then two batches of 10); cycles 1 and 2 run the curate state,
which writes the model's proposals and records label-error and prune operations. Killed on
entering that state or right after it recorded its findings (before the transition commits),
and resumed, the project must end like an uninterrupted run on a copy: the same labels
(proposals included, none twice), the same operations with the same candidates (none
recorded twice), the same queue, and nothing committed before the kill lost.

Applying (or undoing) a class split rewrites ``exemplar.toml`` around the database
transaction: first the union of the old and new classes, then the final list. A process
killed before the transaction, inside it (the union written, the label rows not committed)
or after the commit and before the final list, must leave a project that opens and whose
class list names every class a label uses; the retried apply (or undo), or the next
``exemplar run``, ends it exactly like an uninterrupted one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exemplar.loop.config import CONFIG_NAME, load_config
from exemplar.loop.curate import apply_curation, split_operation, undo_curation
from exemplar.loop.engine import LoopEngine
from exemplar.project import Project
from exemplar.store.curation import CurationError, get_operation, operation_candidates
from exemplar.store.labels import current_labels
from exemplar.store.schema import CurationOperation, Cycle, Item, Label
from loop_helpers import make_project, snapshot

BUDGET = 40  # cycle 0: 20 random labels; cycles 1 and 2: 10 each; stops at cycle 2
CURATION = {"auto": ["propose", "label_errors", "prune"], "propose_sample": 60}
KILL_POINTS = ["enter:curate:1", "curate:1:recorded", "enter:curate:2"]
#: The representative case that runs without ``-m slow``: the findings committed, the
#: transition to ``select`` not.
FAST_POINT = "curate:2:recorded"


def _run_cli(root: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EXEMPLAR_CRASH_AT"}
    if crash_at:
        env["EXEMPLAR_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "exemplar", "run", "--project", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _label_rows(root: Path) -> list[tuple[Any, ...]]:
    with Project.open(root) as p, p.db.read() as s:
        return [
            (lab.id, lab.item_id, lab.label, lab.status, lab.cycle_id, lab.strategy)
            for lab in s.scalars(select(Label).order_by(Label.id))
        ]


def curation_snapshot(project: Project) -> list[tuple[Any, ...]]:
    """Every recorded operation with its candidates, free of database ids."""
    with project.db.read() as s:
        uid = dict(s.execute(select(Item.id, Item.uid)).all())
        number = dict(s.execute(select(Cycle.id, Cycle.number)).all())
        out = []
        for op in s.scalars(select(CurationOperation).order_by(CurationOperation.id)):
            cands = sorted(
                (
                    uid[c.item_id],
                    c.reason,
                    c.current_label,
                    c.suggested_label,
                    None if c.score is None else round(c.score, 6),
                    c.decision,
                )
                for c in operation_candidates(s, op.id)
            )
            out.append((op.kind, number.get(op.cycle_id), op.status, op.summary, tuple(cands)))
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly imported curation project, copied for each case."""
    root = tmp_path_factory.mktemp("template") / "project"
    make_project(root, budget=BUDGET, curation=CURATION).close()
    return root


@pytest.fixture(scope="module")
def reference(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The snapshot (and the operations) of an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference") / "project"
    shutil.copytree(template, root)
    done = _run_cli(root)
    assert done.returncode == 0, done.stderr
    with Project.open(root) as p:
        snap = snapshot(p)
        snap["operations"] = curation_snapshot(p)
    assert snap["cycles"][-1]["state"] == "stopped" and len(snap["cycles"]) == 3
    assert snap["operations"], "the reference run recorded no operation: nothing to compare"
    assert any(lab[3] == "model" for lab in snap["labels"]), "no proposal in the reference"
    return snap


def _crash_and_resume(root: Path, point: str) -> None:
    crashed = _run_cli(root, crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    before = _label_rows(root)
    resumed = _run_cli(root)
    assert resumed.returncode == 0, resumed.stderr
    after = _label_rows(root)
    assert after[: len(before)] == before, "a committed label changed or vanished"


def _check_rows(root: Path, reference: dict[str, Any]) -> None:
    with Project.open(root) as p:
        snap = snapshot(p)
        operations = curation_snapshot(p)
    assert operations == reference["operations"]  # none recorded twice, same candidates
    assert snap["labels"] == reference["labels"]  # proposals included, none twice
    assert snap["queue"] == reference["queue"]
    assert snap["models"] == reference["models"]
    assert [c["state"] for c in snap["cycles"]] == [c["state"] for c in reference["cycles"]]


def _killed_and_resumed(template: Path, tmp_path: Path, point: str) -> Path:
    """A copy of the template project, killed at ``point`` and run to the end again."""
    root = tmp_path / "project"
    shutil.copytree(template, root)
    _crash_and_resume(root, point)
    return root


def _check_everything(root: Path, reference: dict[str, Any]) -> None:
    """Rows and cycle records (the curation counts in the metrics too) as uninterrupted."""
    _check_rows(root, reference)
    with Project.open(root) as p:
        assert snapshot(p)["cycles"] == reference["cycles"]


def test_kill_after_curate_recorded_then_resume(
    template: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    _check_everything(_killed_and_resumed(template, tmp_path, FAST_POINT), reference)


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_at_curate_point_then_resume(
    point: str, template: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    _check_everything(_killed_and_resumed(template, tmp_path, point), reference)


@pytest.mark.slow
def test_kill_at_curate_and_resume_on_postgresql(tmp_path: Path) -> None:
    from pg_helpers import fresh_pg_database

    urls, ref_urls = fresh_pg_database(), fresh_pg_database()
    url, ref_url = next(urls), next(ref_urls)
    try:
        for root, db in ((tmp_path / "ref", ref_url), (tmp_path / "p", url)):
            make_project(root, database_url=db, budget=BUDGET, curation=CURATION).close()
        assert _run_cli(tmp_path / "ref").returncode == 0
        _crash_and_resume(tmp_path / "p", "curate:1:recorded")
        with Project.open(tmp_path / "ref") as ref, Project.open(tmp_path / "p") as p:
            assert curation_snapshot(p) == curation_snapshot(ref)
            assert snapshot(p)["labels"] == snapshot(ref)["labels"]
    finally:
        for gen in (urls, ref_urls):
            next(gen, None)


# -- a class split killed while it is applied or undone ---------------------------------------

#: Runs ``apply_curation`` (or ``undo_curation``) of operation ``{op}`` in a child process.
#: With ``inside`` set, it kills itself inside the database transaction: after the union
#: class list was written and the label rows were added, before the commit. Otherwise the
#: crash point named by ``EXEMPLAR_CRASH_AT`` kills it.
CHILD = """
import os, signal
import exemplar.loop.curate as curate
from exemplar.project import Project

if {inside!r}:
    real = curate.apply_operation

    def apply_operation(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    curate.apply_operation = apply_operation
with Project.open({root!r}) as p:
    if {action!r} == "apply":
        curate.apply_curation(p, {op}, reviewer="rev", accept_pending=True)
    else:
        curate.undo_curation(p, {op}, reviewer="rev")
"""

State = tuple[list[str], dict[str, str | None], str]


@pytest.fixture(scope="module")
def split_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[str]]:
    """A project with 40 labels and a proposed split of its largest class; the operation id
    and the classes after the split."""
    root = tmp_path_factory.mktemp("split") / "project"
    with make_project(root, budget=200, n=300) as p:
        p.run(max_cycles=3)
        with p.db.read() as s:
            counts = Counter(c.label for c in current_labels(s))
        big = str(counts.most_common(1)[0][0])
        op = split_operation(p, big, names=[f"{big}a", f"{big}b"])
        return root, op.id, list(op.params["classes_after"])


def _state(root: Path, op_id: int) -> State:
    """exemplar.toml's classes, every item's current label (by uid), the operation status."""
    with Project.open(root) as p, p.db.read() as s:
        uid = dict(s.execute(select(Item.id, Item.uid)).all())
        labels = {uid[c.item_id]: c.label for c in current_labels(s)}
        status = get_operation(s, op_id).status
    return list(load_config(root / CONFIG_NAME).project.classes), labels, status


@pytest.fixture(scope="module")
def split_states(
    split_template: tuple[Path, int, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[State, State, State]:
    """The states before the split, after an uninterrupted apply, after its undo."""
    template, op_id, _ = split_template
    root = tmp_path_factory.mktemp("split_ref") / "project"
    shutil.copytree(template, root)
    before = _state(root, op_id)
    with Project.open(root) as p:
        apply_curation(p, op_id, reviewer="rev", accept_pending=True)
    applied = _state(root, op_id)
    with Project.open(root) as p:
        undo_curation(p, op_id, reviewer="rev")
    return before, applied, _state(root, op_id)


def _kill_in(
    root: Path, op_id: int, action: str, *, point: str | None = None, inside: bool = False
) -> None:
    code = textwrap.dedent(CHILD.format(inside=inside, root=str(root), op=op_id, action=action))
    env = {k: v for k, v in os.environ.items() if k != "EXEMPLAR_CRASH_AT"}
    if point:
        env["EXEMPLAR_CRASH_AT"] = point
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)


def _union_is_safe(root: Path, op_id: int) -> None:
    """The class list after the crash is the union of the classes before and after the
    operation (so it names every class a current label uses); the project still opens."""
    classes, labels, _ = _state(root, op_id)
    with Project.open(root) as p, p.db.read() as s:
        params = get_operation(s, op_id).params
    assert classes == list(dict.fromkeys(params["classes_before"] + params["classes_after"]))
    assert set(labels.values()) <= set(classes)


def _next_run_finishes(root: Path) -> None:
    """``exemplar run`` (no cycle) finishes an interrupted class change first."""
    with Project.open(root) as p:
        assert LoopEngine(p).run(max_cycles=0).status == "max_cycles"


def test_kill_inside_the_split_transaction_then_apply_again(
    split_template: tuple[Path, int, list[str]],
    split_states: tuple[State, State, State],
    tmp_path: Path,
) -> None:
    template, op_id, _ = split_template
    before, applied, _ = split_states
    root = tmp_path / "project"
    shutil.copytree(template, root)
    _kill_in(root, op_id, "apply", inside=True)
    _union_is_safe(root, op_id)
    _, labels, status = _state(root, op_id)
    assert status == "proposed" and labels == before[1]  # nothing committed
    with Project.open(root) as p:
        apply_curation(p, op_id, reviewer="rev", accept_pending=True)
    assert _state(root, op_id) == applied
    assert applied[0] == split_template[2] and applied[2] == "applied"


def test_kill_before_the_split_transaction_then_apply_again(
    split_template: tuple[Path, int, list[str]],
    split_states: tuple[State, State, State],
    tmp_path: Path,
) -> None:
    template, op_id, _ = split_template
    before, applied, _ = split_states
    root = tmp_path / "project"
    shutil.copytree(template, root)
    _kill_in(root, op_id, "apply", point=f"curate:apply:{op_id}:classes")
    _union_is_safe(root, op_id)
    assert _state(root, op_id)[1:] == (before[1], "proposed")
    # The operation is still proposed: the next run restores the old list (no phantom
    # classes if the reviewer dismisses it instead), and nothing else changes.
    _next_run_finishes(root)
    assert _state(root, op_id) == before
    with Project.open(root) as p:
        apply_curation(p, op_id, reviewer="rev", accept_pending=True)
    assert _state(root, op_id) == applied


def test_kill_after_the_split_commit_then_the_next_run_finishes_the_classes(
    split_template: tuple[Path, int, list[str]],
    split_states: tuple[State, State, State],
    tmp_path: Path,
) -> None:
    template, op_id, _ = split_template
    _, applied, _ = split_states
    root = tmp_path / "project"
    shutil.copytree(template, root)
    _kill_in(root, op_id, "apply", point=f"curate:apply:{op_id}:committed")
    _union_is_safe(root, op_id)
    assert _state(root, op_id)[1:] == applied[1:]  # the labels committed
    _next_run_finishes(root)
    assert _state(root, op_id) == applied
    with Project.open(root) as p, pytest.raises(CurationError):  # applied already
        apply_curation(p, op_id, reviewer="rev", accept_pending=True)
    assert _state(root, op_id) == applied


def test_kill_after_the_split_commit_then_apply_again_finishes_the_classes(
    split_template: tuple[Path, int, list[str]],
    split_states: tuple[State, State, State],
    tmp_path: Path,
) -> None:
    template, op_id, _ = split_template
    _, applied, _ = split_states
    root = tmp_path / "project"
    shutil.copytree(template, root)
    _kill_in(root, op_id, "apply", point=f"curate:apply:{op_id}:committed")
    with Project.open(root) as p, pytest.raises(CurationError):  # applied already
        apply_curation(p, op_id, reviewer="rev", accept_pending=True)
    assert _state(root, op_id) == applied  # the retried apply finished the class list


@pytest.mark.parametrize("where", ["classes", "committed"])
def test_kill_in_the_undo_of_a_split_then_resume(
    where: str,
    split_template: tuple[Path, int, list[str]],
    split_states: tuple[State, State, State],
    tmp_path: Path,
) -> None:
    template, op_id, _ = split_template
    before, applied, undone = split_states
    root = tmp_path / "project"
    shutil.copytree(template, root)
    with Project.open(root) as p:
        apply_curation(p, op_id, reviewer="rev", accept_pending=True)
    _kill_in(root, op_id, "undo", point=f"curate:undo:{op_id}:{where}")
    _union_is_safe(root, op_id)
    if where == "classes":  # nothing committed: undo again
        assert _state(root, op_id)[1:] == applied[1:]
        with Project.open(root) as p:
            undo_curation(p, op_id, reviewer="rev")
    else:
        assert _state(root, op_id)[1:] == undone[1:]
        _next_run_finishes(root)
    assert _state(root, op_id) == undone
    assert undone[0] == before[0] and undone[1] == before[1] and undone[2] == "undone"
