"""The object simulator: paired detection curves, boxes counted, summary and CLI.

Tiny runs on SYNTHETIC cells (64 px, one epoch): the figures are meaningless, the protocol is
what is checked (paired initial images, boxes revealed only for picked images, outputs).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.data.cells import synthetic_cells
from exemplar.data.detection import DetectionDataset
from exemplar.errors import ConfigError
from exemplar.loop.config import DEFAULT_OBJECT_STRATEGY
from exemplar.simulate.objects import (
    OBJECT_RESULT_COLUMNS,
    ObjectSimulationConfig,
    ObjectSimulationResult,
    initial_images,
    run_object_simulation,
    summarize_objects,
    validate_object_config,
    write_object_outputs,
)

pytest.importorskip("torch")

SIDE = 64


@pytest.fixture(scope="module")
def cells() -> DetectionDataset:
    return synthetic_cells(28, size=SIDE, objects_per_image=(1, 8), seed=3)


@pytest.fixture(scope="module")
def run(cells: DetectionDataset) -> ObjectSimulationResult:
    config = ObjectSimulationConfig(
        dataset="cells",
        strategies=("random", "box_entropy"),
        seeds=2,
        initial=4,
        batch_size=3,
        cycles=2,
        image_side=SIDE,
        epochs=1,
    )
    return run_object_simulation(config, cells)


def _rows(result: ObjectSimulationResult, name: str, seed: int) -> list[dict[str, object]]:
    return [r for r in result.rows if r["strategy"] == name and r["seed"] == seed]


def test_rows_cover_every_strategy_seed_and_round(run: ObjectSimulationResult) -> None:
    assert len(run.rows) == 2 * 2 * 3
    assert all(tuple(r) == OBJECT_RESULT_COLUMNS for r in run.rows)
    for name in ("random", "box_entropy"):
        for seed in (0, 1):
            rows = _rows(run, name, seed)
            assert [r["round"] for r in rows] == [0, 1, 2]
            assert [r["n_images"] for r in rows] == [4, 7, 10]
            for r in rows:
                assert 0.0 <= float(r["map"]) <= float(r["map50"]) <= 1.0  # type: ignore[arg-type]


def test_initial_images_are_paired_across_strategies(run: ObjectSimulationResult) -> None:
    for seed in (0, 1):
        first = run.batches[("random", seed)][0]
        assert first == run.batches[("box_entropy", seed)][0]
        # same images, same seed, same recipe: the first round's model is the same one
        assert _rows(run, "random", seed)[0] == {
            **_rows(run, "box_entropy", seed)[0],
            "strategy": "random",
            "fit_seconds": _rows(run, "random", seed)[0]["fit_seconds"],
        }
    assert run.batches[("random", 0)][0] != run.batches[("random", 1)][0]


def test_boxes_counted_are_the_true_boxes_of_the_labeled_images(
    run: ObjectSimulationResult, cells: DetectionDataset
) -> None:
    truth = dict(zip(cells.names, cells.objects, strict=True))
    assert len(run.pool_names) == run.n_pool == 21 and run.n_test == 7
    for (name, seed), batches in run.batches.items():
        labeled: list[int] = []
        for rnd, batch in enumerate(batches):
            assert not set(batch) & set(labeled), "an image was labeled twice"
            labeled += batch
            expected = sum(len(truth[run.pool_names[i]]) for i in labeled)
            assert _rows(run, name, seed)[rnd]["n_boxes"] == expected


def test_initial_images_grow_until_they_hold_an_object() -> None:
    empty = synthetic_cells(1, size=SIDE, objects_per_image=(0, 0)).objects[0]
    full = synthetic_cells(1, size=SIDE, objects_per_image=(3, 3)).objects[0]
    objects = [empty] * 9 + [full]
    chosen = initial_images(0, 2, objects)
    assert any(len(objects[i]) for i in chosen)
    assert chosen.size >= 2 and len(set(chosen.tolist())) == chosen.size
    assert np.array_equal(chosen, initial_images(0, 2, objects))


def test_summary_lines_and_report(run: ObjectSimulationResult, tmp_path: Path) -> None:
    summary = summarize_objects(run)
    assert set(summary["strategies"]) == {"random", "box_entropy"}
    for name, stats in summary["strategies"].items():
        final = [float(r["map50"]) for r in run.rows if r["strategy"] == name and r["round"] == 2]
        assert stats["final_map50"]["mean"] == pytest.approx(np.mean(final))
        assert summary["lines"][name].startswith(f"{name}: final mAP@0.5 {np.mean(final):.3f}")
        assert len(summary["curves"][name]["map50"]) == 3
    paths = write_object_outputs(run, summary, tmp_path)
    with paths["results"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(run.rows) and tuple(rows[0]) == OBJECT_RESULT_COLUMNS
    assert json.loads(paths["summary"].read_text())["task"] == "detection"
    report = paths["report"].read_text()
    assert report.count("<img ") == 2
    assert "images labeled" in report and "boxes labeled" in report
    assert "SYNTHETIC" in report


def _fake(curves: dict[str, list[tuple[int, float]]], seeds: int = 1) -> ObjectSimulationResult:
    """A result with hand-made (boxes, mAP@0.5) curves, the same for every seed."""
    rounds = len(next(iter(curves.values())))
    config = ObjectSimulationConfig(
        dataset="hand", strategies=tuple(curves), seeds=seeds, cycles=rounds - 1
    )
    rows = [
        {
            "strategy": name,
            "seed": seed,
            "round": rnd,
            "n_images": 2 + 2 * rnd,
            "n_boxes": boxes,
            "map50": m50 + 0.01 * seed,
            "map": m50 / 2,
            "fit_seconds": 1.0,
            "query_seconds": 0.5,
        }
        for name, points in curves.items()
        for seed in range(seeds)
        for rnd, (boxes, m50) in enumerate(points)
    ]
    return ObjectSimulationResult(config, rows, 50, 10, 500, 100, ["cell"], True)


def test_boxes_to_reach_random_final_is_interpolated_and_paired() -> None:
    result = _fake(
        {
            "random": [(10, 0.1), (20, 0.2), (30, 0.3)],
            "box_entropy": [(10, 0.1), (20, 0.25), (30, 0.35)],
            "box_margin": [(10, 0.1), (20, 0.15), (30, 0.2)],
        },
        seeds=3,
    )
    summary = summarize_objects(result)
    reach = summary["strategies"]["box_entropy"]["boxes_to_random_final"]
    # 0.3 is reached halfway between 20 boxes (0.25) and 30 boxes (0.35): 25 of random's 30
    assert reach["boxes_per_seed"] == pytest.approx([25.0] * 3)
    assert reach["ratio"] == pytest.approx(25 / 30)
    assert reach["seeds_reached"] == 3
    assert reach["ci_low"] == pytest.approx(25 / 30) == reach["ci_high"]
    assert "83% of random's" in summary["lines"]["box_entropy"]
    assert summary["strategies"]["random"]["boxes_to_random_final"]["ratio"] == 1.0
    never = summary["strategies"]["box_margin"]["boxes_to_random_final"]
    assert never["seeds_reached"] == 0 and never["ratio"] is None
    assert "never reached" in summary["lines"]["box_margin"]
    assert "box_entropy needs fewer boxes than random" in summary["verdict"]
    diff = summary["strategies"]["box_entropy"]["diff_vs_random"]
    assert diff["mean"] == pytest.approx(0.05)


def test_no_box_ratio_when_random_never_improves() -> None:
    summary = summarize_objects(
        _fake({"random": [(10, 0.2), (20, 0.2)], "box_entropy": [(10, 0.2), (18, 0.3)]})
    )
    reach = summary["strategies"]["box_entropy"]["boxes_to_random_final"]
    assert reach["seeds_defined"] == 0 and reach["ratio"] is None
    assert "no box ratio" in summary["lines"]["box_entropy"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategies": ("margin",)}, "reads class probabilities"),
        ({"strategies": ("bogus",)}, "unknown strategy 'bogus'"),
        ({"model": "logreg"}, "is not a detector"),
        ({"cycles": 100}, "exceeds the pool"),
        ({"model_params": {"bogus": 1}}, "bogus"),
    ],
)
def test_bad_settings_are_clear_errors(
    cells: DetectionDataset, change: dict[str, object], message: str
) -> None:
    config = ObjectSimulationConfig(
        **{"dataset": "cells", "image_side": SIDE, "initial": 4, "batch_size": 3, **change}  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigError, match=message):
        validate_object_config(config, cells)


def test_default_strategy_is_the_object_default(cells: DetectionDataset) -> None:
    config = ObjectSimulationConfig(
        dataset="cells",
        strategies=("default",),
        seeds=1,
        initial=4,
        batch_size=3,
        cycles=1,
        image_side=SIDE,
        epochs=1,
    )
    result = run_object_simulation(config, cells)
    assert result.resolved == {"default": DEFAULT_OBJECT_STRATEGY}
    resolved = summarize_objects(result)["strategies"]["default"]["resolves_to"]
    assert resolved == DEFAULT_OBJECT_STRATEGY == "localization_stability"


def test_segmentation_scores_masks(cells: DetectionDataset) -> None:
    config = ObjectSimulationConfig(
        dataset="cells",
        task="segmentation",
        strategies=("random",),
        seeds=1,
        initial=4,
        batch_size=3,
        cycles=1,
        image_side=SIDE,
        epochs=1,
    )
    result = run_object_simulation(config, cells)
    assert [r["n_images"] for r in result.rows] == [4, 7]
    summary = summarize_objects(result)
    assert summary["metric"] == "segm" and summary["config"]["model"] == "centernet-seg"


def test_cli_detection_run(tmp_path: Path) -> None:
    out = tmp_path / "det"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--task",
            "detection",
            "--dataset",
            "cells",
            "--images",
            "20",
            "--image-side",
            str(SIDE),
            "--epochs",
            "1",
            "--min-steps",
            "2",
            "--strategies",
            "random,box_entropy",
            "--seeds",
            "1",
            "--initial",
            "3",
            "--batch-size",
            "3",
            "--cycles",
            "1",
            "--jobs",
            "1",
            "--out",
            str(out),
        ],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 0, result.output
    assert "box_entropy: final mAP@0.5" in result.output
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["strategy"], r["n_images"]) for r in rows] == [
        ("random", "3"),
        ("random", "6"),
        ("box_entropy", "3"),
        ("box_entropy", "6"),
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["image_side"] == SIDE and summary["config"]["epochs"] == 1
    assert summary["config"]["min_steps"] == 2
    assert (out / "report.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "detection", "--dataset", "wine"], "unknown detection dataset 'wine'"),
        (["--task", "tracking", "--dataset", "cells"], "unknown task 'tracking'"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["simulate", *args, "--out", str(tmp_path)], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_min_steps_raises_epochs_for_small_labeled_sets() -> None:
    from exemplar.simulate.objects import _make_detector

    config = ObjectSimulationConfig(
        dataset="cells", image_side=SIDE, epochs=5, min_steps=40, model_params={"batch_size": 4}
    )
    # 10 images in batches of 4: 3 steps per epoch, so 14 epochs give at least 40 steps
    assert _make_detector(config, ["cell"], 0, 10).config.epochs == 14  # type: ignore[attr-defined]
    # 100 images: 25 steps per epoch, so the 5 epochs asked already give 125 steps
    assert _make_detector(config, ["cell"], 0, 100).config.epochs == 5  # type: ignore[attr-defined]
    plain = ObjectSimulationConfig(dataset="cells", image_side=SIDE, epochs=5)
    assert _make_detector(plain, ["cell"], 0, 10).config.epochs == 5  # type: ignore[attr-defined]
