"""Project commands: init, import, export, run, status, label, import-labels, refill."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from exemplar.cli.common import app, console, one_line_errors
from exemplar.errors import UsageError

ProjectDir = Annotated[Path, typer.Option("--project", "-p", help="The project folder.")]


@app.command()
@one_line_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    classes: Annotated[str, typer.Option(help="Comma-separated class names.")],
    task: Annotated[
        str,
        typer.Option(
            help="classification (a class per item), detection (boxes) or segmentation (outlines)."
        ),
    ] = "classification",
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
    budget_unit: Annotated[
        str, typer.Option(help="What --budget counts: items, or objects (detection).")
    ] = "items",
    image_side: Annotated[
        int, typer.Option(help="Detection: images are scaled to fit this many pixels.")
    ] = 256,
    tile_size: Annotated[
        int | None,
        typer.Option(help="Detection: cut larger images into tiles of this many pixels."),
    ] = None,
) -> None:
    """Create a project: exemplar.toml plus an empty database."""
    from exemplar.project import Project

    names = [c.strip() for c in classes.split(",") if c.strip()]
    data: dict[str, object] = {"image_side": image_side} if task != "classification" else {}
    if tile_size is not None:
        data["tile_size"] = tile_size
    with Project.init(
        directory,
        names,
        name=name,
        task=task,
        database_url=database_url,
        oracle={"kind": oracle},
        selection={"strategy": strategy, "batch_size": batch_size},
        stopping={
            "criteria": [{"name": "label_budget", "budget": budget}],
            "budget_unit": budget_unit,
        },
        **({"data": data} if data else {}),
    ) as project:
        console.print(
            f"created project [bold]{project.config.project.name}[/] in {directory} "
            f"({len(names)} classes, {project.db.dialect}); next: `exemplar import`"
        )


@app.command("import")
@one_line_errors
def import_(
    source: Annotated[
        Path,
        typer.Argument(
            help="Image folder, .csv, .parquet, .npy or .npz, a whole-slide image or a "
            "video; for detection: a COCO or Label Studio JSON, a YOLO or VOC folder, or a "
            "folder of images."
        ),
    ],
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
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="Detection: coco, yolo, voc or labelstudio (detected if omitted)."
        ),
    ] = None,
    magnification: Annotated[
        float | None,
        typer.Option(
            help="Slides: cut regions at this objective power (default: the data section of exemplar.toml)."
        ),
    ] = None,
    region_size: Annotated[
        int | None,
        typer.Option(
            help="Slides: region side in pixels (default: the data section of exemplar.toml)."
        ),
    ] = None,
    frame_step: Annotated[
        int | None,
        typer.Option(
            help="Videos: import every n-th frame (default: the data section of exemplar.toml)."
        ),
    ] = None,
    objects: Annotated[
        Path | None,
        typer.Option(
            help="Slides: the slide's objects as GeoJSON (QuPath export; default: "
            "<slide>.geojson beside it, when there is one)."
        ),
    ] = None,
) -> None:
    """Import items; re-importing the same content adds nothing.

    A whole-slide image (.svs, .ndpi, .mrxs, pyramidal .tif) is cut into regions, one item
    each; a video (.mp4, .avi, .mov, .mkv, .webm) into frames.
    """
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
            **({"annotation_format": fmt} if fmt is not None else {}),
            magnification=magnification,
            region_size=region_size,
            frame_step=frame_step,
            **({"objects": objects} if objects is not None else {}),
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
    destination: Annotated[
        Path, typer.Argument(help="Output .csv or .json file, or a folder with --format.")
    ],
    project: ProjectDir = Path("."),
    history: Annotated[
        bool, typer.Option(help="Every label row, not just current labels.")
    ] = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Detection: write the labeled objects as coco, yolo, voc or labelstudio; "
            "slides: geojson (one file per slide, for QuPath).",
        ),
    ] = None,
    proposals: Annotated[
        bool, typer.Option(help="With --format: the model's open proposals too.")
    ] = False,
    copy_images: Annotated[
        bool, typer.Option(help="With --format: copy the images into the folder.")
    ] = False,
) -> None:
    """Export labels with provenance (cycle, strategy, score, annotator, time)."""
    from exemplar.project import Project

    with Project.open(project) as proj:
        if fmt is not None:
            exported = proj.export_objects(
                destination, fmt, proposals=proposals, copy_images=copy_images
            )
            console.print(
                f"wrote {exported.objects} object(s) on {exported.images} "
                f"{'slide' if fmt == 'geojson' else 'image'}(s) as {fmt} "
                f"to {exported.path}"
            )
            return
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
    curation = info.get("curation", {})
    waiting = curation.get("operations_to_review") or {}
    if curation.get("proposals_to_verify") or waiting:
        ops = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in waiting.items())
        console.print(
            f"curation: {curation.get('proposals_to_verify', 0)} proposal(s) to verify "
            f"(`exemplar verify`)"
            + (f"; operations to review: {ops} (`exemplar curate list`)" if ops else "")
        )
    unit = info["labels"].get("per_class_counts", "items")
    per_class = Table(title="objects per class" if unit == "objects" else "labels per class")
    per_class.add_column("class", no_wrap=True)
    per_class.add_column("objects" if unit == "objects" else "labels", justify="right")
    for name, n in info["labels"]["per_class"].items():
        per_class.add_row(name, str(n) if n else "[red]0[/]")
    console.print(per_class)
    hist = Table(title="history")
    metric = info.get("metric", "accuracy")
    short = "mAP50" if metric == "map50" else "acc"
    for col in ("cycle", "state", "model", "labels", f"val {short}", f"batch {short}", "decision"):
        hist.add_column(
            col, justify="right" if col not in ("state", "model", "decision") else "left"
        )
    arms = any(h.get("arm") for h in info["history"])  # strategy albl: the arm drawn
    if arms:
        hist.add_column("arm", justify="left")
    for h in info["history"]:
        val, bat = h["validation"].get(metric), h["batch"].get(metric)
        hist.add_row(
            str(h["cycle"]),
            h["state"],
            h["model"] or "—",
            str(h["n_labels"] or "—"),
            "—" if val is None else f"{val:.3f}",
            "—" if bat is None else f"{bat:.3f}",
            h["decision"] or "—",
            *([h.get("arm") or "—"] if arms else []),
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
        if proj.config.project.objects:
            raise UsageError(
                f"this project labels objects ({proj.config.project.task}); the terminal "
                "labels one class per item. Label boxes through the Objects API "
                "(`exemplar serve`, docs/project.md#objects-api)"
            )
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


def _clip(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


@app.command()
@one_line_errors
def review(
    project: ProjectDir = Path("."),
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows to show at most.")] = 20,
    include_reviewed: Annotated[
        bool, typer.Option("--include-reviewed", help="Also list labels already reviewed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the labels most worth a second look, riskiest first (as the /review page does).

    Disputed items (their annotators disagree) come first; then labels ranked by annotator
    disagreement, conflict with the newest model and the model's low confidence in them.
    For detection and segmentation: labeled images ranked by the newest model's confident
    boxes on no object, objects it misses or doubts, and class disagreements.
    """
    from exemplar.project import Project
    from exemplar.project.review import review_rows

    with Project.open(project) as proj:
        rows = review_rows(proj, limit=limit, include_reviewed=include_reviewed)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print("nothing to review: no labels yet")
        return
    table = Table(title=f"labels to review, riskiest first ({len(rows)} shown)")
    for col in ("item", "content", "label", "annotator", "model proposal", "risk", "reasons"):
        table.add_column(col, justify="right" if col in ("item", "risk") else "left")
    for row in rows:
        proposal = row["proposal"]
        if row["votes"]:
            label = "disputed: " + ", ".join(
                f"{v['label']} ({v['annotator']})" for v in row["votes"]
            )
        elif "objects" in row:  # an image of objects
            label = f"{row['objects']['verified']} object(s)"
        else:
            label = str(row["label"])
        if proposal is None:
            model = "—"
        elif "objects" in row:
            model = f"{proposal['boxes']} confident box(es) ({proposal['model_version']})"
        else:
            model = f"{proposal['label']} ({proposal['confidence']:.2f})"
        table.add_row(
            str(row["item_id"]),
            Text(_clip(row["text"], 40) if row.get("text") is not None else str(row["kind"])),
            Text(label),
            Text(row["annotator"] or "—"),
            Text(model),
            f"{row['risk']:.2f}",
            Text(", ".join(row["reasons"]) or "—"),
        )
    console.print(table)


