"""Stream commands: ``exemplar simulate --scenario stream`` and ``exemplar stream feed|decisions``.

Thin views over :mod:`exemplar.simulate.stream` (managers against random at the same
budget) and :mod:`exemplar.project.stream` (a project's stream: items arrive, each is
asked for or not at once, every decision is logged). docs/streams.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from exemplar.cli.common import app, console, one_line_errors
from exemplar.cli.simulate_common import (
    diff_cell,
    label_column_arg,
    print_outputs,
    progress_bar,
    results_table,
)

__all__ = ["simulate_stream", "stream_app"]

ProjectDir = Annotated[
    Path, typer.Option("--project", "-p", help="The project folder (default: the current one).")
]

stream_app = typer.Typer(
    name="stream",
    help="Stream mode: items arrive one at a time and a budget manager decides at once "
    "whether to ask for each label.\n\n"
    "\b\n"
    "exemplar stream feed data.csv -p DIR     stream a file's rows into the project\n"
    "exemplar stream decisions -p DIR         the decision log (utility, threshold, budget)\n"
    "exemplar simulate --dataset digits --scenario stream   managers vs random, same budget",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stream_app)


def simulate_stream(
    dataset: str,
    *,
    model: str | None,
    model_params: dict[str, object],
    seeds: int,
    initial: int,
    budget: float,
    managers: str,
    test_size: float,
    label_column: str | None,
    jobs: int,
    out: Path,
) -> None:
    """Run the stream scenario of ``exemplar simulate`` and print its table."""
    from exemplar.simulate.stream import (
        StreamSimulationConfig,
        load_stream_dataset,
        parse_managers,
        run_stream_simulation,
        summarize_stream,
        validate_stream_config,
        write_stream_outputs,
    )

    data = load_stream_dataset(dataset, label_column=label_column_arg(label_column))
    names = parse_managers(managers)
    config = StreamSimulationConfig(
        dataset=data.name,
        model="logreg" if model is None else model,
        model_params=dict(model_params),
        managers=names,
        budget=budget,
        seeds=seeds,
        initial=initial,
        test_size=test_size,
        jobs=jobs,
    )
    validate_stream_config(config, data)
    description = f"{data.name} · budget {budget:g}"
    with progress_bar(
        "streaming", description, len(names) * seeds, unit="runs", remaining=False
    ) as on_progress:
        result = run_stream_simulation(config, data, on_progress=on_progress)
    summary = summarize_stream(result)
    paths = write_stream_outputs(result, summary, out)
    table = results_table(
        f"{data.name} stream, budget {budget:g}: {seeds} paired seeds",
        (
            "manager",
            "AULC",
            "gain vs random [95% CI]",
            "final acc",
            "prequential",
            "labels",
            "spent",
        ),
        no_wrap="all",
    )
    for name, m in summary["managers"].items():
        table.add_row(
            name,
            f"{m['aulc_mean']:.3f} ± {m['aulc_std']:.3f}",
            diff_cell(m.get("diff_vs_random") if name != "random" else None),
            f"{m['final_accuracy_mean']:.3f}",
            f"{m['prequential_accuracy_mean']:.3f}",
            f"{m['final_labels_mean']:.1f}",
            f"{m['spent_mean']:.3f}",
        )
    console.print(table)
    print_outputs(summary["verdict"], paths)


@stream_app.command("feed")
@one_line_errors
def feed(
    path: Annotated[Path, typer.Argument(help="A CSV/Parquet/.npy/.npz file or image folder.")],
    project: ProjectDir = Path("."),
    label_column: Annotated[
        str | None, typer.Option(help="Tables: the label column (hidden ground truth).")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option(help="Tables: stream this text column.")
    ] = None,
    labels_as: Annotated[
        str,
        typer.Option(
            help="ground_truth (default): the file's labels are hidden, for a simulated "
            "oracle; labels: they become verified labels as the items arrive."
        ),
    ] = "ground_truth",
    as_json: Annotated[bool, typer.Option("--json", help="Print every decision as JSON.")] = False,
) -> None:
    """Stream a file's items into the project, in order: each is asked for, or not, at once."""
    from exemplar.errors import ConfigError
    from exemplar.project import Project
    from exemplar.project.stream import feed_file, stream_summary

    if labels_as not in ("ground_truth", "labels"):
        raise ConfigError(f"--labels-as must be ground_truth or labels, got {labels_as!r}")
    column = label_column_arg(label_column)
    with Project.open(project) as proj:
        with Progress(
            TextColumn("[bold]streaming[/]"),
            MofNCompleteColumn(),
            TextColumn("items"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=as_json,
        ) as progress:
            bar = progress.add_task("feed", total=None)
            report = feed_file(
                proj,
                path,
                label_column=column,
                text_column=text_column,
                labels_as="labels" if labels_as == "labels" else "ground_truth",
                on_progress=lambda k: progress.advance(bar, k),
            )
        if as_json:
            for d in report.decisions:
                console.print_json(
                    json.dumps(
                        {
                            "seq": d.seq,
                            "item_id": d.item_id,
                            "asked": d.asked,
                            "utility": d.utility,
                            "threshold": d.threshold,
                            "label": d.label,
                        }
                    )
                )
            return
        total = stream_summary(proj)
    console.print(
        f"streamed {len(report.decisions)} items ({report.duplicates} already stored), "
        f"asked for {report.asked}; the stream so far: {total['arrivals']} arrivals, "
        f"{total['asked']} asked ({total['spent']:.1%} of a {total['budget']:.1%} budget, "
        f"manager {total['manager']})"
    )
    for where, why in report.skipped[:10]:
        console.print(f"skipped {where}: {why}", highlight=False)


@stream_app.command("decisions")
@one_line_errors
def decisions(
    project: ProjectDir = Path("."),
    after: Annotated[int, typer.Option(help="Only decisions with seq above this.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    asked: Annotated[
        bool | None, typer.Option("--asked/--passed", help="Only asked (or passed) items.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The stream's decision log: utility, threshold, decision and budget state per item."""
    from exemplar.project import Project
    from exemplar.project.stream import stream_decisions

    with Project.open(project) as proj:
        rows = stream_decisions(proj, after=after, limit=limit, asked=asked)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title="stream decisions")
    for col in ("seq", "item", "utility", "threshold", "asked", "spent", "model"):
        table.add_column(col, justify="right")
    for r in rows:
        threshold = "coin" if r["threshold"] is None else f"{r['threshold']:.3f}"
        table.add_row(
            str(r["seq"]),
            str(r["item_id"]),
            f"{r['utility']:.3f}",
            threshold,
            "yes" if r["asked"] else "no",
            f"{r['budget_state'].get('spent', 0.0):.3f}",
            r["model_version"] or "—",
        )
    console.print(table)
