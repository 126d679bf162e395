"""The model registry: every recipe builds, saves and loads through one path."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from exemplar.errors import ConfigError, ModelError
from exemplar.models import (
    MODEL_RECIPES,
    CommitteeAdapter,
    ModelAdapter,
    SklearnAdapter,
    checkpoint_suffix,
    load_model,
    make_model,
    save_model,
)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:240].astype(np.float32), y[:240]


def test_every_recipe_is_listed_with_a_family() -> None:
    assert {"logreg", "random_forest", "cnn", "cnn-ensemble", "mlp", "minilm-logreg"} <= set(
        MODEL_RECIPES
    )
    assert {r.family for r in MODEL_RECIPES.values()} == {
        "sklearn",
        "torch",
        "text",
        "detector",
        "external",
    }
    assert MODEL_RECIPES["minilm-logreg"].reads_text
    assert not MODEL_RECIPES["cnn"].reads_text


def test_unknown_model_and_bad_device_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'.*logreg"):
        make_model("nope")
    with pytest.raises(ConfigError, match="CPU only"):
        make_model("logreg", device="cuda")


def test_sklearn_recipe_becomes_a_committee_only_when_samples_are_read() -> None:
    assert isinstance(make_model("logreg"), SklearnAdapter)
    committee = make_model("logreg", samples=True, committee_size=3)
    assert isinstance(committee, CommitteeAdapter)
    assert committee.n_members == 3


def test_importing_the_registry_does_not_import_torch() -> None:
    # The registry names deep models but builds them lazily.
    import subprocess

    code = "import exemplar.models, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("name", "params"),
    [("logreg", {}), ("cnn", {"epochs": 2}), ("mlp-ensemble", {"epochs": 2, "n_members": 2})],
)
def test_checkpoints_round_trip(tmp_path, digits, name: str, params: dict) -> None:
    X, y = digits
    model = make_model(name, seed=3, **params).fit(X[:200], y[:200])
    assert isinstance(model, ModelAdapter)
    path = save_model(model, tmp_path / f"m{checkpoint_suffix(name)}")
    loaded = load_model(name, path)
    np.testing.assert_allclose(
        loaded.predict(X[200:]).proba, model.predict(X[200:]).proba, atol=1e-6
    )
    np.testing.assert_array_equal(loaded.classes_, model.classes_)


def test_deep_recipe_defaults_apply_and_give_samples(digits) -> None:
    X, y = digits
    model = make_model("cnn-ensemble", seed=0, epochs=1, n_members=2).fit(X[:100], y[:100])
    samples = model.predict(X[100:110], samples=True).samples
    assert samples is not None and samples.shape == (2, 10, 10)
    assert not np.allclose(samples[0], samples[1])  # independently seeded members


def test_loading_a_missing_or_corrupt_checkpoint_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="missing"):
        load_model("logreg", tmp_path / "absent.joblib")
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot be read"):
        load_model("logreg", bad)
