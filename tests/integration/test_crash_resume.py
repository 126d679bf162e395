"""``kill -9`` at every state of ``exemplar run`` (and at random moments), then resume.

The resumed project must end exactly like an uninterrupted run with the same seed: same
labels with the same provenance, same cycle records, same selections (queue), same model
versions; and every label committed before the kill must survive it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exemplar.project import Project
from exemplar.store.schema import Label
from loop_helpers import make_project, snapshot

#: The kill points `make test` runs (mid-label and mid-train, with a model); `make test-all`
#: runs every one (the others are marked slow).
REPRESENTATIVE = frozenset({"label:1:0", "train:1:saved"})

BUDGET = 50  # cycle 0: 20 random labels; cycles 1-3: 10 each; stops at cycle 3
COLD = ["train", "select", "label", "compare", "stop_check"]
FULL = ["train", "select_model", "score", "select", "label", "compare", "stop_check"]
KILL_POINTS = (
    [f"enter:{s}:0" for s in COLD]
    + [f"enter:{s}:1" for s in FULL]
    + ["enter:train:3", "enter:stop_check:3"]
    + ["train:1:saved", "score:2:saved", "label:0:7", "label:1:0", "label:2:9"]
)


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
            (lab.id, lab.item_id, lab.label, lab.cycle_id, lab.strategy, lab.score)
            for lab in s.scalars(select(Label).order_by(Label.id))
        ]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly imported project, copied for each case (so every case starts identical)."""
    root = tmp_path_factory.mktemp("template") / "project"
    make_project(root, budget=BUDGET).close()
    return root


@pytest.fixture(scope="module")
def reference(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The snapshot of an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference") / "project"
    shutil.copytree(template, root)
    done = _run_cli(root)
    assert done.returncode == 0, done.stderr
    with Project.open(root) as p:
        snap = snapshot(p)
    assert snap["cycles"][-1]["state"] == "stopped" and len(snap["cycles"]) == 4
    return snap


@pytest.mark.parametrize(
    "point",
    [pytest.param(p, marks=() if p in REPRESENTATIVE else pytest.mark.slow) for p in KILL_POINTS],
)
def test_kill_at_point_then_resume(
    point: str, template: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "project"
    shutil.copytree(template, root)
    crashed = _run_cli(root, crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    before = _label_rows(root)
    resumed = _run_cli(root)
    assert resumed.returncode == 0, resumed.stderr
    after = _label_rows(root)
    assert after[: len(before)] == before, "a committed label changed or vanished"
    with Project.open(root) as p:
        assert snapshot(p) == reference


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_at_random_moments_then_resume(
    seed: int, template: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "project"
    shutil.copytree(template, root)
    rng = random.Random(seed)
    for _ in range(2):  # two kills in a row, at random moments
        proc = subprocess.Popen(
            [sys.executable, "-m", "exemplar", "run", "--project", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = _label_rows(root)
        resumed_part = _label_rows(root)
        assert resumed_part == before
    final = _run_cli(root)
    assert final.returncode == 0, final.stderr
    after = _label_rows(root)
    assert after[: len(before)] == before
    with Project.open(root) as p:
        assert snapshot(p) == reference


@pytest.mark.slow
@pytest.mark.parametrize("point", ["enter:score:1", "label:1:4", "train:2:saved"])
def test_kill_and_resume_on_postgresql(point: str, tmp_path: Path) -> None:
    from pg_helpers import fresh_pg_database

    urls = fresh_pg_database()
    ref_urls = fresh_pg_database()
    url, ref_url = next(urls), next(ref_urls)
    try:
        make_project(tmp_path / "ref", database_url=ref_url, budget=40).close()
        make_project(tmp_path / "p", database_url=url, budget=40).close()
        assert _run_cli(tmp_path / "ref").returncode == 0
        assert _run_cli(tmp_path / "p", crash_at=point).returncode == -signal.SIGKILL
        assert _run_cli(tmp_path / "p").returncode == 0
        with Project.open(tmp_path / "ref") as ref, Project.open(tmp_path / "p") as p:
            assert snapshot(p) == snapshot(ref)
    finally:
        for gen in (urls, ref_urls):
            next(gen, None)
