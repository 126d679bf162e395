"""Cost- and noise-aware commands: ``exemplar costs`` and ``exemplar simulate --scenario annotators``.

``exemplar costs`` shows the labeling times a project recorded and the cost model that
cost-aware selection learns from them (docs/costs.md). ``simulate_annotators`` runs the
annotators scenario of ``exemplar simulate``: several simulated annotators of different
accuracy, and ActiveLab's relabel-or-new decision against fixed policies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from exemplar.cli.common import app, console, one_line_errors
from exemplar.cli.simulate_common import (
    diff_cell,
    load_simulation_dataset,
    print_outputs,
    progress_bar,
    results_table,
)
from exemplar.errors import ConfigError

__all__ = ["costs", "relabel", "simulate_annotators"]


@app.command()
@one_line_errors
def costs(
    project: Annotated[
        Path, typer.Option("--project", "-p", help="The project folder (default: the current one).")
    ] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Labeling time per label and the learned cost model (cost-aware selection).

    Every label written in the labeling app records the seconds spent on it; with
    `[selection] cost_aware = true` the loop ranks items by utility per expected second
    once `cost_min_labels` labels carry a time (Settles et al. 2008).
    """
    from exemplar.project import Project
    from exemplar.project.costs import label_costs

    with Project.open(project) as proj:
        report = label_costs(proj)
    if as_json:
        console.print_json(json.dumps(report))
        return
    _print_costs(report)


def _print_costs(report: dict[str, Any]) -> None:
    n = report["n_timed"]
    state = "on" if report["cost_aware"] else "off"
    if n == 0:
        console.print(
            f"No label carries a time yet (cost-aware selection: {state}, it starts after "
            f"{report['cost_min_labels']} timed labels)."
        )
        return
    console.print(
        f"{n} timed labels: median {report['median_seconds']:.1f} s, mean "
        f"{report['mean_seconds']:.1f} s, total {report['total_seconds'] / 60:.1f} min "
        f"(cost-aware selection: {state}, from {report['cost_min_labels']} timed labels)."
    )
    for title, key in (("class", "per_class"), ("annotator", "per_annotator")):
        table = Table(title=f"seconds per {title}")
        for col in (title, "labels", "median s"):
            table.add_column(col, justify="left" if col == title else "right")
        for name, g in report[key].items():
            table.add_row(name, str(g["labels"]), f"{g['median_seconds']:.1f}")
        console.print(table)
    model = report["model"]
    inputs = ", ".join(model["inputs"]) or "nothing"
    console.print(f"cost model: {model['kind']} (inputs: {inputs}); {model['reason']}.")
    last = report["last_cycle"]
    if last is not None:
        applied = "applied" if last.get("applied") else f"not applied ({last.get('reason')})"
        console.print(f"cycle {last['cycle']}: cost-aware selection {applied}.")


@app.command()
@one_line_errors
def relabel(
    project: Annotated[
        Path, typer.Option("--project", "-p", help="The project folder (default: the current one).")
    ] = Path("."),
    batch: Annotated[
        int | None,
        typer.Option("--batch", min=1, help="Labels to plan for (default: the batch size)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Relabel or label new? ActiveLab on the project's votes (Goh & Mueller 2023).

    Estimates each annotator's accuracy, the weighted consensus of every labeled item, and
    which labeled items most deserve another annotator's label in a batch (the rest of
    the batch goes to new items). Reads only; nothing is queued.
    """
    from exemplar.project import Project
    from exemplar.project.relabel import relabel_plan

    with Project.open(project) as proj:
        plan = relabel_plan(proj, batch)
    if as_json:
        console.print_json(json.dumps(plan))
        return
    table = Table(
        title=f"annotators (model {plan['model_version']}, weight {plan['model_weight']:.2f})"
    )
    for col in ("annotator", "labels", "est. accuracy", "weight"):
        table.add_column(col, justify="left" if col == "annotator" else "right")
    for name, a in plan["annotators"].items():
        table.add_row(name, str(a["labels"]), f"{a['accuracy']:.2f}", f"{a['weight']:.2f}")
    console.print(table)
    console.print(
        f"{plan['n_labeled']} labeled items, {plan['n_multi']} with several annotators; the "
        f"weighted consensus overrules the majority vote on {plan['overruled']}."
    )
    console.print(
        f"A batch of {plan['batch_size']}: relabel {len(plan['relabel'])}, label "
        f"{plan['n_new']} new."
    )
    if plan["relabel"]:
        items = Table(title="relabel first")
        for col in ("item", "votes", "consensus", "score"):
            items.add_column(col, justify="left" if col in ("votes", "consensus") else "right")
        for r in plan["relabel"]:
            votes = ", ".join(f"{a}: {c}" for a, c in r["votes"].items())
            items.add_row(str(r["item_id"]), votes, r["consensus"], f"{r['score']:.3f}")
        console.print(items)


def simulate_annotators(
    dataset: str,
    *,
    accuracies: str,
    model: str | None,
    model_params: dict[str, object],
    seeds: int,
    initial: int,
    batch_size: int,
    cycles: int,
    test_size: float,
    label_column: str | None,
    jobs: int,
    out: Path,
) -> None:
    """``exemplar simulate --scenario annotators``: ActiveLab vs new-only, fixed-k, random."""
    from exemplar.simulate.annotators import (
        AnnotatorSimulationConfig,
        run_annotator_simulation,
        summarize_annotators,
        validate_annotator_config,
        write_annotator_outputs,
    )

    try:
        accs = tuple(float(a) for a in accuracies.split(",") if a.strip())
    except ValueError:
        raise ConfigError(
            f"--annotator-accuracy must be comma-separated numbers, got {accuracies!r}"
        ) from None
    data = load_simulation_dataset(dataset, label_column)
    config = AnnotatorSimulationConfig(
        dataset=data.name,
        accuracies=accs,
        model="logreg" if model is None else model,
        model_params=dict(model_params),
        seeds=seeds,
        initial=initial,
        batch_size=batch_size,
        cycles=cycles,
        test_size=test_size,
        jobs=jobs,
    )
    validate_annotator_config(config, data)
    arms = config.resolved_arms()
    total = len(arms) * seeds * (cycles + 1)
    with progress_bar("annotators", data.name, total) as on_progress:
        result = run_annotator_simulation(config, data, on_progress=on_progress)
    summary = summarize_annotators(result, config)
    paths = write_annotator_outputs(result, summary, out)
    table = results_table(
        f"{data.name}: after {cycles} cycles, mean over {seeds} seeds",
        ("arm", "AULC", "vs random", "labels spent", "items", "relabels", "label acc.", "accuracy"),
    )
    for arm in arms:
        s = summary["strategies"][arm]
        f = summary["annotators"]["final"][arm]
        table.add_row(
            arm,
            f"{s['aulc_mean']:.3f}",
            diff_cell(s.get("diff_vs_random") if arm != "random" else None),
            f"{f['labels_spent']:.0f}",
            f"{f['items']:.0f}",
            f"{f['relabels']:.0f}",
            f"{f['label_accuracy']:.3f}",
            f"{f['accuracy']:.3f}",
        )
    console.print(table)
    print_outputs(summary["annotators"]["verdict"], paths)
