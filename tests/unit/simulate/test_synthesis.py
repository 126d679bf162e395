"""Query synthesis (issue #14, part D): boundary queries, oracle labels, paired protocol, report."""

from __future__ import annotations

import csv
import json
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.data import Dataset, load_dataset
from exemplar.errors import ConfigError
from exemplar.models import ModelAdapter, make_model
from exemplar.simulate import SimulationConfig, synthesis
from exemplar.simulate.synthesis import (
    SYNTHESIS_ARM,
    SYNTHESIS_COLUMNS,
    SynthesisConfig,
    run_synthesis_simulation,
    summarize_synthesis,
    synthesize_batch,
    validate_synthesis_config,
    write_synthesis_outputs,
)

WINE = load_dataset("wine")


def _two_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(-2.0, 1.0, (30, 2)), rng.normal(2.0, 1.0, (30, 2))])
    y = np.repeat([0, 1], 30)
    return X, y


def _kwargs(X: np.ndarray, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "center": X.mean(axis=0),
        "scale": X.std(axis=0),
        "low": X.min(axis=0),
        "high": X.max(axis=0),
        "rng": np.random.default_rng(0),
    }
    base.update(kw)
    return base


def test_synthesized_points_lie_on_the_models_decision_boundary() -> None:
    X, y = _two_blobs()
    model = make_model("logreg", 0).fit(X, y)
    points = synthesize_batch(model, X, y, 8, **_kwargs(X))
    assert points.shape == (8, 2)
    proba = model.predict(points).proba
    assert proba is not None
    # On the boundary of a binary model both classes are equally likely.
    assert np.all(np.abs(proba[:, 1] - 0.5) < 0.02)
    labeled = model.predict(X).proba
    assert labeled is not None
    assert np.abs(labeled[:, 1] - 0.5).min() > 0.02  # real items are not boundary points
    # A batch spreads out: no two queries coincide.
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(8) * 1e9
    assert gaps.min() > 1e-3


def test_exploration_leaves_the_hull_of_the_labeled_set() -> None:
    rng = np.random.default_rng(1)
    # Labeled points in a thin band around y = 0; the data's box is much taller.
    X = np.vstack([rng.normal([-1.0, 0.0], 0.1, (15, 2)), rng.normal([1.0, 0.0], 0.1, (15, 2))])
    y = np.repeat([0, 1], 15)
    model = make_model("logreg", 0).fit(X, y)
    box = _kwargs(X, low=np.array([-3.0, -3.0]), high=np.array([3.0, 3.0]))
    inside = synthesize_batch(
        model, X, y, 10, **{**box, "rng": np.random.default_rng(0)}, explore=0.0
    )
    assert np.abs(inside[:, 1]).max() <= np.abs(X[:, 1]).max() + 1e-9  # segments stay in the hull
    outside = synthesize_batch(model, X, y, 10, **box, explore=1.0)
    assert np.abs(outside[:, 1]).max() > 1.0  # exploration reaches the rest of the box
    proba = model.predict(outside).proba
    assert proba is not None
    assert np.all(np.abs(proba[:, 1] - 0.5) < 0.02)  # and still queries the boundary
    with pytest.raises(ConfigError, match="explore"):
        synthesize_batch(model, X, y, 2, **box, explore=1.5)


def test_too_few_nearest_pairs_widen_to_all_pairs_not_off_boundary_points() -> None:
    X, y = _two_blobs()
    X, y = X[[0, 1, 2, 30, 31, 32]], y[[0, 1, 2, 30, 31, 32]]  # 6 labeled: few nearest pairs
    model = make_model("logreg", 0).fit(X, y)
    points = synthesize_batch(model, X, y, 8, **_kwargs(X), neighbours=1, explore=0.0)
    assert points.shape == (8, 2)
    proba = model.predict(points).proba
    assert proba is not None
    assert np.all(np.abs(proba[:, 1] - 0.5) < 0.02)


def test_points_are_clipped_to_the_data_range() -> None:
    X, y = _two_blobs()
    model = make_model("logreg", 0).fit(X, y)
    low, high = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    points = synthesize_batch(model, X, y, 6, **_kwargs(X, low=low, high=high))
    assert np.all(points >= low) and np.all(points <= high)


class _OneClass:
    """A model that predicts one class everywhere: no pair straddles a boundary."""

    classes_ = np.array([0, 1])

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X), dtype=np.int64)


ONE_CLASS = cast(ModelAdapter, _OneClass())


