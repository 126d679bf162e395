"""What every ``exemplar simulate`` scenario's command shares: its dataset's label column,
its progress bar, its table cells and its closing lines.

The scenarios (pool, curation, objects, stream, synthesis, annotators) differ in their
configs and tables; these helpers keep the parts they print alike in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from exemplar.cli.common import console

if TYPE_CHECKING:
    from exemplar.data import Dataset

__all__ = [
    "diff_cell",
    "label_column_arg",
    "load_simulation_dataset",
    "print_aulc_table",
    "print_outputs",
    "progress_bar",
    "results_table",
]


def label_column_arg(label_column: str | None) -> str | int | None:
    """``--label-column``: a column name, or a column position when it is an integer."""
    if label_column is not None and label_column.lstrip("-").isdigit():
        return int(label_column)
    return label_column


def load_simulation_dataset(dataset: str, label_column: str | None) -> Dataset:
    """A built-in dataset or a file, with ``--label-column`` parsed (:func:`label_column_arg`)."""
    from exemplar.data import load_dataset

    return load_dataset(dataset, label_column=label_column_arg(label_column))


@contextmanager
def progress_bar(
    verb: str, description: str, total: int, *, unit: str = "cycles", remaining: bool = True
) -> Iterator[Callable[[int], None]]:
    """A progress bar ``<verb> <description>  k/total <unit>``; yields ``on_progress(k)``."""
    columns: list[ProgressColumn] = [
        TextColumn(f"[bold]{verb}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
    ]
    if remaining:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(description, total=total)
        yield lambda k: progress.advance(bar, k)


def results_table(
    title: str, columns: Sequence[str], *, no_wrap: Literal["first", "all", "none"] = "none"
) -> Table:
    """A table whose first column (the arm) is left-aligned and the others right-aligned."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(
            col,
            justify="left" if i == 0 else "right",
            no_wrap=no_wrap == "all" or (no_wrap == "first" and i == 0),
        )
    return table


def diff_cell(d: Mapping[str, Any] | None) -> str:
    """A paired difference as ``+0.012 [-0.003, +0.027]`` (its 95% CI when known), or ``—``
    (:func:`exemplar.simulate.summary.diff_text`, imported when a table is printed)."""
    from exemplar.simulate.summary import diff_text

    return diff_text(d)


def print_aulc_table(
    title: str,
    first: str,
    diff: str,
    strategies: Mapping[str, Mapping[str, Any]],
    diffs: Mapping[str, Mapping[str, Any] | None],
) -> None:
    """The arms' normalized AULC (mean ± std), a paired difference, final accuracy and
    query time, one row per arm of a summary's ``strategies``."""
    table = results_table(title, (first, "AULC", diff, "final acc", "query ms"), no_wrap="first")
    for name, s in strategies.items():
        table.add_row(
            name,
            f"{s['aulc_mean']:.3f} ± {s['aulc_std']:.3f}",
            diff_cell(diffs.get(name)),
            f"{s['final_accuracy_mean']:.3f}",
            f"{s['query_seconds_mean'] * 1000:.1f}",
        )
    console.print(table)


def print_outputs(verdict: str, paths: Mapping[str, Path]) -> None:
    """A scenario's verdict and where its report, results and summary were written."""
    console.print(verdict, highlight=False)
    console.print(
        f"report: {paths['report']}  results: {paths['results']}  summary: {paths['summary']}"
    )
