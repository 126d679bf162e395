"""The stream simulator: paired seeds, every manager at the same budget, outputs written,
and ``exemplar simulate --scenario stream`` from the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.data import load_dataset
from exemplar.errors import ConfigError
from exemplar.simulate.stream import (
    StreamSimulationConfig,
    load_stream_dataset,
    parse_managers,
    run_stream_simulation,
    summarize_stream,
    write_stream_outputs,
)


def _config(**kw: object) -> StreamSimulationConfig:
    base: dict[str, object] = {
        "dataset": "breast_cancer",
        "managers": ("variable_uncertainty", "balanced_incremental", "random"),
        "budget": 0.1,
        "seeds": 2,
        "initial": 10,
        "evaluations": 5,
    }
    base.update(kw)
    return StreamSimulationConfig(**base)  # type: ignore[arg-type]


def test_managers_share_the_stream_and_keep_the_budget(tmp_path: Path) -> None:
    cfg = _config()
    data = load_dataset("breast_cancer")
    result = run_stream_simulation(cfg, data)
    rows = result.rows
    assert len(rows) == 3 * 2 * 6
    for seed in range(2):
        start = {r["manager"]: r for r in rows if r["seed"] == seed and r["round"] == 0}
        # Paired: the same warm start, so the same model before the stream, for every manager.
        assert len({r["n_labels"] for r in start.values()}) == 1
        assert len({r["accuracy"] for r in start.values()}) == 1
    for r in rows:
        assert r["asked"] <= cfg.budget * r["arrivals"] + 1.0
        assert r["n_labels"] >= cfg.initial
    final = [r for r in rows if r["round"] == 5]
    assert {r["arrivals"] for r in final} == {result.n_stream - 10}
    summary = summarize_stream(result)
    assert set(summary["managers"]) == {"variable_uncertainty", "balanced_incremental", "random"}
    for m in summary["managers"].values():
        assert 0.5 < m["aulc_mean"] <= 1.0
        assert m["spent_mean"] <= cfg.budget + 1.0 / (result.n_stream - 10)
        assert "diff_vs_random" in m
    assert summary["managers"]["random"]["diff_vs_random"]["mean"] == 0.0
    assert "budget 10% of arrivals" in summary["verdict"]
    paths = write_stream_outputs(result, summary, tmp_path / "out")
    assert json.loads(paths["summary"].read_text())["scenario"] == "stream"
    assert paths["results"].read_text().splitlines()[0].startswith("manager,seed,round")
    assert 'id="verdict"' in paths["report"].read_text()


def test_a_run_is_reproducible() -> None:
    cfg = _config(managers=("split", "random"), seeds=1)
    data = load_dataset("wine")
    first = run_stream_simulation(cfg, data).rows
    again = run_stream_simulation(cfg, data).rows

    def strip(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        # decide_ms is a timing; NaN (no arrival yet) is written as None for the comparison
        return [
            {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in r.items()
                if k != "decide_ms"
            }
            for r in rows
        ]

    assert strip(first) == strip(again)
    assert any(r["asked"] for r in first)


def test_parse_managers_adds_random_and_refuses_unknown() -> None:
    assert parse_managers("split, fixed_uncertainty") == ("split", "fixed_uncertainty", "random")
    with pytest.raises(ConfigError, match="unknown budget manager"):
        parse_managers("split,nope")


def test_river_datasets_load_offline() -> None:
    pytest.importorskip("river")
    bananas = load_stream_dataset("bananas")
    assert bananas.X.shape == (5300, 2) and set(np.unique(bananas.y)) == {"False", "True"}
    phishing = load_stream_dataset("Phishing")
    assert phishing.X.shape == (1250, 9) and np.isfinite(phishing.X).all()


def test_cli_scenario_stream_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--dataset",
            "wine",
            "--scenario",
            "stream",
            "--seeds",
            "2",
            "--initial",
            "8",
            "--budget",
            "0.2",
            "--managers",
            "fixed_uncertainty,split",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["managers"]) == ["fixed_uncertainty", "split", "random"]
    assert summary["config"]["budget"] == 0.2
    assert "random" in result.output and "report:" in result.output


def test_cli_refuses_a_bad_budget(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--dataset",
            "wine",
            "--scenario",
            "stream",
            "--budget",
            "1.5",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code != 0
    assert "budget" in result.output
