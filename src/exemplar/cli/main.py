"""The ``exemplar`` command line: a thin layer over the Python API.

Every command has ``--help``; long work shows a progress bar; an error is one clear line
(set ``EXEMPLAR_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from exemplar.errors import ExemplarError

app = typer.Typer(
    name="exemplar",
    help="Active learning that proves itself against random sampling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(fn: F) -> F:
    """Print exemplar errors (and unexpected ones) as a single line and exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ExemplarError as exc:
            if os.environ.get("EXEMPLAR_DEBUG"):
                raise
            _print_error("error:", str(exc))
            raise typer.Exit(2) from None
        except (OSError, MemoryError) as exc:
            if os.environ.get("EXEMPLAR_DEBUG"):
                raise
            _print_error("error:", str(exc))
            raise typer.Exit(1) from None
        except Exception as exc:  # a bug: still one line, with the way to see more
            if os.environ.get("EXEMPLAR_DEBUG"):
                raise
            damaged = _damaged_database(exc)
            if damaged is not None:  # a corrupt SQLite file met outside SQLAlchemy
                _print_error("error:", str(damaged))
                raise typer.Exit(2) from None
            _print_error(
                "internal error:",
                f"{type(exc).__name__}: {exc} "
                "(set EXEMPLAR_DEBUG=1 to see the traceback, and please report it)",
            )
            raise typer.Exit(3) from None

    return wrapper  # type: ignore[return-value]


def _damaged_database(exc: BaseException) -> ExemplarError | None:
    """The damaged-database error for a raw sqlite3 error of a corrupt file, else None.

    Statements run through SQLAlchemy raise ``DamagedProjectError`` themselves; this
    catches the few hot paths that use the driver's cursor directly.
    """
    import sqlite3

    if not isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        getattr(exc, "orig", None), sqlite3.DatabaseError
    ):
        return None
    from exemplar.store.db import damaged_database, is_damage

    if not is_damage(exc):
        return None
    return damaged_database(None, str(getattr(exc, "orig", None) or exc))


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=20", "C=0.5", "optimizer=sgd"]`` -> a dict; values are JSON when they parse."""
    import json

    from exemplar.errors import ConfigError

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-param {pair!r} is not KEY=VALUE")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def _print_error(prefix: str, message: str) -> None:
    """One line on stderr; the message is plain text (``[section]`` is not rich markup)."""
    err_console.print(
        Text.assemble((prefix, "bold red"), " ", message), highlight=False, soft_wrap=True
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


@app.command()
@one_line_errors
def simulate(
    dataset: Annotated[
        str, typer.Option(help="Built-in name (see `exemplar datasets`) or a .csv/.npy/.npz path.")
    ],
    strategies: Annotated[
        str, typer.Option(help="Comma-separated strategy names; 'default' is the default strategy.")
    ] = "default,random",
    model: Annotated[
        str,
        typer.Option(
            help="Model recipe (see `exemplar models`): logreg, random_forest, cnn, "
            "cnn-ensemble, mlp, mlp-ensemble, minilm-logreg, minilm-mlp."
        ),
    ] = "logreg",
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
    initial: Annotated[int, typer.Option(help="Random labels before the first query.")] = 20,
    batch_size: Annotated[
        int, typer.Option(help="Labels added per cycle (as [selection] batch_size).")
    ] = 10,
    cycles: Annotated[int, typer.Option(help="Query cycles after the initial set.")] = 30,
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
) -> None:
    """Compare strategies against random on a fully labeled dataset, with paired seeds."""
    from exemplar.data import load_dataset
    from exemplar.simulate import (
        SimulationConfig,
        run_simulation,
        summarize,
        validate_config,
        write_outputs,
    )

    batch_size = _deprecated_alias("--batch", batch, "--batch-size", batch_size, 10)
    cycles = _deprecated_alias("--rounds", rounds, "--cycles", cycles, 30)
    names = tuple(s.strip() for s in strategies.split(",") if s.strip())
    column: str | int | None = label_column
    if label_column is not None and label_column.lstrip("-").isdigit():
        column = int(label_column)
    data = load_dataset(dataset, label_column=column)
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
    with Progress(
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cycles"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"{data.name} · {', '.join(names)}", total=total)
        result = run_simulation(config, data, on_progress=lambda k: progress.advance(task, k))
    summary = summarize(result)
    paths = write_outputs(result, summary, out)
    table = Table(title=f"{data.name}: normalized AULC over {seeds} seeds")
    for col in ("strategy", "AULC", "gain vs random [95% CI]", "final acc", "query ms"):
        table.add_column(
            col, justify="left" if col == "strategy" else "right", no_wrap=col == "strategy"
        )
    for name, s in summary["strategies"].items():
        d = s.get("diff_vs_random")
        gain = "—"
        if d and name != "random":
            gain = f"{d['mean']:+.3f}" + (
                f" [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d["ci_low"] is not None else ""
            )
        table.add_row(
            name,
            f"{s['aulc_mean']:.3f} ± {s['aulc_std']:.3f}",
            gain,
            f"{s['final_accuracy_mean']:.3f}",
            f"{s['query_seconds_mean'] * 1000:.1f}",
        )
    console.print(table)
    console.print(summary["verdict"], highlight=False)
    console.print(
        f"report: {paths['report']}  results: {paths['results']}  summary: {paths['summary']}"
    )


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
    """List the model recipes for --model and [[model.candidates]] recipe = ..."""
    from exemplar.models import MODEL_RECIPES

    table = Table(title="model recipes")
    for col in ("name", "family", "inputs", "description"):
        table.add_column(col, no_wrap=col == "name")
    for recipe in MODEL_RECIPES.values():
        inputs = "texts" if recipe.reads_text else "feature rows"
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


def main() -> None:
    """Entry point for ``python -m exemplar``."""
    app()


# Project and server commands register themselves on `app`.
from exemplar.cli import project_commands, server_commands  # noqa: F401
