"""``exemplar simulate --scenario synthesis``: query synthesis against pool-based selection."""

from __future__ import annotations

from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from exemplar.cli.common import console

__all__ = ["simulate_synthesis"]


def simulate_synthesis(
    dataset: str,
    *,
    strategies: str,
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
    """Run the synthesis arm and the pool-based ``strategies`` with paired seeds, print a
    table and the verdict, and write ``results.csv``, ``summary.json`` and ``report.html``.

    Synthesized points are labeled by a random-forest oracle fit on the pool's ground truth
    (see :mod:`exemplar.simulate.synthesis`); the Python API offers the other oracles.
    """
    from exemplar.data import load_dataset
    from exemplar.simulate import SimulationConfig
    from exemplar.simulate.synthesis import (
        SYNTHESIS_ARM,
        SynthesisConfig,
        run_synthesis_simulation,
        summarize_synthesis,
        validate_synthesis_config,
        write_synthesis_outputs,
    )

    names = tuple(s.strip() for s in strategies.split(",") if s.strip())
    column: str | int | None = label_column
    if label_column is not None and label_column.lstrip("-").isdigit():
        column = int(label_column)
    data = load_dataset(dataset, label_column=column)
    config = SynthesisConfig(
        SimulationConfig(
            dataset=data.name,
            model="logreg" if model is None else model,
            model_params=model_params,
            strategies=names,
            seeds=seeds,
            initial=initial,
            batch_size=batch_size,
            cycles=cycles,
            test_size=test_size,
            jobs=jobs,
        )
    )
    validate_synthesis_config(config, data)
    arms = (*config.pool_strategies, SYNTHESIS_ARM)
    with Progress(
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cycles"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task(
            f"{data.name} · {', '.join(arms)}", total=len(arms) * seeds * (cycles + 1)
        )
        sres = run_synthesis_simulation(
            config, data, on_progress=lambda k: progress.advance(bar, k)
        )
    summary = summarize_synthesis(sres)
    paths = write_synthesis_outputs(sres, summary, out)
    syn = summary["synthesis"]
    table = Table(title=f"{data.name}: normalized AULC over {seeds} seeds")
    for col in ("arm", "AULC", "synthesis minus arm [95% CI]", "final acc", "query ms"):
        table.add_column(col, justify="left" if col == "arm" else "right", no_wrap=col == "arm")
    for name, s in summary["strategies"].items():
        d = syn["versus"].get(name)
        diff = "—"
        if d is not None:
            diff = f"{d['mean']:+.3f}" + (
                f" [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d["ci_low"] is not None else ""
            )
        table.add_row(
            name,
            f"{s['aulc_mean']:.3f} ± {s['aulc_std']:.3f}",
            diff,
            f"{s['final_accuracy_mean']:.3f}",
            f"{s['query_seconds_mean'] * 1000:.1f}",
        )
    console.print(table)
    console.print(summary["verdict"], highlight=False)
    console.print(
        f"report: {paths['report']}  results: {paths['results']}  summary: {paths['summary']}"
    )
