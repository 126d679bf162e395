"""Scoring on Ray gives exactly the arrays of local scoring, for every kind of output.

One local Ray (1 CPU), started by the module's fixture, serves every test here; a project
cycle with ``[scoring] engine = "ray"`` selects the same batches as a local one.

The module is one xdist group (``--dist loadgroup`` keeps it in one worker). Under the
default ``--dist load`` its tests may be spread over workers, each starting its own Ray;
one CPU each keeps that affordable on a small machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from exemplar.engines import ray_scoring, score_pool_ray
from exemplar.engines.ray_scoring import RayRun, last_run
from exemplar.errors import ConfigError, ModelError
from exemplar.loop.scoring import ScoredPool, score_pool
from exemplar.models import SklearnAdapter, make_model
from exemplar.predictions import Predictions
from exemplar.store.arrays import ArrayStore
from exemplar.strategies import get_strategy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from loop_helpers import make_project, snapshot

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")
# The fake adapters below travel to the workers by value (this module is not importable there).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

N, D, CHUNK, PER_TASK = 3000, 12, 400, 1000


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """A Ray on this machine for the module's tests (started once: it takes seconds)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # offline: no usage report
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A pool memory-mapped from a .npy file, three classes, 200 labeled rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] + X[:, 2] > 1).astype(int)
    path = tmp_path_factory.mktemp("pool") / "X.npy"
    np.save(path, X)
    return {"X": np.load(path, mmap_mode="r"), "y": y, "unlabeled": np.arange(200, N)}


def _same(local: ScoredPool, remote: ScoredPool) -> None:
    """Every array of the two scored pools is equal (np.array_equal), or absent from both."""
    a, b = local.predictions, remote.predictions
    for name in ("proba", "embeddings", "samples", "classes"):
        x, z = getattr(a, name), getattr(b, name)
        assert (x is None) == (z is None), name
        if x is not None:
            assert x.dtype == z.dtype and np.array_equal(x, z), name
    assert (local.reduced is None) == (remote.reduced is None)
    if local.reduced is not None and remote.reduced is not None:
        for name in ("utility", "rows", "samples"):
            x, z = getattr(local.reduced, name), getattr(remote.reduced, name)
            assert (x is None) == (z is None), name
            if x is not None:
                assert x.dtype == z.dtype and np.array_equal(x, z), name


def _last() -> RayRun:
    run = last_run()
    assert isinstance(run, RayRun)
    return run


def test_logreg_margin_on_ray_equals_local_scoring(
    local_ray: Any, pool: dict[str, Any], tmp_path: Path
) -> None:
    X, y = pool["X"], pool["y"]
    model = make_model("logreg", 0).fit(np.asarray(X[:200]), y[:200])
    strategy = get_strategy("margin")
    local = score_pool(model, X, strategy, unlabeled=pool["unlabeled"], chunk_size=CHUNK)
    remote = score_pool_ray(
        model,
        X,
        strategy,
        unlabeled=pool["unlabeled"],
        rows_per_task=PER_TASK,
        chunk_size=CHUNK,
        shard_dir=tmp_path,
    )
    _same(local, remote)
    assert remote.reduced is None
    run = _last()
    # 1000 rows rounded up to whole 400-row chunks: tasks of 1200 rows.
    assert (run.tasks, run.x_rows, run.waves) == (3, "file", 1)  # one node: workers read X
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"proba-{s:012d}.npy" for s in (0, 1200, 2400)]
    proba = local.predictions.proba
    assert proba is not None
    assert np.array_equal(np.load(tmp_path / "proba-000000001200.npy"), proba[1200:2400])
    # The batch a strategy picks from the two is the same.
    labeled = np.arange(200)
    picks = [
        strategy.query(scored.predictions, pool["unlabeled"], labeled, 25, random_state=3)
        for scored in (local, remote)
    ]
    assert np.array_equal(picks[0], picks[1])


