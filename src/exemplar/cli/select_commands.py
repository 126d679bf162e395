"""``exemplar select-file``: one selection from embeddings (and probabilities) on disk.

A thin view over :func:`exemplar.data.embeddings.open_embeddings` and the strategies, for
pools too large for a project's import (docs/scale.md, "Ten million items"): the files are
memory-mapped, every strategy reads them chunk by chunk, and the picked row numbers are
printed or written one per line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from exemplar.cli.common import app, console, one_line_errors, parse_params
from exemplar.errors import DatasetError

__all__ = ["select_file"]


def _read_rows(path: Path) -> np.ndarray:
    """Row numbers from a ``.npy`` of integers or a text file with one per line."""
    if not path.is_file():
        raise DatasetError(f"labeled-rows file not found: {path}")
    if path.suffix.lower() == ".npy":
        rows = np.load(path, allow_pickle=False)
    else:
        try:
            rows = np.loadtxt(path, dtype=np.int64, ndmin=1)
        except ValueError as exc:
            raise DatasetError(
                f"{path}: expected one integer row number per line ({exc})"
            ) from None
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise DatasetError(f"{path}: expected a 1-D list of integer row numbers")
    return rows.astype(np.int64)


@app.command("select-file")
@one_line_errors
def select_file(
    embeddings: Annotated[
        Path,
        typer.Argument(help="Embeddings: a float32 .npy, an Arrow IPC file or a Parquet file."),
    ],
    strategy: Annotated[
        str, typer.Option(help="Strategy name (see `exemplar strategies`); 'default' works.")
    ] = "default",
    batch_size: Annotated[int, typer.Option(help="How many rows to pick.")] = 100,
    proba: Annotated[
        Path | None,
        typer.Option(help="Class probabilities (n, c) as a .npy, for model-based strategies."),
    ] = None,
    labeled: Annotated[
        Path | None,
        typer.Option(help="Rows already labeled: a .npy of ints or a text file, one per line."),
    ] = None,
    column: Annotated[
        str | None, typer.Option(help="Arrow/Parquet: the list column holding the embeddings.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="A strategy parameter as KEY=VALUE (repeatable), e.g. max_candidates=200000 "
            "or approximate=true; VALUE is read as JSON when it parses."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the selection.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Write the picked row numbers here, one per line.")
    ] = None,
) -> None:
    """Pick a batch from a pool whose embeddings live in a file (memory-mapped, any size)."""
    from exemplar.data.embeddings import open_embeddings
    from exemplar.predictions import Predictions
    from exemplar.strategies import get_strategy

    emb = open_embeddings(embeddings, column=column)
    probs = None
    if proba is not None:
        if not proba.is_file():
            raise DatasetError(f"probabilities file not found: {proba}")
        try:
            probs = np.load(proba, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{proba}: not a readable .npy file ({exc})") from None
        if probs.ndim != 2 or probs.shape[0] != emb.shape[0]:
            raise DatasetError(
                f"{proba}: probabilities must have shape ({emb.shape[0]}, n_classes) like the "
                f"embeddings, got {probs.shape}"
            )
    lab = _read_rows(labeled) if labeled is not None else np.empty(0, dtype=np.int64)
    chosen = get_strategy(strategy, **parse_params(param or []))
    preds = Predictions(proba=probs, embeddings=emb)
    t0 = time.perf_counter()
    picks = chosen.query(preds, labeled=lab, batch_size=batch_size, random_state=seed)
    seconds = time.perf_counter() - t0
    text = "\n".join(str(int(i)) for i in picks)
    if out is not None:
        out.write_text(text + "\n")
        console.print(
            f"{chosen.name}: picked {picks.size} of {emb.shape[0]:,} rows in {seconds:.1f} s "
            f"→ {out}",
            highlight=False,
        )
    else:
        typer.echo(text)