def test_a_model_without_boundary_still_gets_a_full_batch_between_classes() -> None:
    X, y = _two_blobs()
    points = synthesize_batch(ONE_CLASS, X, y, 5, **_kwargs(X))
    assert points.shape == (5, 2)
    # Fallback points sit on segments between the classes: inside their bounding box.
    assert np.all(points >= X.min(axis=0)) and np.all(points <= X.max(axis=0))
    again = synthesize_batch(ONE_CLASS, X, y, 5, **_kwargs(X))
    np.testing.assert_array_equal(points, again)  # seeded: reproducible


def test_single_class_labeled_set_is_a_clear_error() -> None:
    X, y = _two_blobs()
    with pytest.raises(ConfigError, match="two classes"):
        synthesize_batch(ONE_CLASS, X[:30], y[:30], 3, **_kwargs(X))


def test_farthest_first_prefers_unexplored_candidates() -> None:
    candidates = np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [5.0, 5.0]])
    anchors = np.array([[0.0, 0.1]])
    picks = synthesis._farthest_first(candidates, anchors, 2)
    assert picks[0] == 3  # far from the labeled anchor
    assert picks[1] in (0, 1, 2)  # then the cluster, once


def test_farthest_first_never_builds_a_candidates_by_anchors_by_features_array() -> None:
    rng = np.random.default_rng(0)
    candidates, anchors = rng.random((300, 400)), rng.random((200, 400))
    tracemalloc.start()
    try:
        picks = synthesis._farthest_first(candidates, anchors, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6  # the 3-D difference array alone would take 192 MB
    # Same first pick as the exact distances: the candidate farthest from every anchor.
    exact = np.sqrt(((candidates[:, None, :] - anchors[None, :, :]) ** 2).sum(axis=2))
    assert picks[0] == int(exact.min(axis=1).argmax())
    assert len(set(picks.tolist())) == 5


def test_the_batch_reports_how_many_points_are_boundary_queries() -> None:
    X, y = _two_blobs()
    model = make_model("logreg", 0).fit(X, y)
    counts = {}
    for explore in (0.0, 0.5, 1.0):
        points, n_boundary = synthesis._synthesize(
            model, X, y, 6, neighbours=3, steps=12, explore=explore, **_kwargs(X)
        )
        assert points.shape == (6, 2)
        counts[explore] = n_boundary
    assert counts == {0.0: 6, 0.5: 3, 1.0: 0}


def test_diagnostics_split_boundary_and_exploration_queries() -> None:
    X, _ = _two_blobs()
    ref = synthesis._Reference.of(X)
    far = X.max(axis=0) + 50.0 * X.std(axis=0)
    points = np.vstack([X[:3], np.tile(far, (2, 1))])  # 3 real items, then 2 far points
    out = synthesis._diagnostics(ref, points, np.array([0.9, 0.9, 0.9, 0.5, 0.7]), 3)
    assert out["offmanifold_ratio_boundary"] == 0.0
    assert out["offmanifold_ratio_explore"] > 10.0
    assert out["offmanifold_ratio"] == 0.0  # the median over the batch hides the far points
    assert out["oracle_confidence_boundary"] == pytest.approx(0.9)
    assert out["oracle_confidence_explore"] == pytest.approx(0.6)
    none = synthesis._diagnostics(ref, X[:2], np.array([1.0, 1.0]), 2)
    assert np.isnan(none["offmanifold_ratio_explore"])


def _config(**kw: Any) -> SynthesisConfig:
    sim: dict[str, Any] = {
        "dataset": "wine",
        "strategies": ("margin", "random"),
        "seeds": 2,
        "initial": 10,
        "batch_size": 5,
        "cycles": 2,
        "jobs": 1,
    }
    sim.update(kw.pop("sim", {}))
    return SynthesisConfig(SimulationConfig(**sim), **kw)


@pytest.fixture(scope="module")
def wine_run() -> tuple[synthesis.SynthesisResult, dict[str, Any]]:
    sres = run_synthesis_simulation(_config(), WINE)
    return sres, summarize_synthesis(sres)


def test_rows_are_paired_with_the_pool_arms(wine_run: Any) -> None:
    sres, _ = wine_run
    rows = sres.result.rows
    assert sres.result.config.strategies == ("margin", "random", SYNTHESIS_ARM)
    assert len(rows) == 3 * 2 * 3
    for seed in range(2):
        start = {
            r["strategy"]: r["accuracy"] for r in rows if r["seed"] == seed and r["round"] == 0
        }
        # Same initial labels, same recipe: the same round-0 model in every arm.
        assert start[SYNTHESIS_ARM] == start["margin"] == start["random"]
    for r in rows:
        assert r["n_labels"] == 10 + 5 * r["round"]
        if r["strategy"] == SYNTHESIS_ARM:
            assert r["n_synthesized"] == 5 * r["round"]
            if r["round"] > 0:
                assert 0.0 < r["oracle_confidence"] <= 1.0
                assert r["offmanifold_ratio"] > 0.0
                for kind in ("boundary", "explore"):  # explore=0.5: both kinds in each batch
                    assert 0.0 < r[f"oracle_confidence_{kind}"] <= 1.0
                    assert r[f"offmanifold_ratio_{kind}"] > 0.0


class _DtypeRecorder:
    """A model adapter that records the dtype of every training set it is fit on."""

    def __init__(self, model: ModelAdapter, seen: list[np.dtype[Any]]) -> None:
        self.model, self.seen = model, seen

    def fit(self, X: Any, y: Any) -> _DtypeRecorder:
        self.seen.append(np.asarray(X).dtype)
        self.model.fit(X, y)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def test_float32_data_stay_float32_so_the_arms_are_paired(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WINE.y is not None
    data = Dataset("wine32", np.asarray(WINE.X, dtype=np.float32), WINE.y)
    seen: list[np.dtype[Any]] = []
    original = synthesis.make_adapter
    monkeypatch.setattr(synthesis, "make_adapter", lambda *a: _DtypeRecorder(original(*a), seen))
    sres = run_synthesis_simulation(_config(sim={"dataset": "wine32", "seeds": 2}), data)
    # The learner of the synthesis arm sees the data in their own dtype, like the pool arms.
    assert len(seen) == 2 * 3 and all(d == np.float32 for d in seen)
    rows = sres.result.rows
    for seed in range(2):
        start = {
            r["strategy"]: (r["accuracy"], r["macro_f1"])
            for r in rows
            if r["seed"] == seed and r["round"] == 0
        }
        assert start[SYNTHESIS_ARM] == start["margin"] == start["random"]


def test_summary_compares_synthesis_with_every_pool_arm(wine_run: Any) -> None:
    _, summary = wine_run
    syn = summary["synthesis"]
    assert set(syn["versus"]) == {"margin", "random"}
    arms = summary["strategies"]
    for name, diff in syn["versus"].items():
        expected = np.mean(
            np.subtract(arms[SYNTHESIS_ARM]["aulc_per_seed"], arms[name]["aulc_per_seed"])
        )
        assert diff["mean"] == pytest.approx(expected)
        call = syn["calls"][name]
        words = {"better": "beats", "worse": "trails", "tie": "ties with"}[call]
        assert f"{words} {name}" in summary["verdict"]
    assert syn["oracle"] == "random_forest"
    assert 0.8 < syn["oracle_test_accuracy"] <= 1.0
    assert "pool_verdict" in summary
    for kind in ("boundary", "explore"):
        assert syn[f"offmanifold_ratio_{kind}_median"] > 0.0
        assert 0.0 < syn[f"oracle_query_confidence_{kind}"] <= 1.0
    assert "boundary queries" in summary["verdict"]
    assert "not an upper bound" in summary["verdict"]
    json.dumps(summary)  # valid JSON: no NaN


def test_cost_and_pool_verdict_never_treat_synthesis_as_a_pool_strategy(wine_run: Any) -> None:
    sres, _ = wine_run
    # Make synthesis the arm with the best curve: it must still not be "the best strategy".
    rows = [
        {**r, "accuracy": 1.0, "macro_f1": 1.0} if r["strategy"] == SYNTHESIS_ARM else r
        for r in sres.result.rows
    ]
    boosted = replace(sres, result=replace(sres.result, rows=rows))
    summary = summarize_synthesis(boosted)
    assert summary["strategies"][SYNTHESIS_ARM]["aulc_mean"] == 1.0
    assert SYNTHESIS_ARM not in summary["pool_verdict"]
    assert summary["cost"] is None or summary["cost"]["strategy"] in ("margin", "random")
    assert summary["synthesis"]["versus"]["margin"]["mean"] > 0.0  # still compared with it


def test_outputs_hold_the_synthesis_columns_and_section(wine_run: Any, tmp_path: Path) -> None:
    sres, summary = wine_run
    paths = write_synthesis_outputs(sres, summary, tmp_path)
    with paths["results"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert set(SYNTHESIS_COLUMNS) <= set(rows[0])
    assert {r["strategy"] for r in rows} == {"margin", "random", SYNTHESIS_ARM}
    assert all(r["n_synthesized"] == "" for r in rows if r["strategy"] != SYNTHESIS_ARM)
    page = paths["report"].read_text()
    assert 'id="synthesis"' in page and "Where synthesis helps" in page
    assert "exploration queries</th>" in page and "unearned" not in page
    assert "Query synthesis vs pool-based selection" in page
    assert json.loads(paths["summary"].read_text())["verdict"] == summary["verdict"]


def test_synthesized_points_get_the_oracle_models_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    fitted: list[int] = []

    def constant_oracle(name: str, seed: int = 0) -> Any:
        class Recording(DummyClassifier):
            def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
                fitted.append(len(X))
                return super().fit(X, y)

        return Recording(strategy="constant", constant=0)

    monkeypatch.setattr(synthesis, "make_oracle", constant_oracle)
    sres = run_synthesis_simulation(_config(sim={"seeds": 1}), WINE)
    n_test = sres.result.n_test
    assert WINE.y is not None
    assert fitted == [len(WINE.y) - n_test]  # fit on the pool only, never the test split
    synth = [r for r in sres.result.rows if r["strategy"] == SYNTHESIS_ARM and r["round"] > 0]
    assert synth and all(r["batch_classes"] == 1 for r in synth)  # every answer was class 0
    assert all(r["oracle_confidence"] == 1.0 for r in synth)


def test_invalid_settings_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="pool-based strategy"):
        validate_synthesis_config(_config(sim={"strategies": ("synthesis",)}), WINE)
    with pytest.raises(ConfigError, match="unknown oracle"):
        validate_synthesis_config(_config(oracle="svm"), WINE)
    with pytest.raises(ConfigError, match="neighbours"):
        validate_synthesis_config(_config(neighbours=0), WINE)
    texts = Dataset(
        "texts", np.array(["a b", "c d", "e f", "g h"]), np.array([0, 1, 0, 1]), kind="text"
    )
    with pytest.raises(ConfigError, match="holds texts"):
        validate_synthesis_config(_config(), texts)
    with pytest.raises(ConfigError, match="exceeds the pool"):
        validate_synthesis_config(_config(sim={"cycles": 100}), WINE)
    with pytest.raises(ConfigError, match="noise_rate"):
        validate_synthesis_config(_config(sim={"noise_rate": 0.2}), WINE)


def test_cli_command_passes_costs_through_and_refuses_label_noise(tmp_path: Path) -> None:
    from exemplar.cli.synthesis_commands import simulate_synthesis

    common: dict[str, Any] = {
        "strategies": "margin,random",
        "model": None,
        "model_params": {},
        "seeds": 2,
        "initial": 10,
        "batch_size": 5,
        "cycles": 1,
        "test_size": 0.25,
        "label_column": None,
        "jobs": 1,
        "out": tmp_path,
    }
    with pytest.raises(ConfigError, match="noise_rate"):
        simulate_synthesis("wine", noise_rate=0.3, **common)
    simulate_synthesis("wine", label_cost=7.0, engineering_cost=3.0, **common)
    config = json.loads((tmp_path / "summary.json").read_text())["config"]
    assert (config["label_cost"], config["engineering_cost"]) == (7.0, 3.0)


def test_cli_scenario_synthesis_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    result = CliRunner().invoke(
        app,
        [
            "simulate", "--dataset", "wine", "--scenario", "synthesis", "--strategies",
            "margin,random", "--seeds", "2", "--initial", "10", "--batch-size", "5",
            "--cycles", "1", "--jobs", "1", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "synthesis" in result.output and "report:" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"margin", "random", SYNTHESIS_ARM}
    assert (out / "report.html").exists()


def test_cli_rejects_text_data_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["simulate", "--dataset", "trec", "--scenario", "synthesis", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "holds texts" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_parallel_and_serial_runs_give_the_same_curves() -> None:
    config = _config(sim={"cycles": 1})
    serial = run_synthesis_simulation(config, WINE)
    parallel = run_synthesis_simulation(SynthesisConfig(replace(config.simulation, jobs=2)), WINE)
    keys = ("strategy", "seed", "round", "n_labels", "accuracy", "macro_f1")
    assert [tuple(r[k] for k in keys) for r in serial.result.rows] == [
        tuple(r[k] for k in keys) for r in parallel.result.rows
    ]
