"""ALBL in a project: the bandit is recorded per cycle and a killed run continues it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import exemplar.loop.engine as engine_module
from exemplar.project import Project
from loop_helpers import make_project, snapshot

SELECTION = {
    "strategy": "albl",
    "params": {"arms": "margin,uncertain_diverse,random"},
    "batch_size": 10,
    "initial_size": 20,
}


def _project(root: Path) -> Project:
    return make_project(root, budget=70, selection=dict(SELECTION))


class Interrupted(Exception):
    """Stands in for a kill: raised at a named crash point."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("albl") / "p"
    with _project(root) as p:
        assert p.run().status == "stopped"
        return {"snapshot": snapshot(p), "history": p.status()["history"]}


def test_cycles_record_the_bandit_and_continue_it(finished: dict[str, Any]) -> None:
    cycles = [c for c in finished["snapshot"]["cycles"] if "albl" in c["metrics"]]
    assert [c["number"] for c in cycles] == [1, 2, 3, 4, 5]  # cycle 0 is the cold start
    for k, c in enumerate(cycles):
        state = c["metrics"]["albl"]
        assert state["rounds"] == k + 1 and len(state["history"]) == k + 1
        assert c["metrics"]["albl_arm"] == state["history"][-1]["arm"]
        if k:  # each cycle extends the bandit the cycle before recorded
            assert state["history"][:k] == _with_rewards_of(
                cycles[k - 1]["metrics"]["albl"]["history"], state["history"][:k]
            )
    # Rewards need the previous model's predictions (reloaded from the stored scores):
    # draw k is credited once draw k + 1's batch is labeled, at the select of cycle k + 2.
    last = cycles[-1]["metrics"]["albl"]
    assert [("gain" in h) for h in last["history"]] == [True, True, True, False, False]
    labels = {lab[4]: lab[5] for lab in finished["snapshot"]["labels"]}
    assert labels[0] == "random" and labels[1] == "albl"
    # `exemplar status` shows the arm each cycle drew.
    shown = {h["cycle"]: h["arm"] for h in finished["history"]}
    assert shown[0] is None
    assert [shown[c["number"]] for c in cycles] == [c["metrics"]["albl_arm"] for c in cycles]


def _with_rewards_of(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``before`` with the rewards credited since (in ``after``) added."""
    out = []
    for b, a in zip(before, after, strict=True):
        out.append({**b, **{k: a[k] for k in ("gain", "reward") if k in a}})
    return out


def test_killed_run_resumes_the_same_bandit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finished: dict[str, Any]
) -> None:
    real = engine_module.crash_point
    with _project(tmp_path / "b") as b:
        # Killed before cycle 3 selects, and before cycle 4 enters its select state.
        for point in ("score:3:saved", "enter:select:4"):

            def crash(name: str, point: str = point) -> None:
                if name == point:
                    raise Interrupted(name)

            monkeypatch.setattr(engine_module, "crash_point", crash)
            with pytest.raises(Interrupted):
                b.run()
        monkeypatch.setattr(engine_module, "crash_point", real)
        assert b.run().status == "stopped"
        assert snapshot(b) == finished["snapshot"]


def test_items_imported_between_cycles_do_not_break_the_bandit(tmp_path: Path) -> None:
    """The previous model scored fewer rows than the pool now holds: the reward leaves the
    new items out (or is skipped) and every later cycle still selects."""
    import numpy as np
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    more = tmp_path / "more.npz"
    np.savez(more, X=X[600:800], y=y[600:800].astype(str))
    selection = {**SELECTION, "params": {"arms": "margin,random"}}
    with make_project(tmp_path / "g", n=300, budget=110, selection=selection) as p:
        assert p.run(max_cycles=3).status != "failed"
        p.import_(more, labels_as="ground_truth")
        assert p.run().status == "stopped"
        cycles = [c for c in snapshot(p)["cycles"] if "albl" in c["metrics"]]
    assert len(cycles) >= 7  # cycles after the import drew arms too
    state = cycles[-1]["metrics"]["albl"]
    assert state["rounds"] == len(cycles)
    rewards = [h["reward"] for h in state["history"] if "reward" in h]
    assert rewards and all(0.0 <= r <= 1.0 for r in rewards)


def test_a_pruned_previous_model_skips_one_reward_and_the_bandit_goes_on(tmp_path: Path) -> None:
    """With ``keep_checkpoints = 1`` the previous model's checkpoint and scores are gone at
    the next select: the run still finishes, the bandit still records every draw, and no
    draw is credited (each reward needed the pruned model)."""
    model = {"candidates": [{"recipe": "logreg", "params": {"C": 1.0}}], "keep_checkpoints": 1}
    with make_project(tmp_path / "p", budget=60, selection=dict(SELECTION), model=model) as p:
        assert p.run().status == "stopped"
        cycles = [c for c in snapshot(p)["cycles"] if "albl" in c["metrics"]]
    assert len(cycles) == 4
    history = cycles[-1]["metrics"]["albl"]["history"]
    assert len(history) == 4 and not any("gain" in h for h in history)
