"""Project commands: init, import, export, run, status, label, import-labels, refill."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from exemplar.cli.main import app, console, one_line_errors

ProjectDir = Annotated[Path, typer.Option("--project", "-p", help="The project folder.")]


@app.command()
@one_line_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    classes: Annotated[str, typer.Option(help="Comma-separated class names.")],
    task: Annotated[str, typer.Option(help="Task kind.")] = "classification",
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    database_url: Annotated[
        str, typer.Option(help="SQLAlchemy URL (default: SQLite file in the project folder).")
    ] = "",
    oracle: Annotated[str, typer.Option(help="Who labels: human, simulated or file.")] = "human",
    strategy: Annotated[
        str, typer.Option(help="Query strategy (see `exemplar strategies`).")
    ] = "default",
    batch_size: Annotated[int, typer.Option(help="Items selected per cycle.")] = 10,
    budget: Annotated[int, typer.Option(help="Stop after this many labels.")] = 200,
) -> None:
    """Create a project: exemplar.toml plus an empty database."""
    from exemplar.project import Project

    names = [c.strip() for c in classes.split(",") if c.strip()]
    with Project.init(
        directory,
        names,
        name=name,
        task=task,
        database_url=database_url,
        oracle={"kind": oracle},
        selection={"strategy": strategy, "batch_size": batch_size},
        stopping={"criteria": [{"name": "label_budget", "budget": budget}]},
    ) as project:
        console.print(
            f"created project [bold]{project.config.project.name}[/] in {directory} "
            f"({len(names)} classes, {project.db.dialect}); next: `exemplar import`"
        )


@app.command("import")
@one_line_errors
def import_(
    source: Annotated[Path, typer.Argument(help="Image folder, .csv, .parquet, .npy or .npz.")],
    project: ProjectDir = Path("."),
    label_column: Annotated[str | None, typer.Option(help="Label column name.")] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column (text items).")] = None,
    labels_as: Annotated[
        str, typer.Option(help="'labels' (verified labels) or 'ground_truth' (simulated oracle).")
    ] = "labels",
    folder_labels: Annotated[
        bool, typer.Option(help="Take an image folder's class subfolders as labels.")
    ] = True,
    rows_per_transaction: Annotated[
        int, typer.Option(help="Items written per database transaction.")
    ] = 2000,
    batch_size: Annotated[
        int | None, typer.Option(hidden=True, help="Former name of --rows-per-transaction.")
    ] = None,
) -> None:
    """Import items; re-importing the same content adds nothing."""
    from rich.progress import Progress

    from exemplar.project import Project

    with Project.open(project) as proj, Progress(console=console, transient=True) as progress:
        task = progress.add_task("importing", total=None)
        column: str | int | None = label_column
        if label_column is not None and label_column.isdigit() and source.suffix == ".npy":
            column = int(label_column)
        report = proj.import_(
            source,
            label_column=column,
            folder_labels=folder_labels,
            rows_per_transaction=rows_per_transaction if batch_size is None else batch_size,
            text_column=text_column,
            labels_as=labels_as,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for line in report.lines():
        console.print(line, highlight=False, markup=False)
    for note in report.notes:
        console.print(f"  {note}", highlight=False, markup=False)
    for where, why in report.skipped[:20]:
        console.print(Text.assemble(("  skipped ", "yellow"), f"{where}: {why}"), highlight=False)
    if len(report.skipped) > 20:
        console.print(f"  ... and {len(report.skipped) - 20} more")


@app.command()
@one_line_errors
def export(
    destination: Annotated[Path, typer.Argument(help="Output .csv or .json file.")],
    project: ProjectDir = Path("."),
    history: Annotated[
        bool, typer.Option(help="Every label row, not just current labels.")
    ] = False,
) -> None:
    """Export labels with provenance (cycle, strategy, score, annotator, time)."""
    from exemplar.project import Project

    with Project.open(project) as proj:
        n = proj.export(destination, history=history)
    console.print(f"wrote {n} label row(s) to {destination}")


@app.command()
@one_line_errors
def run(
    project: ProjectDir = Path("."),
    cycles: Annotated[int | None, typer.Option(help="Stop after this many cycles.")] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for human/file labels instead of exiting.")
    ] = False,
) -> None:
    """Run the loop; resumes where it stopped (also after a crash)."""
    from exemplar.project import Project

    def show(message: str) -> None:
        if message.startswith("warning:"):
            console.print(f"[yellow]{message}[/]", highlight=False)
        else:
            spinner.update(message)

    with Project.open(project) as proj, console.status("running") as spinner:
        outcome = proj.run(cycles, wait=wait, on_event=show)
    console.print(
        f"[bold]{outcome.status}[/] at cycle {outcome.cycle} ({outcome.state}): {outcome.message}"
    )


@app.command()
@one_line_errors
def status(
    project: ProjectDir = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the cycle, state, queue, labels per class and metric history."""
    from exemplar.project import Project

    with Project.open(project) as proj:
        info = proj.status()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    cyc = info["cycle"]
    console.print(
        f"[bold]{info['project']}[/] · {info['items']['total']} items · "
        f"{info['labels']['verified']} labeled · queue {info['queue']} · database {info['database']}"
    )
    if cyc:
        console.print(f"cycle {cyc['cycle']}: [bold]{cyc['state']}[/] (strategy {cyc['strategy']})")
    if info["stop_reason"]:
        console.print(f"stopped: {info['stop_reason']}")
    per_class = Table(title="labels per class")
    per_class.add_column("class", no_wrap=True)
    per_class.add_column("labels", justify="right")
    for name, n in info["labels"]["per_class"].items():
        per_class.add_row(name, str(n) if n else "[red]0[/]")
    console.print(per_class)
    hist = Table(title="history")
    for col in ("cycle", "state", "model", "labels", "val acc", "batch acc", "decision"):
        hist.add_column(
            col, justify="right" if col not in ("state", "model", "decision") else "left"
        )
    for h in info["history"]:
        val, bat = h["validation"].get("accuracy"), h["batch"].get("accuracy")
        hist.add_row(
            str(h["cycle"]),
            h["state"],
            h["model"] or "—",
            str(h["n_labels"] or "—"),
            "—" if val is None else f"{val:.3f}",
            "—" if bat is None else f"{bat:.3f}",
            h["decision"] or "—",
        )
    console.print(hist)