def test_committee_batchbald_reduction_on_ray_equals_local(
    local_ray: Any, pool: dict[str, Any], tmp_path: Path
) -> None:
    """Stochastic samples (a bagged committee) are reduced on the workers: the utility of
    every row and the candidate list (merged from the tasks' lists) match, in Parquet shards
    of rows shipped through the object store."""
    X, y = pool["X"], pool["y"]
    model = make_model("logreg", 0, samples=True).fit(np.asarray(X[:200]), y[:200])
    strategy = get_strategy("batchbald", candidate_pool=150)
    local = score_pool(model, X, strategy, unlabeled=pool["unlabeled"], chunk_size=CHUNK)
    remote = score_pool_ray(
        model,
        np.asarray(X),
        strategy,
        unlabeled=pool["unlabeled"],
        rows_per_task=PER_TASK,
        chunk_size=CHUNK,
        shard_dir=tmp_path,
        shard_format="parquet",
    )
    _same(local, remote)
    assert local.reduced is not None and local.reduced.rows is not None
    assert local.reduced.rows.size == 150 and local.reduced.rows.min() >= 200  # eligible only
    run = _last()
    # In memory: rows go through the object store, 2 ranges (2 × 1 CPU) at a time.
    assert (run.x_rows, run.tasks, run.waves) == ("ship", 3, 2)
    kinds = {p.name.split("-0")[0] for p in tmp_path.iterdir() if p.suffix == ".parquet"}
    assert kinds == {"proba", "utility", "candidates", "candidate-utility", "candidate-samples"}


@pytest.mark.slow
def test_mc_dropout_bald_on_ray_equals_local(
    local_ray: Any, pool: dict[str, Any], tmp_path: Path
) -> None:
    """MC-dropout masks are seeded per predict call: equal chunks give equal samples on the
    workers (which import torch for this; about 30 s in all)."""
    pytest.importorskip("torch")
    X, y = pool["X"], pool["y"]
    model = make_model("mlp", 0, samples=True, epochs=3).fit(np.asarray(X[:200]), y[:200])
    strategy = get_strategy("bald")
    local = score_pool(model, X, strategy, chunk_size=CHUNK)
    remote = score_pool_ray(
        model, X, strategy, rows_per_task=PER_TASK, chunk_size=CHUNK, shard_dir=tmp_path
    )
    _same(local, remote)
    assert local.reduced is not None and float(np.ptp(local.reduced.utility)) > 0


def test_embeddings_on_ray_stay_on_disk_and_equal_local(
    local_ray: Any, pool: dict[str, Any], tmp_path: Path
) -> None:
    X, y = pool["X"], pool["y"]
    strategy = get_strategy("coreset")
    # A pipeline embeds rows through its scaler: embeddings come back memory-mapped.
    model = make_model("logreg", 0).fit(np.asarray(X[:200]), y[:200])
    local = score_pool(model, X, strategy, unlabeled=pool["unlabeled"], chunk_size=CHUNK)
    remote = score_pool_ray(
        model, X, strategy, rows_per_task=PER_TASK, chunk_size=CHUNK, shard_dir=tmp_path / "a"
    )
    _same(local, remote)
    embeddings = remote.predictions.embeddings
    assert isinstance(embeddings, np.memmap) and embeddings.filename is not None
    assert Path(embeddings.filename) == tmp_path / "a" / "embeddings.npy"
    assert not list((tmp_path / "a").glob("embeddings-*"))  # each shard deleted once copied
    # Assembled straight into a given file (a project's arrays/ name), in Parquet shards.
    final = tmp_path / "arrays" / "embeddings-v1.npy"
    remote = score_pool_ray(
        model,
        X,
        strategy,
        rows_per_task=PER_TASK,
        chunk_size=CHUNK,
        shard_dir=tmp_path / "a",
        shard_format="parquet",
        out_paths={"embeddings": final},
    )
    _same(local, remote)
    assert Path(remote.predictions.embeddings.filename) == final  # type: ignore[union-attr]
    assert not list((tmp_path / "a").glob("embeddings*"))
    # A bare estimator's embeddings are the rows themselves: no shard, X is used.
    bare = SklearnAdapter(LogisticRegression(max_iter=500)).fit(np.asarray(X[:200]), y[:200])
    remote = score_pool_ray(
        bare,
        X,
        strategy,
        rows_per_task=PER_TASK,
        chunk_size=CHUNK,
        shard_dir=tmp_path / "b",
        x_rows="ship",
    )
    assert remote.predictions.embeddings is X
    assert not list((tmp_path / "b").glob("embeddings*"))
    assert X is not None
    _same(score_pool(bare, X, strategy, chunk_size=CHUNK), remote)


class _WrongRows:
    """An adapter that drops a row: the worker's check must name the mismatch."""

    classes_ = np.arange(2)

    def predict(
        self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False
    ) -> Predictions:
        return Predictions(proba=np.full((max(len(X) - 1, 1), 2), 0.5, dtype=np.float32))


def test_a_bad_model_output_on_a_worker_is_a_model_error(
    local_ray: Any, pool: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="returned 399 rows for 400"):
        score_pool_ray(
            _WrongRows(),  # type: ignore[arg-type]
            pool["X"],
            get_strategy("margin"),
            rows_per_task=PER_TASK,
            chunk_size=CHUNK,
            shard_dir=tmp_path,
        )


