"""Score a pool on a Ray cluster with Ray Data; the outputs come back as shards.

:func:`score_pool_ray` is the distributed twin of :func:`exemplar.loop.score_pool`: the
same model, strategy and rows give arrays equal bit for bit (``np.array_equal``) to the
local ones. How:

- The pool is cut into **tasks** of whole scoring chunks (``rows_per_task`` rounded up to
  a multiple of ``chunk_size``), and inside a task the model predicts the very chunks the
  local scorer predicts. A prediction is then a function of the same rows in the same
  call, whatever machine runs it (MC-dropout masks are seeded per ``predict`` call).
- The model and the strategy are shipped **once** (``ray.put`` of the objects). The
  ranges are a Ray Data dataset mapped by a function (one CPU per task); a worker process
  deserializes the model once per run and keeps it for the run's next tasks. Tasks, not
  an actor pool, because Ray keeps its worker processes (and their imports) between calls,
  so only a session's first scoring pays for starting them (bench/ray_overhead.py: 13 s
  for the first call, 1.2 s for the next ones, 10^6 × 64 rows on 2 busy cores).
- The rows: when ``X`` is a memory map of a file (a project's ``features.f32``, an
  ``np.load(..., mmap_mode="r")`` array) and the workers can read that file (``x_rows``
  ``"file"``, or ``"auto"`` on a one-node cluster), each worker maps the file itself and
  reads only its task's rows; otherwise each task's rows are put into the object store,
  in waves of at most ``2 × cpus`` ranges (one Ray Data run each), so only row ranges go
  to a worker and the object store never holds the whole ``X``.
- Each task writes its outputs as shards (:mod:`exemplar.engines.shards`):
  ``<shard_dir>/<kind>-<start:012d>.npy|.parquet`` for ``proba``, ``embeddings``,
  ``samples`` (a strategy without a row-wise utility), ``utility``, and a task's
  candidate list (``candidates``, ``candidate-utility``, ``candidate-samples``) when the
  strategy keeps one (BatchBALD's ``candidate_pool``). The driver reads them back:
  ``proba`` and ``utility`` in memory (as the local scorer keeps them), ``embeddings`` and
  whole ``samples`` into one new ``.npy`` each (``out_paths``, default
  ``<shard_dir>/<kind>.npy``), memory-mapped, so they stay on disk; their shards are
  deleted as they are copied in, and a new file never rewrites an array mapped earlier.
  The per-task candidate lists are merged into the pool's: a top list merged chunk by
  chunk equals the top of the whole pool, ties going to the lower row
  (:func:`~exemplar.strategies.top_k`), so the merge order does not matter.

Ray is imported only when this runs (``pip install 'exemplar[ray]'``). Detectors, and
models that read files rather than feature rows, are scored locally.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import mmap
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from exemplar.engines.shards import (
    ShardFormat,
    assemble,
    clear_shards,
    new_npy,
    read_shard,
    shard_path,
    write_shard,
)
from exemplar.errors import ConfigError, ModelError, StoreError
from exemplar.predictions import Predictions, check_outputs
from exemplar.strategies.base import ReducedSamples, ScoredPool, Strategy, TopRows, top_k

if TYPE_CHECKING:
    from exemplar.models.base import ModelAdapter

__all__ = ["SHARD_KINDS", "RayRun", "XRows", "last_run", "ray_session", "score_pool_ray"]

#: Every kind of shard a scoring run writes.
SHARD_KINDS = (
    "proba",
    "embeddings",
    "samples",
    "utility",
    "candidates",
    "candidate-utility",
    "candidate-samples",
)
XRows = Literal["auto", "file", "ship"]
#: Outputs assembled into one memory-mapped ``.npy`` file each (``out_paths``).
_ON_DISK = ("embeddings", "samples")
_INSTALL = "Ray scoring needs the ray extra: pip install 'exemplar[ray]'"
_SAME_ENV = (
    "Every node needs exemplar and the model's libraries installed (the same versions as here)"
)


@dataclass
class RayRun:
    """What the last :func:`score_pool_ray` call in this process did (:func:`last_run`).

    Attributes
    ----------
    tasks : int
        Row ranges scored (one Ray Data row each).
    cpus : int
        CPUs of the cluster (at most this many tasks run at once).
    x_rows : str
        ``"file"`` (workers read X's file) or ``"ship"`` (rows put into the object store).
    waves : int
        Ray Data runs the ranges were scored in. Shipped rows go in waves of at most
        ``2 × cpus`` ranges, so the object store holds that many ranges at once, never
        the whole ``X``; read from the file, all ranges run in one wave.
    seconds : dict
        ``connect``, ``score`` (Ray Data execution) and ``assemble`` wall times.
    """

    tasks: int = 0
    cpus: int = 0
    x_rows: str = ""
    waves: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


_LAST_RUN: RayRun | None = None


def last_run() -> RayRun | None:
    """What the last :func:`score_pool_ray` call in this process did (tasks, timings)."""
    return _LAST_RUN


@contextmanager
def ray_session(
    address: str = "", num_cpus: int | None = None, *, keep: bool = False
) -> Iterator[Any]:
    """Connect to Ray (or start it) for the duration of the block; yields the ``ray`` module.

    ``address`` ``""`` uses the cluster named by the ``RAY_ADDRESS`` environment variable
    when it is set (as Ray itself does; ``ray job submit`` sets it), else starts a new Ray on
    this machine (with ``num_cpus`` CPUs), even beside a ``ray start`` cluster. ``"auto"``
    joins the cluster this machine belongs to (``ray start --head`` / ``--address``), and
    ``"ray://host:10001"`` connects to a remote cluster's client port (Ray Client: needs
    ``pip install "ray[client]"``). A Ray that was already initialized in this process is
    used as it is and left running. One started here is shut down at the end of the block,
    or, with ``keep`` on the main thread, when the process exits, so the next scoring of a
    loop reuses it and its warm worker processes. A Ray started from another thread is
    never kept (its processes die with that thread), and a kept Ray whose processes died is
    shut down and started anew. Usage statistics are off (``RAY_USAGE_STATS_ENABLED=0``).

    Raises
    ------
    ConfigError
        If Ray is not installed, or ``num_cpus`` is given with an existing cluster.
    """
    global _KEPT
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # the extra's Ray Data
    except ImportError as exc:
        raise ConfigError(f"{_INSTALL} ({exc})") from None
    target = address or os.environ.get("RAY_ADDRESS", "")
    if num_cpus is not None and target:
        raise ConfigError(
            "num_cpus sizes a Ray started here; with ray_address (or RAY_ADDRESS) set, the "
            "cluster's own CPUs are used (drop num_cpus)"
        )
    if _KEPT and ray.is_initialized() and not _healthy():
        ray.shutdown()  # a kept Ray whose processes died: start a new one below
    if not ray.is_initialized():
        _KEPT = False
    started = not ray.is_initialized()
    keep = keep and threading.current_thread() is threading.main_thread()
    if started:
        try:
            ray.init(
                address=target or "local",  # "local": a new Ray, even beside a `ray start`
                num_cpus=num_cpus,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
                # A Ray started here for one scoring need not announce itself.
                logging_level=logging.ERROR if not address else logging.INFO,
            )
        except (ConnectionError, ValueError) as exc:  # ValueError: ray:// without ray[client]
            raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
    if started and keep:
        _KEPT = True
        atexit.register(ray.shutdown)
    try:
        yield ray
    finally:
        if started and not keep:
            ray.shutdown()


#: Whether the Ray initialized in this process was started and kept by :func:`ray_session`.
_KEPT = False


def _healthy() -> bool:
    """Whether the processes of a Ray started by this process (raylet, GCS...) still run.

    A Ray joined or reached through a client has none here: it counts as healthy, and Ray
    reports a lost cluster itself when used.
    """
    try:
        from ray._private.services import remaining_processes_alive

        return bool(remaining_processes_alive())
    except (ImportError, AttributeError, RuntimeError):  # not started here, or API moved
        return True


def score_pool_ray(
    model: ModelAdapter | None,
    X: np.ndarray,
    strategy: Strategy,
    *,
    unlabeled: np.ndarray | None = None,
    rows_per_task: int = 65_536,
    shard_dir: str | Path,
    shard_format: ShardFormat = "npy",
    address: str = "",
    num_cpus: int | None = None,
    chunk_size: int | None = None,
    x_rows: XRows = "auto",
    out_paths: Mapping[str, str | Path] | None = None,
) -> ScoredPool:
    """Score every row of ``X`` on Ray and keep what ``strategy`` reads, like ``score_pool``.

    Parameters
    ----------
    model : ModelAdapter
        A fitted model (shipped to the workers once; it must pickle).
    X : ndarray of shape (n, ...)
        The rows to score: an array, or a memory map of a file (read by the workers).
    strategy : Strategy
        Decides what is predicted and kept (its ``requires`` and ``candidate_pool``).
    unlabeled : ndarray of int, optional
        Rows that may become candidates. Defaults to every row.
    rows_per_task : int, default=65536
        Rows one Ray task scores (rounded up to whole chunks).
    shard_dir : path
        Folder of the shards (on a file system every node shares, for a multi-node
        cluster). Earlier shards and assembled files there are deleted first; an array
        returned by an earlier call keeps its data (files are unlinked, never rewritten).
    shard_format : {"npy", "parquet"}, default="npy"
        File format of the shards.
    address : str, default=""
        ``""`` starts Ray here (or joins ``RAY_ADDRESS`` when that is set), ``"auto"``
        joins this machine's cluster,
        ``"ray://host:10001"`` connects to a remote one (see :func:`ray_session`). A Ray
        started or connected here stays up until the process exits, for the next call.
    num_cpus : int, optional
        CPUs of a Ray started here (default: all).
    chunk_size : int, optional
        Rows predicted at once inside a task, as ``score_pool``'s ``chunk_size``; equal
        chunks give equal arrays. Default: ``rows_per_task``.
    x_rows : {"auto", "file", "ship"}, default="auto"
        How workers get the rows: read X's file themselves (``"file"``: X must be a memory
        map and the file visible on every node), or from the object store (``"ship"``, in
        waves of at most ``2 × cpus`` ranges, so the store never holds all of ``X``).
        ``"auto"`` reads the file on a one-node cluster not reached through ``ray://``.
    out_paths : mapping, optional
        Where the on-disk outputs are assembled: ``{"embeddings": path, "samples": path}``
        (``.npy`` files; a project passes its ``arrays/`` names). Default:
        ``<shard_dir>/<kind>.npy``. Their shards are deleted as they are copied in.

    Returns
    -------
    ScoredPool
        ``proba``/``utility`` in memory, ``embeddings``/``samples`` memory-mapped
        (read-only) from their assembled files, the candidates merged from the tasks'
        lists. An empty ``X`` gives what ``score_pool`` gives, without starting Ray.

    Raises
    ------
    ModelError
        No model, a detector, or outputs that do not match the rows asked for.
    ConfigError
        Bad sizes or options, Ray missing or unreachable.
    StoreError
        A shard the driver cannot read (a shard folder not shared by every node).
    """
    if model is None:
        raise ModelError(f"strategy {strategy.name!r} needs a fitted model")
    if getattr(model, "finds_objects", False):
        raise ModelError("Ray scoring scores feature models; a detector scores locally")
    if rows_per_task < 1:
        raise ConfigError(f"rows_per_task must be at least 1, got {rows_per_task}")
    chunk = rows_per_task if chunk_size is None else chunk_size
    if chunk < 1:
        raise ConfigError(f"chunk_size must be at least 1, got {chunk}")
    if shard_format not in ("npy", "parquet"):
        raise ConfigError(f"shard_format must be 'npy' or 'parquet', got {shard_format!r}")
    if x_rows not in ("auto", "file", "ship"):
        raise ConfigError(f"x_rows must be 'auto', 'file' or 'ship', got {x_rows!r}")
    shard_dir = Path(shard_dir)
    n = X.shape[0]
    run = RayRun()
    global _LAST_RUN
    _LAST_RUN = run
    scorer = strategy.row_scorer if "samples" in strategy.requires else None
    top_size = scorer.candidate_pool if scorer is not None else 0
    classes = np.asarray(model.classes_)
    if n == 0:  # exactly what score_pool gives for no rows
        empty = Predictions(
            proba=np.empty((0, classes.size), dtype=np.float32),
            embeddings=X if "embeddings" in strategy.requires else None,
            classes=classes,
        )
        reduced = None
        if scorer is not None:
            rows = np.empty(0, dtype=np.int64) if top_size > 0 else None
            reduced = ReducedSamples(np.empty(0), rows, None)
        return ScoredPool(empty, reduced)
    per_task = -(-rows_per_task // chunk) * chunk
    ranges = [(a, min(a + per_task, n)) for a in range(0, n, per_task)]
    file = _file_of(X)
    if x_rows == "file" and file is None:
        raise ConfigError("x_rows='file' needs X to be a C-contiguous memory map of a file")
    shard_dir.mkdir(parents=True, exist_ok=True)
    clear_shards(shard_dir, SHARD_KINDS)
    for kind in _ON_DISK:  # an earlier run's files (unlinked: arrays mapped from them stay)
        (shard_dir / f"{kind}.npy").unlink(missing_ok=True)
    t0 = time.perf_counter()
    with ray_session(address, num_cpus, keep=True) as ray:
        run.seconds["connect"] = round(time.perf_counter() - t0, 4)
        t1 = time.perf_counter()
        alive = [node for node in ray.nodes() if node.get("Alive")]
        use_file = file is not None and (
            x_rows == "file"
            or (x_rows == "auto" and len(alive) == 1 and not address.startswith("ray://"))
        )
        run.x_rows = "file" if use_file else "ship"
        mask_ref = None
        if top_size > 0 and unlabeled is not None:
            mask = np.zeros(n, dtype=bool)
            mask[np.asarray(unlabeled, dtype=np.int64)] = True
            mask_ref = ray.put(mask)
        run.tasks, run.cpus = len(ranges), int(ray.cluster_resources().get("CPU", 1))
        job = _Job(
            run_id=uuid.uuid4().hex,
            model=ray.put(model),
            strategy=ray.put(strategy),
            file=file if use_file else None,
            rows={},
            mask=mask_ref,
            chunk=chunk,
            shard_dir=str(shard_dir),
            fmt=shard_format,
        )
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # Shipped rows go in waves, so the object store holds a bounded number of ranges.
        wave = len(ranges) if use_file else max(1, 2 * run.cpus)
        results: list[dict[str, Any]] = []
        for first in range(0, len(ranges), wave):
            tasks = range(first, min(first + wave, len(ranges)))
            shipped: dict[int, Any] = {}
            if not use_file:
                shipped = {i: ray.put(np.asarray(X[slice(*ranges[i])])) for i in tasks}
            results += _run_wave(ray, dataclasses.replace(job, rows=shipped), ranges, tasks)
            del shipped  # the wave's rows leave the object store
            run.waves += 1
        run.seconds["score"] = round(time.perf_counter() - t1, 4)
    for result in results:
        if result["error"]:
            raise ModelError(result["error"])
    t2 = time.perf_counter()
    paths = {k: Path(v) for k, v in (out_paths or {}).items()}
    scored = _assemble(
        X, results, shard_dir, shard_format, scorer is not None, top_size, classes, paths
    )
    run.seconds["assemble"] = round(time.perf_counter() - t2, 4)
    return scored


def _run_wave(ray: Any, job: _Job, ranges: list[tuple[int, int]], tasks: range) -> list[Any]:
    """Score the ranges ``tasks`` as one Ray Data run (one row per range, one CPU each)."""
    items = [{"task": i, "start": ranges[i][0], "stop": ranges[i][1]} for i in tasks]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)  # Ray Data's per-run INFO lines, while it runs
    try:
        return list(dataset.map(_score_item, fn_kwargs={"box": [job]}, num_cpus=1).take_all())
    except ray.exceptions.RayError as exc:
        raise ModelError(_failure(exc, ray.exceptions.RayError)) from exc
    finally:
        data_log.setLevel(level)


_RAISED = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _failure(exc: BaseException, ray_error: type[BaseException]) -> str:
    """One line for a failed Ray run: the user code's own exception when there is one.

    Ray Data passes a worker's exception back as text inside its own (the original type
    does not always survive), so the last ``SomeError: message`` line of that text that is
    not Ray's is the one reported.
    """
    chain, seen = [exc], {id(exc)}
    while True:
        nxt = getattr(chain[-1], "cause", None) or chain[-1].__cause__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        chain.append(nxt)
    inner = chain[-1]
    if not isinstance(inner, ray_error):
        found: tuple[str, str] | None = (type(inner).__name__, str(inner))
    else:
        found = None
        for error in chain:
            for line in str(error).splitlines():
                match = _RAISED.match(line)
                if match and not match.group(1).startswith(("ray.", "UserCodeException")):
                    found = (match.group(1), match.group(2))
    if found is None:  # a failure of Ray itself (a worker died, ...)
        lines = [line for line in str(inner).splitlines() if line.strip()]
        return f"scoring on Ray failed: {lines[0] if lines else type(inner).__name__}. {_SAME_ENV}"
    name, text = found
    message = f"scoring on Ray failed on a worker: {name}: {text}"
    if name.rsplit(".", 1)[-1] in {"ImportError", "ModuleNotFoundError", "AttributeError"}:
        message += f". {_SAME_ENV}"
    return message


@dataclass(frozen=True)
class _FileRows:
    """Where X's rows lie in a file: enough for a worker to map them itself."""

    path: str
    offset: int
    dtype: str
    shape: tuple[int, ...]

    def open(self) -> np.ndarray:
        return np.memmap(
            self.path, dtype=np.dtype(self.dtype), mode="r", offset=self.offset, shape=self.shape
        )


