"""The simulator: paired protocol, outputs, reproducibility, honest verdicts."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from exemplar.data import load_dataset
from exemplar.errors import ConfigError
from exemplar.loop import SimulatedOracle
from exemplar.simulate import SimulationConfig, run_simulation, summarize, write_outputs
from exemplar.simulate.runner import RESULT_COLUMNS

DIGITS = load_dataset("digits")


def _config(**kw: object) -> SimulationConfig:
    base: dict[str, object] = {
        "dataset": "digits",
        "strategies": ("margin", "random"),
        "seeds": 2,
        "initial": 20,
        "batch_size": 10,
        "cycles": 3,
    }
    base.update(kw)
    return SimulationConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_result():  # type: ignore[no-untyped-def]
    return run_simulation(_config(), DIGITS)


def test_rows_cover_every_strategy_seed_round(small_result) -> None:  # type: ignore[no-untyped-def]
    rows = small_result.rows
    assert len(rows) == 2 * 2 * 4
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(RESULT_COLUMNS))}
    for r in rows:
        assert r["n_labels"] == 20 + 10 * r["round"]
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["fit_seconds"] > 0
        assert (r["query_seconds"] > 0) == (r["round"] > 0)


def test_seeds_are_paired_across_strategies(small_result) -> None:  # type: ignore[no-untyped-def]
    start = {
        (r["strategy"], r["seed"]): r["accuracy"] for r in small_result.rows if r["round"] == 0
    }
    for seed in range(2):
        # Same initial labels, same recipe: identical round-0 model.
        assert start[("margin", seed)] == start[("random", seed)]
    assert start[("margin", 0)] != start[("margin", 1)]


def test_reproducible_and_parallel_equals_serial(small_result) -> None:  # type: ignore[no-untyped-def]
    again = run_simulation(_config(jobs=2), DIGITS)
    strip = lambda rows: [(r["strategy"], r["seed"], r["round"], r["accuracy"]) for r in rows]
    assert strip(again.rows) == strip(small_result.rows)


def test_oracle_reveals_only_selected_items(monkeypatch: pytest.MonkeyPatch) -> None:
    revealed: list[int] = []
    original = SimulatedOracle.query

    def spy(self: SimulatedOracle, indices: np.ndarray) -> np.ndarray:
        revealed.extend(np.asarray(indices).tolist())
        return original(self, indices)

    monkeypatch.setattr(SimulatedOracle, "query", spy)
    result = run_simulation(_config(strategies=("margin",), seeds=1), DIGITS)
    assert len(revealed) == result.rows[-1]["n_labels"] == 50
    assert len(set(revealed)) == len(revealed)


def test_outputs_written_and_report_is_offline(small_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary = summarize(small_result)
    paths = write_outputs(small_result, summary, tmp_path / "out")
    with paths["results"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and list(rows[0]) == list(RESULT_COLUMNS)
    data = json.loads(paths["summary"].read_text())
    margin = data["strategies"]["margin"]
    for key in ("aulc_mean", "aulc_std", "diff_vs_random", "labels_to_target", "class_coverage"):
        assert key in margin
    assert {"mean", "ci_low", "ci_high", "p_value"} <= set(margin["diff_vs_random"])
    assert data["win_tie_loss"]["margin"]["random"] in {"win", "tie", "loss"}
    page = paths["report"].read_text()
    assert page.count("data:image/png;base64,") == 2
    assert 'id="verdict"' in page
    assert not re.search(r"(src|href)=\"https?://", page), "report must not load remote assets"


def test_summary_verdict_reflects_the_numbers(small_result) -> None:  # type: ignore[no-untyped-def]
    summary = summarize(small_result)
    d = summary["strategies"]["margin"]["diff_vs_random"]
    verdict = summary["verdict"]
    if d["ci_low"] > 0:
        assert "beats random" in verdict
    elif d["ci_high"] < 0:
        assert "worse than random" in verdict
    else:
        assert "not distinguishable" in verdict


@pytest.mark.slow
@pytest.mark.parametrize(("name", "cycles"), [("digits", 10), ("breast_cancer", 8), ("wine", 6)])
def test_default_strategy_is_not_worse_than_random(name: str, cycles: int) -> None:
    """The default's promise, on a small budget: paired AULC at least random's on each dataset."""
    data = DIGITS if name == "digits" else load_dataset(name)
    config = _config(dataset=name, strategies=("default", "random"), seeds=4, cycles=cycles, jobs=2)
    s = summarize(run_simulation(config, data))["strategies"]
    assert s["default"]["aulc_mean"] >= s["random"]["aulc_mean"]
    assert s["default"]["diff_vs_random"]["ci_high"] > 0


def test_budget_larger_than_pool_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="exceeds the pool"):
        run_simulation(_config(cycles=1000), DIGITS)


def test_unknown_strategy_and_model() -> None:
    with pytest.raises(ConfigError, match="unknown strategy"):
        run_simulation(_config(strategies=("nope",)), DIGITS)
    with pytest.raises(ConfigError, match="unknown model"):
        run_simulation(_config(model="nope"), DIGITS)


def test_committee_strategy_runs_with_same_evaluated_model() -> None:
    result = run_simulation(_config(strategies=("bald", "random"), seeds=1, cycles=1), DIGITS)
    r0 = [r["accuracy"] for r in result.rows if r["round"] == 0]
    assert r0[0] == r0[1]  # committee adds members, but the evaluated model is the recipe