class _Failing(_WrongRows):
    """An adapter whose predict raises on the worker."""

    def predict(
        self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False
    ) -> Predictions:
        raise ValueError("the weights do not fit 12 features")


def test_an_exception_in_predict_on_a_worker_is_reported_by_name(
    local_ray: Any, pool: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="ValueError: the weights do not fit 12 features$"):
        score_pool_ray(
            _Failing(),  # type: ignore[arg-type]
            pool["X"],
            get_strategy("margin"),
            rows_per_task=PER_TASK,
            shard_dir=tmp_path,
        )


def _refuse_to_load() -> None:
    raise ImportError("no module named 'site_only_model'")


class _Unloadable(_WrongRows):
    """An adapter whose class a worker cannot load (as if not installed on the node)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


def test_a_model_a_worker_cannot_load_is_a_model_error_with_a_hint(
    local_ray: Any, pool: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="Every node needs exemplar"):
        score_pool_ray(
            _Unloadable(),  # type: ignore[arg-type]
            pool["X"],
            get_strategy("margin"),
            rows_per_task=PER_TASK,
            shard_dir=tmp_path,
        )


@pytest.mark.parametrize(
    ("strategy", "params", "x_rows", "stored"),
    [
        ("batchbald", {"candidate_pool": 40}, "auto", "candidates-c0001-m0.npy"),
        ("coreset", {}, "ship", "embeddings-c0001-m0.npy"),
    ],
)
def test_a_ray_project_cycle_selects_the_batches_of_a_local_one(
    local_ray: Any,
    tmp_path: Path,
    strategy: str,
    params: dict[str, Any],
    x_rows: str,
    stored: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same queue, same stored arrays; embeddings are assembled straight into arrays/
    (no copy left in the shard folder), and [scoring] x_rows reaches the workers."""
    selection = {
        "strategy": strategy,
        "params": params,
        "batch_size": 10,
        "initial_size": 20,
        "chunk_size": 256,
    }
    snaps, arrays = [], []
    ray_scoring._LAST_RUN = None
    copied: list[str] = []
    save = ArrayStore.save

    def recording_save(self: ArrayStore, name: str, array: np.ndarray) -> Path:
        copied.append(name)
        return save(self, name, array)

    monkeypatch.setattr(ArrayStore, "save", recording_save)
    for engine in ("local", "ray"):
        copied.clear()
        scoring = {"engine": engine, "rows_per_task": 256, "x_rows": x_rows}
        with make_project(
            tmp_path / engine, budget=40, selection=dict(selection), scoring=scoring
        ) as p:
            assert p.run().status == "stopped"
            snaps.append(snapshot(p))
            root = p.arrays.root / "arrays"
            arrays.append({f.name: np.load(f) for f in sorted(root.glob("*.npy"))})
            assert not list(root.glob(".*.tmp"))
            assert not (p.arrays.root / "shards").exists() or not any(
                (p.arrays.root / "shards").iterdir()
            )
    run = _last()
    assert (run.tasks, run.x_rows) == (3, "file" if x_rows == "auto" else "ship")  # 600 rows
    assert "embeddings-c0001-m0" not in copied  # the ray project wrote them once, in place
    assert snaps[0] == snaps[1]
    assert [q for q in snaps[1]["queue"] if q[0] == 2]  # cycle 2 queued a scored batch
    assert arrays[0].keys() == arrays[1].keys() and stored in arrays[1]
    for name, local in arrays[0].items():
        assert np.array_equal(local, arrays[1][name]), name


def test_a_ray_already_running_is_used_and_left_running(local_ray: Any) -> None:
    from exemplar.engines import ray_session

    with ray_session() as session:
        assert session is ray and ray.is_initialized()
    assert ray.is_initialized()  # not ours to shut down


def test_bad_options_are_config_errors_before_ray_starts(
    pool: dict[str, Any], tmp_path: Path
) -> None:
    X, margin = pool["X"], get_strategy("margin")
    model = make_model("logreg", 0).fit(np.asarray(X[:200]), pool["y"][:200])
    with pytest.raises(ConfigError, match="rows_per_task"):
        score_pool_ray(model, X, margin, rows_per_task=0, shard_dir=tmp_path)
    with pytest.raises(ConfigError, match="shard_format"):
        score_pool_ray(model, X, margin, shard_dir=tmp_path, shard_format="csv")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="memory map"):
        score_pool_ray(model, np.asarray(X), margin, shard_dir=tmp_path, x_rows="file")
    with pytest.raises(ModelError, match="needs a fitted model"):
        score_pool_ray(None, X, margin, shard_dir=tmp_path)

    class Detector:
        finds_objects = True
        classes_ = np.arange(2)

    with pytest.raises(ModelError, match="detector scores locally"):
        score_pool_ray(Detector(), X, margin, shard_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="drop num_cpus"):  # refused before connecting
        score_pool_ray(model, X, margin, shard_dir=tmp_path, address="auto", num_cpus=2)
    empty = score_pool_ray(model, X[:0], margin, shard_dir=tmp_path)  # no Ray for no rows
    assert empty.predictions.proba is not None and empty.predictions.proba.shape == (0, 3)