def _file_of(X: np.ndarray) -> _FileRows | None:
    """The file and byte offset of a C-contiguous memory map (also of a view into one)."""
    if not isinstance(X, np.memmap) or X.filename is None or not X.flags.c_contiguous:
        return None
    mm = getattr(X, "_mmap", None)
    if not isinstance(mm, mmap.mmap) or X.size == 0:
        return None
    base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    mapped_from = X.offset - X.offset % mmap.ALLOCATIONGRANULARITY
    offset = X.ctypes.data - base + mapped_from
    return _FileRows(str(X.filename), int(offset), X.dtype.str, tuple(X.shape))


@dataclass(frozen=True)
class _Job:
    """What every task of one scoring run gets (object refs, never the arrays)."""

    run_id: str
    model: Any
    strategy: Any
    file: _FileRows | None
    rows: dict[int, Any]
    mask: Any
    chunk: int
    shard_dir: str
    fmt: str


class _Loaded:
    """A run's model, strategy, rows and candidate mask, as one worker process holds them."""

    def __init__(self, job: _Job) -> None:
        import ray

        self.model = ray.get(job.model)
        self.strategy: Strategy = ray.get(job.strategy)
        self.X = job.file.open() if job.file is not None else None
        self.mask = ray.get(job.mask) if job.mask is not None else None


