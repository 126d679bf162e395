"""The ``exemplar`` command line: a thin layer over the Python API.

Every command has ``--help``; long work shows a progress bar; an error is one clear line
(set ``EXEMPLAR_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from exemplar.cli.common import app, console, one_line_errors, parse_params
from exemplar.cli.simulate_common import (
    load_simulation_dataset,
    print_aulc_table,
    print_outputs,
    progress_bar,
    results_table,
)


def _deprecated_alias(old: str, old_value: int | None, new: str, value: int, default: int) -> int:
    """The value of ``new``, or of its deprecated alias ``old`` (an error if both differ)."""
    from exemplar.errors import ConfigError

    if old_value is None:
        return value
    if value != default and value != old_value:
        raise ConfigError(f"{old} is the old name of {new}; give only {new}")
    console.print(f"note: {old} is deprecated; use {new}", style="yellow", highlight=False)
    return old_value


#: The budget managers ``--scenario stream`` compares with random by default.
STREAM_MANAGERS = "fixed_uncertainty,variable_uncertainty,split,balanced_incremental"


@app.command()
@one_line_errors
def simulate(
    dataset: Annotated[
        str,
        typer.Option(
            help="Built-in name (see `exemplar datasets`) or a .csv/.npy/.npz path; "
            "detection and segmentation: cells (synthetic) or nuclei (mnfinder tiles); "
            "--scenario stream also: bananas or phishing (river's, offline)."
        ),
    ],
    task: Annotated[
        str,
        typer.Option(help="classification (default), detection or segmentation."),
    ] = "classification",
    strategies: Annotated[
        str, typer.Option(help="Comma-separated strategy names; 'default' is the default strategy.")
    ] = "default,random",
    model: Annotated[
        str | None,
        typer.Option(
            help="Model recipe (see `exemplar models`): logreg (default), random_forest, cnn, "
            "cnn-ensemble, mlp, mlp-ensemble, minilm-logreg, minilm-mlp; detection: "
            "centernet (default), segmentation: centernet-seg (default)."
        ),
    ] = None,
    model_param: Annotated[
        list[str] | None,
        typer.Option(
            help="A model hyper-parameter as KEY=VALUE (repeatable), e.g. epochs=20 or C=0.5; "
            "VALUE is read as JSON when it parses, else as a string."
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="Deep models: cpu (default), cuda, cuda:N or auto.")
    ] = "cpu",
    seeds: Annotated[int, typer.Option(help="Paired seeds per strategy.")] = 5,
    initial: Annotated[
        int | None,
        typer.Option(help="Random labels before the first query (default 20; detection 10)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Labels added per cycle (a project's selection batch_size; default 10)."),
    ] = None,
    cycles: Annotated[
        int | None,
        typer.Option(help="Query cycles after the initial set (default 30; detection 5)."),
    ] = None,
    batch: Annotated[
        int | None, typer.Option(hidden=True, help="Deprecated alias of --batch-size.")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(hidden=True, help="Deprecated alias of --cycles.")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Output folder for results.csv, summary.json, report.html.")
    ] = Path("results/simulation"),
    label_cost: Annotated[float, typer.Option(help="Cost of one expert label.")] = 1.0,
    engineering_cost: Annotated[
        float, typer.Option(help="One-off cost of setting up active learning.")
    ] = 0.0,
    test_size: Annotated[
        float, typer.Option(help="Fraction held out as the fixed test split.")
    ] = 0.25,
    noise_rate: Annotated[float, typer.Option(help="Probability the oracle flips a label.")] = 0.0,
    label_column: Annotated[
        str | None, typer.Option(help="Label column of a user CSV (name) or .npy (index).")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Parallel workers (-1: all cores).")] = -1,
    image_side: Annotated[
        int, typer.Option(help="Detection/segmentation: the detector's image side S.")
    ] = 128,
    epochs: Annotated[
        int, typer.Option(help="Detection/segmentation: detector training epochs per round.")
    ] = 10,
    min_steps: Annotated[
        int,
        typer.Option(
            help="Detection/segmentation: at least this many training steps per round "
            "(more epochs while few images are labeled)."
        ),
    ] = 0,
    images: Annotated[
        int, typer.Option(help="Detection/segmentation on cells: synthetic images generated.")
    ] = 120,
    curate: Annotated[
        bool,
        typer.Option(
            help="Curation run (classification): active learning with label-error review "
            "and pruning, against plain active learning and random, on a pool with injected "
            "wrong labels and near duplicates."
        ),
    ] = False,
    noise: Annotated[
        float, typer.Option(help="With --curate: share of oracle answers that are wrong.")
    ] = 0.10,
    duplicates: Annotated[
        float,
        typer.Option(help="With --curate: share of pool items given a jittered near-duplicate."),
    ] = 0.30,
    scenario: Annotated[
        str,
        typer.Option(
            help="pool (default): pool-based selection; stream: items arrive one at a time "
            "and budget managers decide at once (against random at the same budget); "
            "synthesis: the learner synthesizes query points, against pool-based selection; "
            "annotators: several simulated annotators of different accuracy, relabel or "
            "label new (ActiveLab)."
        ),
    ] = "pool",
    budget: Annotated[
        float, typer.Option(help="With --scenario stream: share of arrivals that may be labeled.")
    ] = 0.1,
    managers: Annotated[
        str,
        typer.Option(
            help="With --scenario stream: comma-separated budget managers (fixed_uncertainty, "
            "variable_uncertainty, split, balanced_incremental; random is always added)."
        ),
    ] = STREAM_MANAGERS,
    annotator_accuracy: Annotated[
        str,
        typer.Option(
            help="With --scenario annotators: comma-separated accuracies of the simulated "
            "annotators, e.g. 0.9,0.75,0.6."
        ),
    ] = "0.9,0.75,0.6",
) -> None:
    """Compare strategies against random on a fully labeled dataset, with paired seeds.

    With --task detection or segmentation, the items are annotated images and the labels
    their objects: curves are COCO mAP against images and boxes labeled. With --curate,
    the curated arm's training set size and accuracy per cycle are compared with plain
    active learning and random sampling.
    """
    if task not in ("classification", "detection", "segmentation"):
        from exemplar.errors import ConfigError

        raise ConfigError(
            f"unknown task {task!r}; choose classification, detection or segmentation"
        )
    if curate and task != "classification":
        from exemplar.errors import ConfigError

        raise ConfigError(f"--curate runs on classification only, not --task {task}")
    if scenario not in ("pool", "stream", "synthesis", "annotators"):
        from exemplar.errors import ConfigError

        raise ConfigError(
            f"unknown scenario {scenario!r}; choose pool, stream, synthesis or annotators"
        )
    if scenario != "pool" and (task != "classification" or curate):
        from exemplar.errors import ConfigError

        raise ConfigError(f"--scenario {scenario} runs on classification, without --curate")
    objects = task != "classification"
    default_cycles = 5 if objects else 30
    initial = (10 if objects else 20) if initial is None else initial
    batch_size = _deprecated_alias(
        "--batch", batch, "--batch-size", 10 if batch_size is None else batch_size, 10
    )
    cycles = _deprecated_alias(
        "--rounds", rounds, "--cycles", default_cycles if cycles is None else cycles, default_cycles
    )
    if objects:
        _simulate_objects(
            task,
            dataset,
            strategies=strategies,
            model=model,
            model_params=parse_params(model_param or []),
            device=device,
            seeds=seeds,
            initial=initial,
            batch_size=batch_size,
            cycles=cycles,
            test_size=test_size,
            jobs=jobs,
            image_side=image_side,
            epochs=epochs,
            min_steps=min_steps,
            images=images,
            out=out,
        )
        return
    unused: dict[str, tuple[object, object]] = {}
    if scenario in ("stream", "annotators"):
        unused |= {
            "--strategies": (strategies, "default,random"),
            "--noise-rate": (noise_rate, 0.0),
            "--device": (device, "cpu"),
            "--label-cost": (label_cost, 1.0),
            "--engineering-cost": (engineering_cost, 0.0),
        }
    if scenario == "stream":
        unused |= {"--batch-size": (batch_size, 10), "--cycles": (cycles, 30)}
    else:
        unused |= {
            "--budget": (budget, 0.1),
            "--managers": (managers, STREAM_MANAGERS),
        }
    if scenario != "annotators":
        unused["--annotator-accuracy"] = (annotator_accuracy, "0.9,0.75,0.6")
    _refuse_unused(scenario, unused)
    # What every classification scenario reads; each adds its own settings.
    common: dict[str, Any] = {
        "model": model,
        "model_params": parse_params(model_param or []),
        "seeds": seeds,
        "initial": initial,
        "test_size": test_size,
        "label_column": label_column,
        "jobs": jobs,
        "out": out,
    }
    rounds_of: dict[str, Any] = {"batch_size": batch_size, "cycles": cycles}
    if scenario == "stream":
        from exemplar.cli.stream_commands import simulate_stream

        simulate_stream(dataset, budget=budget, managers=managers, **common)
        return
    if scenario == "synthesis":
        from exemplar.cli.synthesis_commands import simulate_synthesis

        simulate_synthesis(
            dataset,
            strategies=strategies,
            device=device,
            noise_rate=noise_rate,
            label_cost=label_cost,
            engineering_cost=engineering_cost,
            **rounds_of,
            **common,
        )
        return
    if scenario == "annotators":
        from exemplar.cli.relabel_commands import simulate_annotators

        simulate_annotators(dataset, accuracies=annotator_accuracy, **rounds_of, **common)
        return
    if curate:
        _simulate_curation(
            dataset,
            strategies=strategies,
            device=device,
            noise=noise,
            duplicates=duplicates,
            **rounds_of,
            **common,
        )
        return
    from exemplar.simulate import (
        SimulationConfig,
        run_simulation,
        summarize,
        validate_config,
        write_outputs,
    )

    model = "logreg" if model is None else model
    names = tuple(s.strip() for s in strategies.split(",") if s.strip())
    data = load_simulation_dataset(dataset, label_column)
    config = SimulationConfig(
        dataset=data.name,
        model=model,
        model_params=parse_params(model_param or []),
        device=device,
        strategies=names,
        seeds=seeds,
        initial=initial,
        batch_size=batch_size,
        cycles=cycles,
        test_size=test_size,
        noise_rate=noise_rate,
        label_cost=label_cost,
        engineering_cost=engineering_cost,
        jobs=jobs,
    )
    validate_config(config, data)
    total = len(names) * seeds * (cycles + 1)
    with progress_bar("simulating", f"{data.name} · {', '.join(names)}", total) as on_progress:
        result = run_simulation(config, data, on_progress=on_progress)
    summary = summarize(result)
    paths = write_outputs(result, summary, out)
    print_aulc_table(
        f"{data.name}: normalized AULC over {seeds} seeds",
        "strategy",
        "gain vs random [95% CI]",
        summary["strategies"],
        {
            name: s.get("diff_vs_random") if name != "random" else None
            for name, s in summary["strategies"].items()
        },
    )
    print_outputs(summary["verdict"], paths)


def _simulate_objects(
    task: str,
    dataset: str,
    *,
    strategies: str,
    model: str | None,
    model_params: dict[str, object],
    device: str,
    seeds: int,
    initial: int,
    batch_size: int,
    cycles: int,
    test_size: float,
    jobs: int,
    image_side: int,
    epochs: int,
    min_steps: int,
    images: int,
    out: Path,
) -> None:
    """``exemplar simulate --task detection|segmentation``: the object simulator."""
    from exemplar.simulate.objects import (
        ObjectSimulationConfig,
        load_object_dataset,
        run_object_simulation,
        summarize_objects,
        validate_object_config,
        write_object_outputs,
    )

    names = tuple(s.strip() for s in strategies.split(",") if s.strip())
    pool, test = load_object_dataset(dataset, image_side=image_side, n_images=images)
    config = ObjectSimulationConfig(
        dataset=dataset,
        task=task,  # type: ignore[arg-type]
        model=model,
        model_params=model_params,
        device=device,
        strategies=names,
        seeds=seeds,
        initial=initial,
        batch_size=batch_size,
        cycles=cycles,
        test_size=test_size,
        image_side=image_side,
        epochs=epochs,
        min_steps=min_steps,
        jobs=jobs,
    )
    validate_object_config(config, pool, test)
    total = len(names) * seeds * (cycles + 1)
    description = f"{dataset} ({task}) · {', '.join(names)}"
    with progress_bar("simulating", description, total) as on_progress:
        result = run_object_simulation(config, pool, test, on_progress=on_progress)
    summary = summarize_objects(result)
    paths = write_object_outputs(result, summary, out)
    for line in summary["lines"].values():
        console.print(line, highlight=False)
    print_outputs(summary["verdict"], paths)


@app.command("strategies")
@one_line_errors
def list_strategies() -> None:
    """List the query strategies with a one-line description and reference."""
    from exemplar.strategies import DEFAULT_STRATEGY, STRATEGIES

    table = Table(title=f"strategies ('default' = {DEFAULT_STRATEGY})")
    table.add_column("name", no_wrap=True)
    for col in ("reads", "description", "reference"):
        table.add_column(col)
    for name, cls in STRATEGIES.items():
        reads = ", ".join(sorted(cls.requires)) or "nothing"
        if cls.cold_start:
            reads += " (cold start)"
        table.add_row(name, reads, cls.summary, cls.reference)
    console.print(table)


@app.command("models")
@one_line_errors
def list_models() -> None:
    """List the model recipes for --model and for the model candidates in exemplar.toml."""
    from exemplar.models import MODEL_RECIPES

    table = Table(title="model recipes")
    for col in ("name", "family", "inputs", "description"):
        table.add_column(col, no_wrap=col == "name")
    for recipe in MODEL_RECIPES.values():
        inputs = (
            "texts"
            if recipe.reads_text
            else "image files"
            if recipe.reads_files
            else "feature rows"
        )
        table.add_row(recipe.name, recipe.family, inputs, recipe.description)
    console.print(table)
    console.print(
        "torch and text recipes need the extras: pip install 'exemplar[torch]' or 'exemplar[text]'.",
        markup=False,
    )


@app.command()
@one_line_errors
def datasets() -> None:
    """List the built-in datasets (all load offline) and the accepted file formats."""
    from exemplar.data import builtin_datasets

    table = Table(title="built-in datasets")
    table.add_column("name", no_wrap=True)
    for col in ("items", "features", "classes", "description"):
        table.add_column(col, justify="left" if col == "description" else "right")
    for info in builtin_datasets():
        table.add_row(
            info.name,
            str(info.n_items),
            "text" if info.kind == "text" else str(info.n_features),
            str(info.n_classes),
            info.description,
        )
    console.print(table)
    console.print(
        "Your own data: pass a path to a .csv (header row; label column 'label', 'y', 'class' "
        "or 'target', or --label-column), a .npy feature matrix, or a .npz with X and y."
    )


def _refuse_unused(scenario: str, options: dict[str, tuple[object, object]]) -> None:
    """A clear error for an option the scenario does not read (never ignored silently)."""
    from exemplar.errors import ConfigError

    given = [flag for flag, (value, default) in options.items() if value != default]
    if given:
        raise ConfigError(f"--scenario {scenario} does not take {', '.join(given)}")


def main() -> None:
    """Entry point for ``python -m exemplar``."""
    app()


# Project and server commands register themselves on `app`.
from exemplar.cli import (  # noqa: F401
    project_commands,
    relabel_commands,
    scale_commands,
    select_commands,
    server_commands,
    stream_commands,
    synthesis_commands,
    video_commands,
)


def _simulate_curation(
    dataset: str,
    *,
    strategies: str,
    model: str | None,
    model_params: dict[str, object],
    device: str,
    seeds: int,
    initial: int,
    batch_size: int,
    cycles: int,
    test_size: float,
    noise: float,
    duplicates: float,
    label_column: str | None,
    jobs: int,
    out: Path,
) -> None:
    """``exemplar simulate --curate``: curated vs plain active learning vs random."""
    from exemplar.errors import ConfigError
    from exemplar.simulate.curation import (
        ARMS,
        CurationSimulationConfig,
        run_curation_simulation,
        summarize_curation,
        validate_curation_config,
        write_curation_outputs,
    )

    names = [s.strip() for s in strategies.split(",") if s.strip() and s.strip() != "random"]
    if len(names) != 1:
        raise ConfigError(
            "--curate compares one active-learning strategy (plus random); "
            f"give one in --strategies, got {strategies!r}"
        )
    data = load_simulation_dataset(dataset, label_column)
    config = CurationSimulationConfig(
        dataset=data.name,
        model="logreg" if model is None else model,
        model_params=model_params,
        device=device,
        strategy=names[0],
        seeds=seeds,
        initial=initial,
        batch_size=batch_size,
        cycles=cycles,
        test_size=test_size,
        noise=noise,
        duplicates=duplicates,
        jobs=jobs,
    )
    validate_curation_config(config, data)
    total = len(ARMS) * seeds * (cycles + 1)
    with progress_bar("curation run", data.name, total) as on_progress:
        result = run_curation_simulation(config, data, on_progress=on_progress)
    summary = summarize_curation(result)
    paths = write_curation_outputs(result, summary, out)
    table = results_table(
        f"{data.name}: after {cycles} cycles, mean over {seeds} seeds",
        ("arm", "labels spent", "training set", "accuracy", "wrong labels", "reviews"),
    )
    for arm, s in summary["arms"].items():
        f = s["final"]
        table.add_row(
            arm,
            f"{f['labels_spent']:.0f}",
            f"{f['n_train']:.0f}",
            f"{f['accuracy']:.3f}",
            f"{f['wrong_share']:.1%}",
            f"{f['reviews_total']:.0f}",
        )
    console.print(table)
    print_outputs(summary["verdict"], paths)
