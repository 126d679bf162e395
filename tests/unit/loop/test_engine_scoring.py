"""The loop's score and select states stream: reductions persisted, never whole samples."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import exemplar.loop.engine as engine_module
from exemplar.project import Project
from loop_helpers import make_project, snapshot

SELECTION = {
    "strategy": "batchbald",
    "params": {"candidate_pool": 40},
    "batch_size": 10,
    "initial_size": 20,
    "chunk_size": 256,
}


def _project(root: Path) -> Project:
    return make_project(root, budget=40, selection=dict(SELECTION))


class Interrupted(Exception):
    """Stands in for a kill: raised at a named crash point."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted run: its snapshot and the arrays it left."""
    root = tmp_path_factory.mktemp("run") / "p"
    with _project(root) as p:
        assert p.run().status == "stopped"
        arrays = p.arrays.root / "arrays"
        return {
            "snapshot": snapshot(p),
            "files": {f.name for f in arrays.iterdir()},
            "candidates": np.load(arrays / "candidates-c0001-m0.npy"),
            "candidate_samples": np.load(arrays / "candidate-samples-c0001-m0.npy"),
            "utility": np.load(arrays / "utility-c0001-m0.npy"),
        }


def test_batchbald_cycles_persist_reductions_not_samples(finished: dict[str, Any]) -> None:
    files = finished["files"]
    assert not any(name.startswith("samples-") for name in files)
    for cycle in (1, 2):
        for kind in ("proba", "utility", "candidates", "candidate-samples"):
            assert f"{kind}-c000{cycle}-m0.npy" in files
    utility, candidates = finished["utility"], finished["candidates"]
    assert utility.shape == (600,) and candidates.shape == (40,)
    assert finished["candidate_samples"].shape[:2] == (5, 40)  # 5 bagged members
    # Candidates are the 40 highest-BALD items among those still in the pool.
    assert np.all(np.diff(utility[candidates]) <= 0)
    snap = finished["snapshot"]
    assert {lab[4]: lab[5] for lab in snap["labels"]} == {
        0: "random",
        1: "batchbald",
        2: "batchbald",
    }
    cycle1 = [q for q in snap["queue"] if q[0] == 1]
    assert len(cycle1) == 10 and all(q[3] is not None for q in cycle1)


def test_interrupted_score_and_select_resume_to_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finished: dict[str, Any]
) -> None:
    real = engine_module.crash_point
    with _project(tmp_path / "b") as b:
        # After cycle 1's arrays are saved but before its state moves on; then before
        # cycle 2's select reloads them.
        for point in ("score:1:saved", "enter:select:2"):

            def crash(name: str, point: str = point) -> None:
                if name == point:
                    raise Interrupted(name)

            monkeypatch.setattr(engine_module, "crash_point", crash)
            with pytest.raises(Interrupted):
                b.run()
        monkeypatch.setattr(engine_module, "crash_point", real)
        b.run()
        assert snapshot(b) == finished["snapshot"]