#: In a worker process: the latest run's loaded objects (one run at a time is kept).
_LOADED: dict[str, _Loaded] = {}


def _score_item(item: dict[str, Any], box: list[_Job]) -> dict[str, Any]:
    """A Ray Data map function: score one row range with the shipped model, write shards."""
    import ray

    job = box[0]
    task, start, stop = int(item["task"]), int(item["start"]), int(item["stop"])
    loaded = _LOADED.get(job.run_id)
    if loaded is None:
        _LOADED.clear()
        try:
            loaded = _LOADED[job.run_id] = _Loaded(job)
        except (ray.exceptions.RayError, ImportError, AttributeError) as exc:
            # Reported, not raised: Ray Data would retry the task without end.
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            error = f"a worker cannot load the model or strategy: {first}. {_SAME_ENV}"
            return {"task": task, "start": start, "stop": stop, "x": False, "error": error}
    rows = loaded.X[start:stop] if loaded.X is not None else ray.get(job.rows[task])
    try:
        same = _score_range(loaded.model, rows, loaded.strategy, start, loaded.mask, job)
    except ModelError as exc:
        return {"task": task, "start": start, "stop": stop, "x": False, "error": str(exc)}
    return {"task": task, "start": start, "stop": stop, "x": same, "error": ""}


def _score_range(
    model: Any, rows: np.ndarray, strategy: Strategy, start: int, mask: Any, job: _Job
) -> bool:
    """Score rows ``start ...`` chunk by chunk as ``score_pool`` does; write their shards.

    Returns whether the model's embeddings were the feature rows themselves (then no
    embeddings shard is written and the driver uses X).
    """
    reduces = "samples" in strategy.requires
    scorer = strategy.row_scorer if reduces else None
    want_samples = "samples" in strategy.requires
    want_embeddings = "embeddings" in strategy.requires
    extra = {"views": True} if "views" in strategy.requires else {}
    m = rows.shape[0]
    top = TopRows(scorer.candidate_pool) if scorer is not None and scorer.candidate_pool else None
    proba = utility = embeddings = samples = None
    embeddings_are_x = want_embeddings
    for offset in range(0, m, job.chunk):
        block = rows[offset : offset + job.chunk]
        end = offset + block.shape[0]
        pred = model.predict(block, samples=want_samples, embeddings=want_embeddings, **extra)
        check_outputs(pred, block.shape[0], want_samples, want_embeddings)
        if proba is None:
            proba = np.empty((m, pred.proba.shape[1]), dtype=np.float32)
        proba[offset:end] = pred.proba
        if pred.embeddings is not None:
            embeddings_are_x &= pred.embeddings is block
            if not embeddings_are_x:
                if embeddings is None:
                    embeddings = np.empty((m, *pred.embeddings.shape[1:]), pred.embeddings.dtype)
                    embeddings[:offset] = rows[:offset]
                embeddings[offset:end] = pred.embeddings
        if scorer is not None:
            block_utility = np.asarray(scorer.utility(pred))
            if utility is None:
                utility = np.empty(m, dtype=block_utility.dtype)
            utility[offset:end] = block_utility
            if top is not None:
                eligible = None if mask is None else mask[start + offset : start + end]
                top.add(start + offset, block_utility, pred.samples, eligible)
        elif pred.samples is not None:
            if samples is None:
                t, _, c = pred.samples.shape
                samples = np.empty((t, m, c), dtype=pred.samples.dtype)
            samples[:, offset:end] = pred.samples
    outputs: list[tuple[str, np.ndarray | None, int]] = [
        ("proba", proba, 0),
        ("embeddings", None if embeddings_are_x else embeddings, 0),
        ("samples", samples, 1),
        ("utility", utility, 0),
    ]
    if top is not None:
        outputs += [
            ("candidates", top.rows, 0),
            ("candidate-utility", top.utility, 0),
            ("candidate-samples", top.samples, 1),
        ]
    for kind, array, axis in outputs:
        if array is not None:
            write_shard(job.shard_dir, kind, start, array, job.fmt, row_axis=axis)
    return bool(embeddings_are_x)