@app.command()
@one_line_errors
def label(
    project: ProjectDir = Path("."),
    annotator: Annotated[str, typer.Option(help="Your name, recorded with each label.")] = "cli",
) -> None:
    """Label queued items in the terminal: type a class name or number, s to skip, q to quit."""
    from exemplar.project import Project
    from exemplar.store.schema import Item

    with Project.open(project) as proj:
        classes = proj.classes
        done = 0
        while True:
            leased = proj.next_item(annotator)
            if leased is None:
                console.print(f"the queue is empty; labeled {done} item(s)")
                return
            with proj.db.read() as s:
                item = s.get_one(Item, leased.item_id)
            console.print(
                f"\n[bold]item {item.id}[/] ({item.kind}) {item.uri}"
                + (f"\n{item.text}" if item.text else "")
                + f"\n[dim]chosen by {leased.strategy} (score {leased.score})[/]"
            )
            menu = "  ".join(f"{i + 1}={c}" for i, c in enumerate(classes))
            answer = typer.prompt(f"{menu}  s=skip  q=quit").strip()
            if answer == "q":
                console.print(f"labeled {done} item(s)")
                return
            if answer == "s":
                proj.skip_item(leased.entry_id, annotator)
                continue
            chosen = (
                classes[int(answer) - 1]
                if answer.isdigit() and 0 < int(answer) <= len(classes)
                else answer
            )
            proj.submit_label(leased.entry_id, annotator, chosen)
            done += 1


@app.command("import-labels")
@one_line_errors
def import_labels(
    source: Annotated[Path, typer.Argument(help="CSV/JSON with uid|item_id|uri and label.")],
    project: ProjectDir = Path("."),
    annotator: Annotated[str | None, typer.Option(help="Recorded as the labels' author.")] = None,
) -> None:
    """Record labels from a file (for example another tool's export)."""
    from exemplar.project import Project

    with Project.open(project) as proj:
        result = proj.import_labels(source, annotator=annotator)
    console.print(
        f"labeled {result.labeled} item(s), {result.unchanged} unchanged, "
        f"{len(result.unknown_keys)} unknown key(s), {len(result.problems)} problem(s)"
    )
    for problem in result.problems[:20]:
        console.print(Text.assemble(("  skipped ", "yellow"), problem), highlight=False)


@app.command()
@one_line_errors
def refill(
    project: ProjectDir = Path("."),
    size: Annotated[
        int | None, typer.Option(min=1, help="Items to queue at most (default: batch_size).")
    ] = None,
    while_leased: Annotated[
        bool,
        typer.Option(
            "--while-leased", help="Refill when no entry waits, even while some are leased."
        ),
    ] = False,
) -> None:
    """Queue items from the newest model's stored scores (entries named stale:<strategy>).

    What the labeling server does while a model trains; the next batch replaces them.
    """
    from exemplar.loop.engine import LoopEngine
    from exemplar.loop.refill import refill_queue
    from exemplar.project import Project

    with Project.open(project) as proj, LoopEngine(proj).lock():
        result = refill_queue(proj, size=size, while_leased=while_leased)
    console.print(result.reason)
