"""The model family registry: each family builds, fits, saves, loads and reads classes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from text_helpers import Fake

from exemplar.errors import ConfigError, ModelError
from exemplar.models import (
    FAMILIES,
    MODEL_RECIPES,
    CommitteeAdapter,
    ModelFamily,
    SklearnAdapter,
    checkpoint_classes,
    family_of,
    get_family,
    load_model,
    make_estimator,
    make_model,
    save_model,
)
from exemplar.models.text import CachedEncoder, make_text_model


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:300].astype(np.float32), y[:300]


class CountingLogReg(LogisticRegression):
    """A logistic regression that counts the fits of all its instances."""

    fits = 0

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> CountingLogReg:
        type(self).fits += 1
        return super().fit(X, y, sample_weight)


def test_every_recipe_names_a_registered_family() -> None:
    assert set(FAMILIES) == {"sklearn", "torch", "text", "detector", "external"}
    for recipe in MODEL_RECIPES.values():
        family = family_of(recipe)
        assert isinstance(family, ModelFamily)
        assert family is FAMILIES[recipe.family] is family_of(recipe.name)
        assert recipe.reads_text == (family.key == "text")


def test_family_traits() -> None:
    assert get_family("sklearn").needs_committee_for_samples
    assert not get_family("torch").needs_committee_for_samples
    assert not get_family("text").needs_committee_for_samples
    assert [get_family(k).uses_torch for k in ("sklearn", "torch", "text")] == [
        False,
        True,
        True,
    ]
    assert [get_family(k).suffix for k in ("sklearn", "torch", "text")] == [
        ".joblib",
        ".pt",
        ".joblib",
    ]
    with pytest.raises(ConfigError, match="unknown model family 'yolo'.*sklearn"):
        get_family("yolo")


def _imported_modules(module: str) -> set[str]:
    """Every module a source file imports, at any depth of its code (lazy imports too)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_recipes_module_is_data_only_and_imports_no_family_code() -> None:
    # recipes <-> text was an import cycle; recipes now imports no other model module.
    imported = _imported_modules("exemplar.models.recipes")
    assert not {m for m in imported if m.startswith("exemplar.models")}
    assert "exemplar.models.families" not in _imported_modules("exemplar.models.text")
    assert "exemplar.models.families" not in _imported_modules("exemplar.models.torch_adapter")


def test_importing_the_families_does_not_import_torch() -> None:
    code = "import exemplar.models.families, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_sklearn_recipes_make_estimators() -> None:
    assert isinstance(make_estimator("random_forest", 0, n_estimators=3).n_estimators, int)
    with pytest.raises(ConfigError, match="torch model"):
        make_estimator("cnn")
    with pytest.raises(ConfigError, match="text model"):
        make_estimator("minilm-logreg")
    with pytest.raises(ConfigError, match="bad parameter"):
        make_estimator("logreg", nonsense=1)


def test_sklearn_family_load_wraps_the_fitted_estimator_without_refit(tmp_path, digits) -> None:
    X, y = digits
    model = make_model("logreg", seed=1).fit(X, y)
    path = save_model(model, tmp_path / "m.joblib")
    loaded = load_model("logreg", path)
    assert isinstance(loaded, SklearnAdapter)
    np.testing.assert_array_equal(
        loaded.model_.predict_proba(X[:5]), model.model_.predict_proba(X[:5])
    )
    np.testing.assert_array_equal(checkpoint_classes(path), np.arange(10))
    np.testing.assert_array_equal(checkpoint_classes(path, "logreg"), np.arange(10))


def test_foreign_joblib_is_not_a_fitted_classifier(tmp_path) -> None:
    import joblib

    joblib.dump({"not": "a model"}, tmp_path / "x.joblib")
    with pytest.raises(ModelError, match="fitted scikit-learn classifier"):
        load_model("logreg", tmp_path / "x.joblib")
    with pytest.raises(ModelError, match="cannot read the classes"):
        checkpoint_classes(tmp_path / "x.joblib")
    with pytest.raises(ModelError, match="missing"):
        checkpoint_classes(tmp_path / "absent.joblib")


def test_torch_checkpoint_classes_without_building_the_network(tmp_path, digits) -> None:
    X, y = digits
    labels = np.array(["zero", "one", "two"])[y[y < 3]]
    model = make_model("mlp", seed=0, epochs=1).fit(X[y < 3], labels)
    path = save_model(model, tmp_path / "m.pt")
    assert checkpoint_classes(path).tolist() == ["one", "two", "zero"]
    assert family_of("mlp").owns(model) and not family_of("logreg").owns(model)
    assert get_family("torch").with_samples(model, X, y, seed=0) is model


def test_text_checkpoint_classes_without_the_encoder(tmp_path) -> None:
    texts = np.array([f"text number {i}" for i in range(30)])
    y = np.array(["a", "b", "c"])[np.arange(30) % 3]
    model = make_text_model("minilm-logreg", encoder=CachedEncoder(Fake(), tmp_path / "c"))
    model.fit(texts, y)
    path = save_model(model, tmp_path / "t.joblib")
    assert family_of("minilm-logreg").owns(model)
    assert get_family("text").classes(path).tolist() == ["a", "b", "c"]
    # Without the recipe, the sklearn family refuses the file and the text family reads it.
    assert checkpoint_classes(path).tolist() == ["a", "b", "c"]


def test_with_samples_builds_the_committee_around_the_loaded_model(tmp_path, digits) -> None:
    X, y = digits
    CountingLogReg.fits = 0
    base = SklearnAdapter(CountingLogReg(max_iter=200)).fit(X, y)
    assert CountingLogReg.fits == 1
    committee = get_family("sklearn").with_samples(base, X, y, seed=4, committee_size=3)
    assert isinstance(committee, CommitteeAdapter)
    assert CountingLogReg.fits == 4  # three members, no refit of the main model
    assert committee.main_ is not None and committee.main_.model_ is base.model_
    pred = committee.predict(X[:20])
    np.testing.assert_array_equal(pred.proba, base.predict_proba(X[:20]))
    assert pred.samples is not None and pred.samples.shape == (3, 20, 10)


def test_save_model_by_recipe_and_by_owner(tmp_path, digits) -> None:
    X, y = digits
    model = make_model("logreg").fit(X, y)
    assert save_model(model, tmp_path / "a.joblib", recipe="logreg").is_file()
    mean = CommitteeAdapter(LogisticRegression(max_iter=200), n_members=2, proba="mean").fit(X, y)
    with pytest.raises(ModelError, match="proba='mean' has no main model"):
        save_model(mean, tmp_path / "b.joblib")

    class Mine:
        def save(self, path: Path) -> Path:
            path.write_text("mine")
            return path

    assert save_model(Mine(), tmp_path / "c.txt").read_text() == "mine"  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="no model family owns"):
        save_model(object(), tmp_path / "d")  # type: ignore[arg-type]