@app.command()
@one_line_errors
def curve(
    project: ProjectDir = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Accuracy on the gold set (split test) per cycle: active learning against random.

    Each cycle's model is evaluated on the gold set; with a random control arm
    (strategy random-control), the same model recipe is refitted on the labels the control
    arm had by then and evaluated on the same items. Detection and segmentation projects
    are measured by mAP@0.5 on the gold images' objects.
    """
    from exemplar.project import Project
    from exemplar.project.dashboard import learning_curve_vs_random

    with Project.open(project) as proj:
        result = learning_curve_vs_random(proj)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    random_of = {r["cycle"]: r for r in result["random"]}
    metric = result.get("metric", "accuracy")
    if result["active"] and metric == "accuracy":
        table = Table(title=f"accuracy on the gold set ({result['gold_size']} items)")
        for col in ("cycle", "labels", "active learning", "random: labels", "random"):
            table.add_column(col, justify="right")
        for point in result["active"]:
            control = random_of.get(point["cycle"])
            table.add_row(
                str(point["cycle"]),
                str(point["n_labels"]),
                f"{point['accuracy']:.3f}",
                "—" if control is None else str(control["n_labels"]),
                "—" if control is None else f"{control['accuracy']:.3f}",
            )
    elif result["active"]:
        table = Table(
            title=f"mAP@0.5 on the gold set ({result['gold_size']} images, "
            f"{result['gold_objects']} objects)"
        )
        for col in ("cycle", "images", "objects", "active learning", "random: images", "random"):
            table.add_column(col, justify="right")
        for point in result["active"]:
            control = random_of.get(point["cycle"])
            table.add_row(
                str(point["cycle"]),
                str(point["n_labels"]),
                "—" if point["n_objects"] is None else str(point["n_objects"]),
                f"{point[metric]:.3f}",
                "—" if control is None else str(control["n_labels"]),
                "—" if control is None else f"{control[metric]:.3f}",
            )
    if result["active"]:
        console.print(table)
    if result["note"]:
        console.print(Text(result["note"]), highlight=False)


# Curation commands (propose, verify, curate, classes) register themselves on `app`.
from exemplar.cli import curation_commands  # noqa: F401
