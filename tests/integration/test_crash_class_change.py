"""A class split or merge killed between its database commit and its final class list.

``apply_curation`` writes ``[project] classes`` as old and new classes together, commits the
labels, then writes the final list; ``undo_curation`` mirrors it. A SIGKILL at either crash
point leaves a class list that names every class in use, and the next run (or apply, or
undo) settles it on the list the operation's recorded state stands for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from exemplar.loop.curate import finish_class_change
from exemplar.project import Project, curation
from exemplar.store.labels import current_labels
from loop_helpers import make_project

AFTER = ["0", "1a", "1b", "2", "3", "4", "5", "6", "7", "8", "9"]
BEFORE = [str(i) for i in range(10)]


def _killed_at(root: Path, point: str, call: str) -> None:
    code = (
        f"from exemplar.project import Project, curation\np = Project.open({str(root)!r})\n{call}\n"
    )
    env = {**os.environ, "EXEMPLAR_CRASH_AT": point}
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def _labels(root: Path) -> dict[int, str | None]:
    with Project.open(root) as p, p.db.read() as s:
        return {c.item_id: c.label for c in current_labels(s)}


@pytest.mark.slow
def test_split_killed_after_commit_is_finished_then_undo_killed_too(tmp_path: Path) -> None:
    root = tmp_path / "p"
    project = make_project(root, budget=40)
    project.run(max_cycles=2)
    op = curation.split_class(project, "1", names=["1a", "1b"])
    ones = {i for i, label in _labels(root).items() if label == "1"}
    project.close()

    apply = f"curation.apply(p, {op['id']}, reviewer='r', accept_pending=True)"
    _killed_at(root, f"curate:apply:{op['id']}:committed", apply)
    with Project.open(root) as p:
        assert p.classes == BEFORE + ["1a", "1b"]  # every class in use is still listed
        labels = _labels(root)
        assert {labels[i] for i in ones} <= {"1a", "1b"}  # the labels were committed
        assert finish_class_change(p)
        assert p.classes == AFTER
    assert Project.open(root).classes == AFTER  # written to exemplar.toml

    undo = f"curation.undo(p, {op['id']}, reviewer='r')"
    _killed_at(root, f"curate:undo:{op['id']}:committed", undo)
    with Project.open(root) as p:
        assert p.classes == BEFORE + ["1a", "1b"]
        assert {_labels(root)[i] for i in ones} == {"1"}
        p.run(max_cycles=1)  # the next run finishes the change first
    assert Project.open(root).classes == BEFORE


def test_split_killed_before_commit_changes_no_label(tmp_path: Path) -> None:
    root = tmp_path / "p"
    project = make_project(root, budget=30)
    project.run(max_cycles=1)
    op = curation.split_class(project, "1", names=["1a", "1b"])
    before = _labels(root)
    project.close()

    apply = f"curation.apply(p, {op['id']}, reviewer='r', accept_pending=True)"
    _killed_at(root, f"curate:apply:{op['id']}:classes", apply)
    assert _labels(root) == before  # the transaction never began
    with Project.open(root) as p:
        assert p.classes == BEFORE + ["1a", "1b"]
        # Nothing was applied: the operation is still proposed, so the old list comes back
        # (a reviewer who dismisses it now is left with no phantom classes).
        assert finish_class_change(p)
        assert p.classes == BEFORE
        report = curation.apply(p, op["id"], reviewer="r", accept_pending=True)
        assert report["status"] == "applied" and report["written"] > 0
        assert p.classes == AFTER
