"""The command line: help, listings, a small simulation, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.strategies import STRATEGIES

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["simulate"],
        ["strategies"],
        ["datasets"],
        ["models"],
        ["stream"],
        ["stream", "feed"],
        ["stream", "decisions"],
        ["ray"],
        ["ray", "check"],
        ["costs"],
        ["relabel"],
        ["select-file"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_strategies_lists_every_registered_strategy() -> None:
    result = runner.invoke(app, ["strategies"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for name in STRATEGIES:
        assert name in result.output


def test_models_lists_every_recipe_with_its_inputs() -> None:
    from exemplar.models import MODEL_RECIPES

    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in MODEL_RECIPES:
        assert name in result.output
    assert "exemplar[torch]" in result.output


def test_model_params_parse_as_json_or_text() -> None:
    from exemplar.cli.main import parse_params
    from exemplar.errors import ConfigError

    parsed = parse_params(["epochs=20", "lr=0.01", "optimizer=sgd", "hidden=[64, 32]"])
    assert parsed == {"epochs": 20, "lr": 0.01, "optimizer": "sgd", "hidden": [64, 32]}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_params(["epochs"])


def test_simulate_rejects_unknown_model_params_in_one_line() -> None:
    result = runner.invoke(
        app, ["simulate", "--dataset", "digits", "--model", "mlp", "--model-param", "bogus=1"]
    )
    assert result.exit_code != 0
    assert "unknown parameter(s) for torch model 'mlp': bogus" in result.output
    assert "Traceback" not in result.output


def test_datasets_lists_builtins() -> None:
    result = runner.invoke(app, ["datasets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("digits", "mnist5k", "breast_cancer", "wine"):
        assert name in result.output


def test_simulate_writes_outputs(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--dataset",
            "wine",
            "--strategies",
            "default,random",
            "--seeds",
            "2",
            "--initial",
            "10",
            "--batch",
            "5",
            "--rounds",
            "2",
            "--jobs",
            "1",
            "--out",
            str(out),
            "--label-cost",
            "3",
            "--engineering-cost",
            "10",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and (out / "results.csv").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["label_cost"] == 3.0
    assert "report:" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "unknown dataset"),
        (["--dataset", "wine", "--strategies", "bogus"], "unknown strategy 'bogus'"),
        (["--dataset", "wine", "--cycles", "1000"], "exceeds the pool"),
        (["--dataset", "/no/such/file.csv"], "/no/such/file.csv"),
        (["--dataset", "wine", "--scenario", "bogus"], "unknown scenario 'bogus'"),
        (["--dataset", "wine", "--scenario", "stream", "--curate"], "without --curate"),
        (
            ["--dataset", "cells", "--task", "detection", "--scenario", "synthesis"],
            "classification",
        ),
        (["--dataset", "wine", "--scenario", "synthesis", "--noise-rate", "0.3"], "noise_rate"),
        (
            ["--dataset", "wine", "--scenario", "stream", "--noise-rate", "0.3"],
            "--scenario stream does not take --noise-rate",
        ),
        (
            ["--dataset", "wine", "--scenario", "annotators", "--label-cost", "7"],
            "--scenario annotators does not take --label-cost",
        ),
        (
            ["--dataset", "wine", "--budget", "0.2"],
            "--scenario pool does not take --budget",
        ),
        (
            ["--dataset", "wine", "--scenario", "stream", "--cycles", "5"],
            "--scenario stream does not take --cycles",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["simulate", *args, "--out", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
