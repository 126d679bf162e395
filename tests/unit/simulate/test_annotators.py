"""The annotators scenario: simulated annotators of different accuracy, ActiveLab's
relabel-or-new decision against new-only, fixed-k and random, with paired seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.data import load_dataset
from exemplar.errors import ConfigError
from exemplar.simulate.annotators import (
    AnnotatorSimulationConfig,
    annotator_arms,
    run_annotator_simulation,
    summarize_annotators,
    write_annotator_outputs,
)

WINE = load_dataset("wine")


@pytest.fixture(scope="module")
def run() -> tuple[AnnotatorSimulationConfig, list[dict[str, object]], dict[str, object]]:
    config = AnnotatorSimulationConfig(
        dataset="wine", accuracies=(0.9, 0.6, 0.6), seeds=2, cycles=3, batch_size=10, initial=20
    )
    result = run_annotator_simulation(config, WINE)
    return config, result.rows, summarize_annotators(result, config)


def test_every_arm_spends_the_same_labels_from_the_same_start(run: tuple) -> None:
    config, rows, _ = run
    arms = annotator_arms(3)
    assert arms == ("activelab", "new_only", "fixed_2", "fixed_3", "random")
    assert len(rows) == len(arms) * config.seeds * (config.cycles + 1)
    for r in rows:
        per_cycle = 9 if r["strategy"] == "fixed_3" else 10  # three labels for 3 items
        assert r["n_labels"] == 20 + per_cycle * r["round"]
    for seed in range(config.seeds):
        start = {r["accuracy"] for r in rows if r["round"] == 0 and r["seed"] == seed}
        assert len(start) == 1  # same initial items, same annotators' answers


def test_each_arm_spends_its_labels_as_its_policy_says(run: tuple) -> None:
    _, rows, _ = run
    for r in rows:
        if r["strategy"] in ("new_only", "random"):
            assert r["relabels"] == 0 and r["n_items"] == r["n_labels"]
        if r["strategy"] == "fixed_2":
            assert r["relabels"] == r["n_items"] - 20  # every new item labeled twice
        assert r["n_items"] + r["relabels"] == r["n_labels"]
    activelab = [r for r in rows if r["strategy"] == "activelab"]
    assert sum(r["relabels"] for r in activelab) > 0  # noisy annotators: it relabels
    assert any(0 < r["relabels"] < r["n_labels"] - 20 for r in activelab if r["round"] > 0)


def test_the_summary_sets_activelab_against_every_arm(run: tuple) -> None:
    _, rows, summary = run
    info = summary["annotators"]
    assert set(info["activelab_vs"]) == {"new_only", "fixed_2", "fixed_3", "random"}
    for d in info["activelab_vs"].values():  # paired over the 2 seeds: an interval
        assert d["ci_low"] is not None and d["ci_low"] <= d["mean"] <= d["ci_high"]
    final = info["final"]["activelab"]
    last = [r for r in rows if r["strategy"] == "activelab" and r["round"] == 3]
    assert final["relabels"] == pytest.approx(np.mean([r["relabels"] for r in last]))
    share = final["relabels"] / final["labels_spent"]
    assert f"ActiveLab spent {share:.0%} of its labels on relabeling" in info["verdict"]
    assert all(0.0 <= r["label_accuracy"] <= 1.0 for r in rows)


def test_outputs_are_written(tmp_path: Path) -> None:
    config = AnnotatorSimulationConfig(
        dataset="wine", seeds=1, cycles=1, arms=("activelab", "random")
    )
    result = run_annotator_simulation(config, WINE)
    summary = summarize_annotators(result, config)
    assert summary["annotators"]["final"]["activelab"]["labels_spent"] == 30
    paths = write_annotator_outputs(result, summary, tmp_path)
    assert json.loads(paths["summary"].read_text())["annotators"]["verdict"]
    page = paths["report"].read_text()
    assert 'id="annotators-verdict"' in page and "relabel or new" in page
    header = paths["results"].read_text().splitlines()[0].split(",")
    assert {"relabels", "label_accuracy", "n_items"} <= set(header)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"accuracies": (0.9, 1.5)}, "accuracies"),
        ({"accuracies": ()}, "at least one"),
        ({"arms": ("fixed_4",)}, "unknown arm"),
        ({"cycles": 100}, "labels asked"),
        ({"cv_folds": 1}, "cv_folds"),
        ({"jobs": 0}, "jobs"),
        ({"model": "mlp_torch"}, "model"),
    ],
)
def test_bad_settings_are_refused(kw: dict[str, object], match: str) -> None:
    config = AnnotatorSimulationConfig(dataset="wine", **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        run_annotator_simulation(config, WINE)


def test_the_cli_runs_the_annotators_scenario(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--dataset",
            "wine",
            "--scenario",
            "annotators",
            "--annotator-accuracy",
            "0.9,0.7",
            "--seeds",
            "2",
            "--cycles",
            "2",
            "--jobs",
            "1",
            "--out",
            str(out),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "activelab" in result.output and "fixed_2" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["annotators"]["accuracies"] == [0.9, 0.7]
    assert list(summary["strategies"]) == ["activelab", "new_only", "fixed_2", "random"]
    bad = CliRunner().invoke(
        app,
        ["simulate", "--dataset", "wine", "--scenario", "annotators", "--annotator-accuracy", "x"],
    )
    assert bad.exit_code != 0 and "comma-separated numbers" in bad.output
    assert np.isfinite(summary["strategies"]["activelab"]["aulc_mean"])
