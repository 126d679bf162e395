"""The simulator with deep models: --model cnn/cnn-ensemble run the same paired protocol."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.data import Dataset, load_dataset
from exemplar.errors import ConfigError
from exemplar.simulate import SimulationConfig, run_simulation, validate_config

DIGITS = load_dataset("digits")


def _config(**kw: object) -> SimulationConfig:
    base: dict[str, object] = {
        "dataset": "digits",
        "model": "mlp",
        "model_params": {"epochs": 30},
        "strategies": ("bald", "random"),
        "seeds": 1,
        "initial": 20,
        "batch_size": 10,
        "cycles": 2,
        "jobs": 1,
    }
    base.update(kw)
    return SimulationConfig(**base)  # type: ignore[arg-type]


def test_mlp_with_mc_dropout_runs_bald_against_random() -> None:
    result = run_simulation(_config(), DIGITS)
    rows = result.rows
    assert {r["strategy"] for r in rows} == {"bald", "random"}
    assert [r["n_labels"] for r in rows if r["strategy"] == "bald"] == [20, 30, 40]
    # Paired: both strategies start from the same initial set, so round 0 is identical.
    first = {r["strategy"]: r["accuracy"] for r in rows if r["round"] == 0}
    assert first["bald"] == first["random"]
    # The CNN learns: well above the 10% of chance on 10 classes, even with 20 labels.
    assert all(r["accuracy"] > 0.3 for r in rows)


def test_deep_ensemble_recipe_gives_committee_strategies_their_samples() -> None:
    config = _config(
        model="mlp-ensemble",
        model_params={"epochs": 2, "n_members": 2},
        strategies=("variation_ratios",),
        cycles=1,
    )
    rows = run_simulation(config, DIGITS).rows
    assert [r["n_labels"] for r in rows] == [20, 30]


def test_bad_model_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown parameter.*bogus"):
        validate_config(_config(model_params={"bogus": 1}), DIGITS)
    with pytest.raises(ConfigError, match="unknown model"):
        validate_config(_config(model="resnet9000"), DIGITS)


def test_text_and_feature_models_refuse_the_wrong_data() -> None:
    texts = Dataset(
        name="tiny-text",
        kind="text",
        X=np.array(["what is a cat", "who wrote it", "where is paris", "how far"] * 5),
        y=np.array(["DESC", "HUM", "LOC", "NUM"] * 5),
    )
    with pytest.raises(ConfigError, match="holds texts but model 'logreg'.*minilm-logreg"):
        validate_config(_config(model="logreg", model_params={}), texts)
    with pytest.raises(ConfigError, match="holds feature rows but model 'minilm-logreg'"):
        validate_config(_config(model="minilm-logreg", model_params={}), DIGITS)