@pytest.mark.parametrize(
    ("name", "params", "samples"),
    [("margin", {}, False), ("coreset", {}, False), ("batchbald", {"candidate_pool": 10}, True)],
)
def test_an_empty_pool_scores_as_locally(
    pool: dict[str, Any], tmp_path: Path, name: str, params: dict[str, Any], samples: bool
) -> None:
    """No rows: the same arrays (embeddings X[:0], an empty int64 candidate list), no Ray."""
    X, y = pool["X"], pool["y"]
    model = make_model("logreg", 0, samples=samples).fit(np.asarray(X[:200]), y[:200])
    strategy = get_strategy(name, **params)
    local = score_pool(model, X[:0], strategy)
    remote = score_pool_ray(model, X[:0], strategy, shard_dir=tmp_path)
    _same(local, remote)
    if name == "coreset":
        assert remote.predictions.embeddings is not None
        assert remote.predictions.embeddings.shape == (0, D)
    if samples:
        assert remote.reduced is not None and remote.reduced.rows is not None
        assert remote.reduced.rows.dtype == np.int64 and remote.reduced.rows.size == 0


def test_ray_check_command_scores_a_test_pool_on_the_project_cluster(
    local_ray: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exemplar.engines

    used: list[Path] = []

    def recording(*args: Any, **kwargs: Any) -> ScoredPool:
        used.append(Path(kwargs["shard_dir"]))
        return score_pool_ray(*args, **kwargs)

    monkeypatch.setattr(exemplar.engines, "score_pool_ray", recording)
    from typer.testing import CliRunner

    from exemplar.cli.main import app

    with make_project(tmp_path / "p", scoring={"engine": "ray", "shard_format": "parquet"}):
        pass
    runner = CliRunner()
    shared = tmp_path / "shared"  # a folder every node of a cluster mounts
    result = runner.invoke(
        app,
        ["ray", "check", "-p", str(tmp_path / "p"), "--rows", "4000", "--shard-dir", str(shared)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "parquet shards" in result.output and "ok:" in result.output
    assert _last().tasks == 4  # 4,000 rows in tasks of at least 1,000 rows
    assert len(used) == 1 and used[0].parent.parent == shared  # shared/<tmp>/shards
    assert shared.is_dir() and not any(shared.iterdir())  # its test folder is removed
    result = runner.invoke(app, ["ray", "check", "-p", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a project folder" in result.output


_THREADS = """
import os, threading
import numpy as np
import ray
from exemplar.engines import score_pool_ray
from exemplar.models import make_model
from exemplar.strategies import get_strategy

X = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
model = make_model("logreg", 0).fit(X[:100], (X[:100, 0] > 0).astype(int))
done = []

def score(tag):
    scored = score_pool_ray(model, X, get_strategy("margin"), rows_per_task=256,
                            shard_dir=os.path.join(os.environ["SHARDS"], tag), num_cpus=1)
    done.append((tag, scored.predictions.proba.shape, ray.is_initialized()))

for tag in ("thread-1", "thread-2"):  # a Ray started in a thread dies with it: not kept
    worker = threading.Thread(target=score, args=(tag,))
    worker.start()
    worker.join(240)
score("main-1")  # kept on the main thread, for the next call
for info in ray._private.worker._global_node.all_processes["raylet"]:
    info.process.kill()  # the kept Ray dies under us
    info.process.wait()
score("main-2")  # checked before reuse: started anew
print(done)
"""


@pytest.mark.slow
def test_a_ray_started_in_a_thread_is_shut_down_and_a_dead_kept_ray_restarted(
    tmp_path: Path,
) -> None:
    """Three Ray starts in a fresh process (about 40 s). Before: the second thread's
    scoring found the first thread's dead Ray and killed the process."""
    env = {**os.environ, "SHARDS": str(tmp_path), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_THREADS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(
        [
            ("thread-1", (400, 2), False),
            ("thread-2", (400, 2), False),
            ("main-1", (400, 2), True),
            ("main-2", (400, 2), True),
        ]
    )
