"""The resumable loop on a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.errors import ConfigError, ProjectError
from exemplar.project import Project
from exemplar.store.schema import CycleState, Item, LabelSource
from loop_helpers import CLASSES, make_project, snapshot


def test_simulated_run_reaches_budget_with_provenance(tmp_path: Path, database_url: str) -> None:
    with make_project(tmp_path / "p", database_url=database_url, budget=50) as project:
        outcome = project.run()
        assert outcome.status == "stopped"
        assert "budget of 50" in outcome.message
        snap = snapshot(project)
        status = project.status()
    labels = snap["labels"]
    assert len(labels) == 50 and len({lab[0] for lab in labels}) == 50
    assert all(lab[3] == LabelSource.SIMULATED for lab in labels)
    # Cycle 0 is the random cold start; later cycles select with the default strategy.
    strategies = {lab[4]: lab[5] for lab in labels}
    assert strategies[0] == "random"
    assert strategies[1] == "uncertain_diverse" and strategies[3] == "uncertain_diverse"
    assert all(lab[6] is not None for lab in labels)
    states = [c["state"] for c in snap["cycles"]]
    assert states[-1] == CycleState.STOPPED and set(states[:-1]) == {CycleState.DONE}
    assert snap["cycles"][1]["model"] == "c0001-m0"
    assert status["labels"]["verified"] == 50 and status["stopped"]
    assert sum(status["labels"]["per_class"].values()) == 50
    assert status["history"][2]["validation"]  # validation metrics recorded


def test_same_seed_same_run(tmp_path: Path) -> None:
    with make_project(tmp_path / "a", budget=40) as a, make_project(tmp_path / "b", budget=40) as b:
        a.run()
        b.run()
        assert snapshot(a) == snapshot(b)


def test_max_cycles_then_resume(tmp_path: Path) -> None:
    with make_project(tmp_path / "a", budget=40) as a, make_project(tmp_path / "b", budget=40) as b:
        assert a.run(max_cycles=1).status == "max_cycles"
        assert a.run(max_cycles=1).status == "max_cycles"
        a.run()
        b.run()
        assert snapshot(a) == snapshot(b)


def test_human_oracle_waits_then_continues(tmp_path: Path, database_url: str) -> None:
    with make_project(tmp_path / "p", database_url=database_url, oracle="human", budget=30) as p:
        outcome = p.run()
        assert outcome.status == "waiting" and "20 label(s)" in outcome.message
        y = np.load(tmp_path / "p-digits.npz")["y"]
        for _ in range(20):
            leased = p.next_item("ann")
            assert leased is not None
            with p.db.read() as s:
                row = s.get_one(Item, leased.item_id).row
            p.submit_label(leased.entry_id, "ann", str(y[row]))
        assert p.next_item("ann") is None
        outcome = p.run()
        assert outcome.status == "waiting" and "10 label(s)" in outcome.message
        assert p.status()["cycle"]["model"] == "c0001-m0"


def test_file_oracle_reads_labels_file(tmp_path: Path) -> None:
    labels_file = tmp_path / "external.csv"
    with make_project(
        tmp_path / "p", oracle="file", budget=20, oracle_extra={"path": str(labels_file)}
    ) as p:
        assert p.run().status == "waiting"
        y = np.load(tmp_path / "p-digits.npz")["y"]
        rows = ["uri,label"] + [f"{uri},{y[row]}" for uri, row in _uris(p)]
        labels_file.write_text("\n".join(rows))
        outcome = p.run()
        assert outcome.status == "stopped"
        assert p.status()["labels"]["verified"] == 20


def test_compare_skips_retraining_when_kpi_is_met(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=50, kpi={"metric": "accuracy", "target": 0.05}) as p:
        p.run()
        cycles = snapshot(p)["cycles"]
    assert cycles[1]["decision"] == "skip"
    # Cycle 2 reuses cycle 1's model instead of training a new one.
    assert cycles[2]["model"] == cycles[1]["model"] == "c0001-m0"
    assert cycles[2]["metrics"].get("reused_model") is True


def test_budget_larger_than_pool(tmp_path: Path) -> None:
    with (
        make_project(tmp_path / "p", budget=1000, n=300) as p,
        pytest.raises(ConfigError, match="larger than the pool"),
    ):
        p.run()


def test_no_items_and_no_ground_truth(tmp_path: Path) -> None:
    with Project.init(tmp_path / "empty", CLASSES, oracle={"kind": "simulated"}) as p:
        with pytest.raises(ProjectError, match="no items"):
            p.run()
        np.savez(tmp_path / "x.npz", X=np.random.default_rng(0).normal(size=(300, 4)))
        p.import_(tmp_path / "x.npz")
        with pytest.raises(ProjectError, match="no ground truth"):
            p.run()


def test_second_runner_is_refused(tmp_path: Path) -> None:
    from exemplar.loop.engine import LoopEngine

    with make_project(tmp_path / "p") as p:
        engine = LoopEngine(p)
        with engine.lock(), pytest.raises(ProjectError, match="another `exemplar run`"):
            LoopEngine(p).run()


def test_import_labels_file_labels_queued_items_with_provenance(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", oracle="human", budget=30) as p:
        p.run()
        y = np.load(tmp_path / "p-digits.npz")["y"]
        f = tmp_path / "done.csv"
        body = "\n".join(f"{uri},{y[row]}" for uri, row in _uris(p))
        f.write_text(f"uri,label\n{body}\nnot-an-item,3\n")
        result = p.import_labels(f, annotator="alice")
        assert result.labeled == 600 and result.unknown_keys == ["not-an-item"]
        snap = snapshot(p)
        queued = [lab for lab in snap["labels"] if lab[4] == 0]
        assert len(queued) == 20 and all(lab[5] == "random" for lab in queued)


def _uris(project: Project) -> list[tuple[str, int]]:
    from sqlalchemy import select

    with project.db.read() as s:
        return [(u, r) for u, r in s.execute(select(Item.uri, Item.row)).all()]


def test_skipped_item_keeps_the_cycle_open_until_labeled(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", oracle="human", budget=30) as p:
        p.run()
        y = np.load(tmp_path / "p-digits.npz")["y"]
        first = p.next_item("ann")
        assert first is not None
        p.skip_item(first.entry_id, "ann")
        for _ in range(19):
            leased = p.next_item("ann")
            assert leased is not None and leased.entry_id != first.entry_id
            p.submit_label(leased.entry_id, "ann", str(y[_row(p, leased.item_id)]))
        outcome = p.run()
        assert outcome.status == "waiting" and "1 label(s)" in outcome.message
        again = p.next_item("ann")
        assert again is not None and again.entry_id == first.entry_id  # it came back
        p.submit_label(again.entry_id, "ann", str(y[_row(p, again.item_id)]))
        assert "10 label(s)" in p.run().message


def _row(project: Project, item_id: int) -> int:
    with project.db.read() as s:
        return s.get_one(Item, item_id).row
