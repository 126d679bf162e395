"""Scale commands: ``exemplar ray check``, the way to try a Ray cluster before a project uses it.

A project scores its pool on Ray when ``exemplar.toml`` says ``[scoring] engine = "ray"``
(docs/scale.md, "Scoring on Ray"); ``exemplar run`` then does the rest. ``exemplar ray
check`` connects to the cluster the project (or ``--address``) names, lists its nodes, and
scores a small SYNTHETIC pool both locally and on Ray, to show that the workers load
exemplar and give the same arrays.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from exemplar.cli.common import app, console, one_line_errors
from exemplar.errors import ConfigError

__all__ = ["ray_app"]

ray_app = typer.Typer(
    name="ray",
    help='Score pools on a Ray cluster (\\[scoring] engine = "ray"; docs/scale.md).\n\n'
    "\b\n"
    "exemplar ray check                         start a local Ray, score a test pool on it\n"
    "exemplar ray check -p DIR                  the cluster the project's \\[scoring] names\n"
    "exemplar ray check --address auto          the cluster of `ray start --head`\n"
    "exemplar ray check --address ray://host:10001 --shard-dir /mnt/shared/tmp\n"
    "                                           a remote cluster (shards on a shared folder)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(ray_app)


def _scoring_of(project: Path | None) -> dict[str, Any]:
    """The ``[scoring]`` section of the project's ``exemplar.toml`` (defaults without one)."""
    from exemplar.loop.config import CONFIG_NAME, ScoringSection, load_config

    if project is None:
        return ScoringSection().model_dump()
    path = project / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"{project} is not a project folder (no {CONFIG_NAME})")
    return load_config(path).scoring.model_dump()


@ray_app.command("check")
@one_line_errors
def check(
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Read ray_address, num_cpus and shard_format here."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help='"" starts Ray here, "auto" joins this machine\'s cluster, '
            '"ray://host:10001" a remote one (default: the project\'s, else "").'
        ),
    ] = None,
    num_cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs of a Ray started here (default: all).")
    ] = None,
    rows: Annotated[int, typer.Option(min=1000, help="Rows of the synthetic test pool.")] = 20_000,
    shard_format: Annotated[
        str | None, typer.Option("--format", help="npy or parquet (default: the project's).")
    ] = None,
    shard_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the test pool and its shards; on a multi-node cluster, one every "
            "node mounts at the same path (default: a temporary folder here)."
        ),
    ] = None,
) -> None:
    """Connect to Ray, list its nodes, and score a SYNTHETIC pool there and locally."""
    from exemplar.engines import last_run, ray_session, score_pool_ray
    from exemplar.loop.scoring import score_pool
    from exemplar.models import make_model
    from exemplar.strategies import get_strategy

    scoring = _scoring_of(project)
    address = scoring["ray_address"] if address is None else address
    num_cpus = scoring["num_cpus"] if num_cpus is None and not address else num_cpus
    fmt = scoring["shard_format"] if shard_format is None else shard_format
    if shard_dir is not None:
        shard_dir.mkdir(parents=True, exist_ok=True)
    with ray_session(address, num_cpus) as ray:
        nodes = Table(title=f"Ray {ray.__version__} at {address or 'a new local Ray'}")
        for column in ("node", "alive", "CPUs", "memory GiB"):
            nodes.add_column(column, justify="right" if column != "node" else "left")
        for node in ray.nodes():
            res = node.get("Resources", {})
            nodes.add_row(
                str(node.get("NodeManagerAddress", "?")),
                "yes" if node.get("Alive") else "no",
                f"{res.get('CPU', 0):g}",
                f"{res.get('memory', 0) / 2**30:.1f}",
            )
        console.print(nodes)
        with tempfile.TemporaryDirectory(prefix="exemplar-ray-check-", dir=shard_dir) as tmp:
            rng = np.random.default_rng(0)
            X = rng.normal(size=(rows, 16)).astype(np.float32)  # SYNTHETIC
            y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int)
            np.save(Path(tmp) / "X.npy", X)
            pool = np.load(Path(tmp) / "X.npy", mmap_mode="r")
            model = make_model("logreg", 0).fit(X[:500], y[:500])
            strategy = get_strategy("margin")
            per_task = max(1_000, rows // 8)
            t0 = time.perf_counter()
            local = score_pool(model, pool, strategy, chunk_size=per_task)
            t1 = time.perf_counter()
            remote = score_pool_ray(
                model,
                pool,
                strategy,
                rows_per_task=per_task,
                chunk_size=per_task,
                shard_dir=Path(tmp) / "shards",
                shard_format=fmt,  # type: ignore[arg-type]
                address=address,
                num_cpus=num_cpus,
                x_rows=scoring["x_rows"],
            )
            t2 = time.perf_counter()
            run = last_run()
            assert run is not None
            assert local.predictions.proba is not None and remote.predictions.proba is not None
            equal = bool(np.array_equal(local.predictions.proba, remote.predictions.proba))
    result = Table(title=f"{rows:,} SYNTHETIC rows × 16, margin, {fmt} shards")
    for column in ("path", "tasks", "rows from", "seconds", "same arrays"):
        result.add_column(column)
    result.add_row("local", "-", "-", f"{t1 - t0:.2f}", "-")
    result.add_row("ray", str(run.tasks), run.x_rows, f"{t2 - t1:.2f}", "yes" if equal else "NO")
    console.print(result)
    if not equal:
        raise ConfigError("Ray scoring gave other probabilities than local scoring")
    console.print(
        'ok: set [scoring] engine = "ray" in exemplar.toml and run `exemplar run`', markup=False
    )