def _assemble(
    X: np.ndarray,
    results: list[dict[str, Any]],
    shard_dir: Path,
    fmt: str,
    reduces: bool,
    top_size: int,
    classes: np.ndarray,
    out_paths: dict[str, Path],
) -> ScoredPool:
    """The pool's arrays from the tasks' shards (in row order)."""
    results = sorted(results, key=lambda r: int(r["start"]))
    starts = [int(r["start"]) for r in results]
    n = X.shape[0]

    def first(kind: str) -> np.ndarray | None:
        path = shard_path(shard_dir, kind, starts[0], fmt)
        return read_shard(path) if path.exists() else None

    head = first("proba")
    if head is None:
        raise StoreError(
            f"missing shard {shard_path(shard_dir, 'proba', 0, fmt)}: the workers may run on "
            "other machines; the shard folder must be on a file system every node shares"
        )
    proba = assemble(shard_dir, "proba", fmt, starts, (n, head.shape[1]), head.dtype)
    embeddings: np.ndarray | None = None
    if all(r["x"] for r in results):
        embeddings = X
    elif any(shard_path(shard_dir, "embeddings", s, fmt).exists() for s in starts):
        embeddings = _assemble_embeddings(
            X, results, shard_dir, fmt, out_paths.get("embeddings", shard_dir / "embeddings.npy")
        )
    samples = None
    sample_head = first("samples")
    if sample_head is not None:
        t, _, c = sample_head.shape
        samples = assemble(
            shard_dir,
            "samples",
            fmt,
            starts,
            (t, n, c),
            sample_head.dtype,
            row_axis=1,
            out_path=out_paths.get("samples", shard_dir / "samples.npy"),
            drop=True,
        )
    reduced = None
    if reduces:
        utility_head = first("utility")
        assert utility_head is not None
        utility = assemble(shard_dir, "utility", fmt, starts, (n,), utility_head.dtype)
        rows = cand = None
        if top_size > 0:
            parts = [
                [read_shard(shard_path(shard_dir, kind, s, fmt)) for s in starts]
                for kind in ("candidates", "candidate-utility", "candidate-samples")
            ]
            all_rows = np.concatenate(parts[0]).astype(np.int64, copy=False)
            scores = np.concatenate(parts[1])
            keep = top_k(scores, top_size) if scores.size else np.empty(0, dtype=np.int64)
            rows = all_rows[keep]
            cand = np.concatenate(parts[2], axis=1)[:, keep]
        reduced = ReducedSamples(utility, rows, cand)
    predictions = Predictions(proba=proba, samples=samples, embeddings=embeddings, classes=classes)
    return ScoredPool(predictions, reduced)


def _assemble_embeddings(
    X: np.ndarray, results: list[dict[str, Any]], shard_dir: Path, fmt: str, out_path: Path
) -> np.ndarray:
    """The embeddings as a new ``.npy`` at ``out_path``, memory-mapped, from the shards
    (each deleted once copied) and X's rows where a task's embeddings were its feature
    rows (as ``score_pool`` copies them)."""
    starts = [int(r["start"]) for r in results if not r["x"]]
    head = read_shard(shard_path(shard_dir, "embeddings", starts[0], fmt))
    dtype, shape = head.dtype, (X.shape[0], *head.shape[1:])
    del head
    with new_npy(out_path, dtype, shape) as out:
        for r in results:
            a, b = int(r["start"]), int(r["stop"])
            if r["x"]:
                out[a:b] = X[a:b]
                continue
            path = shard_path(shard_dir, "embeddings", a, fmt)
            out[a:b] = read_shard(path)
            path.unlink()
    return np.load(out_path, mmap_mode="r", allow_pickle=False)
