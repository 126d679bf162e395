"""[stopping] is a discriminated union on ``name``: typed tables, clear errors, same TOML."""

from __future__ import annotations

import inspect
import tomllib
import typing
from pathlib import Path

import pytest

from exemplar.errors import ConfigError
from exemplar.project import load_config
from exemplar.project.config import (
    AnyOfConfig,
    CriterionConfig,
    LabelBudgetConfig,
    StabilizingConfig,
    save_config,
)
from exemplar.stopping import STOPPING_CRITERIA, AnyOf, LabelBudget, StabilizingPredictions

BASE = '[project]\nname = "p"\nclasses = ["a", "b"]\n'


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "exemplar.toml"
    path.write_text(BASE + text)
    return load_config(path)


def _models() -> list[type]:
    union = typing.get_args(CriterionConfig)[0]
    return list(typing.get_args(union))


def test_toml_of_the_previous_version_still_loads_typed(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[[stopping.criteria]]\nname = "label_budget"\nbudget = 200\n'
        '[[stopping.criteria]]\nname = "stabilizing_predictions"\nwindow = 2\n',
    )
    first, second = cfg.stopping.criteria  # type: ignore[attr-defined]
    assert isinstance(first, LabelBudgetConfig) and first.budget == 200
    assert isinstance(second, StabilizingConfig) and second.window == 2
    assert second.threshold == 0.99
    assert cfg.stopping.label_budget == 200  # type: ignore[attr-defined]
    built = cfg.stopping.build()  # type: ignore[attr-defined]
    assert isinstance(built, AnyOf)
    assert isinstance(built.criteria[0], LabelBudget)
    assert isinstance(built.criteria[1], StabilizingPredictions)


def test_saved_config_keeps_the_toml_shape(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[[stopping.criteria]]\nname = "label_budget"\nbudget = 150\n')
    out = tmp_path / "again.toml"
    save_config(cfg, out)  # type: ignore[arg-type]
    raw = tomllib.loads(out.read_text())
    assert raw["stopping"] == {
        "criteria": [{"name": "label_budget", "budget": 150}],
        "budget_unit": "items",
    }
    assert load_config(out) == cfg


def test_default_is_a_budget_of_200(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "")
    assert cfg.stopping.criteria == [LabelBudgetConfig(name="label_budget", budget=200)]  # type: ignore[attr-defined]


def test_nested_combinators_are_typed_too(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[[stopping.criteria]]\nname = "any_of"\n'
        '[[stopping.criteria.criteria]]\nname = "label_budget"\nbudget = 30\n'
        '[[stopping.criteria.criteria]]\nname = "kpi_reached"\ntarget = 0.9\n',
    )
    outer = cfg.stopping.criteria[0]  # type: ignore[attr-defined]
    assert isinstance(outer, AnyOfConfig) and isinstance(outer.criteria[0], LabelBudgetConfig)
    assert cfg.stopping.label_budget is None  # type: ignore[attr-defined]  # nested: not the hard limit


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "forever"\n', "[stopping].criteria.0: unknown stopping criterion 'forever'"),
        ("budget = 3\n", "[stopping].criteria.0: no name; set name to one of: all_of, any_of"),
        ('name = "label_budget"\n', "missing required key [stopping].criteria.0.label_budget"),
        (
            'name = "label_budget"\nbudget = 0\n',
            "[stopping].criteria.0.label_budget.budget: Input should be greater than or equal to 1",
        ),
        (
            'name = "label_budget"\nbudget = "200"\n',
            "[stopping].criteria.0.label_budget.budget: Input should be a valid integer",
        ),
        (
            'name = "stabilizing_predictions"\nwindw = 3\n',
            "unknown key [stopping].criteria.0.stabilizing_predictions.windw",
        ),
        (
            'name = "uncertainty_threshold"\nmeasure = "vibes"\n',
            "[stopping].criteria.0.uncertainty_threshold.measure",
        ),
        ('name = "kpi_reached"\ntarget = inf\n', "[stopping].criteria: target must be"),
    ],
)
def test_bad_criteria_name_their_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "[[stopping.criteria]]\n" + table)
    assert message in str(info.value)


def test_one_model_per_registered_criterion_with_the_same_defaults() -> None:
    models = {m.model_fields["name"].annotation.__args__[0]: m for m in _models()}
    assert set(models) == set(STOPPING_CRITERIA)
    for name, model in models.items():
        params = inspect.signature(STOPPING_CRITERIA[name].__init__).parameters
        fields = {k: f for k, f in model.model_fields.items() if k != "name"}
        assert set(fields) == {p for p in params if p != "self"}, name
        for key, field in fields.items():
            default = params[key].default
            if default is inspect.Parameter.empty:
                assert field.is_required(), (name, key)
            else:
                assert field.default == default, (name, key)
