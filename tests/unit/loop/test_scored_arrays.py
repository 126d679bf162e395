"""The per-model-version arrays a project stores: save, load, and pruned with checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from exemplar.loop.scoring import ScoredPool, drop_scored, load_scored, save_scored
from exemplar.predictions import Predictions
from exemplar.store.arrays import ArrayStore
from exemplar.store.schema import ModelVersion
from exemplar.strategies import ReducedSamples
from loop_helpers import make_project


def test_save_load_and_drop_round_trip(tmp_path: Path) -> None:
    arrays = ArrayStore(tmp_path)
    proba = np.full((4, 2), 0.5, dtype=np.float32)
    utility = np.arange(4, dtype=np.float32)
    save_scored(arrays, "v1", ScoredPool(Predictions(proba=proba), ReducedSamples(utility)))
    loaded = load_scored(arrays, "v1")
    np.testing.assert_array_equal(loaded.predictions.proba, proba)
    assert loaded.predictions.embeddings is None and loaded.predictions.samples is None
    assert loaded.reduced is not None
    np.testing.assert_array_equal(loaded.reduced.utility, utility)
    assert loaded.reduced.rows is None
    drop_scored(arrays, "v1")
    assert not any(arrays.exists(f"{kind}-v1") for kind in ("proba", "utility"))
    drop_scored(arrays, "v1")  # nothing left: no error


def test_pruned_model_versions_lose_their_arrays_too(tmp_path: Path) -> None:
    with make_project(
        tmp_path / "p",
        budget=60,
        n=200,
        model={"keep_checkpoints": 1, "candidates": [{"recipe": "logreg"}]},
    ) as project:
        assert project.run().status == "stopped"
        with project.db.read() as s:
            versions = [v.version for v in s.scalars(select(ModelVersion))]
        kept = {v for v in versions if project.arrays.exists(f"proba-{v}")}
        on_disk = {
            "-".join(p.stem.rsplit("-", 2)[-2:])  # <kind>-c0004-m0.npy
            for p in (project.root / "arrays").glob("*.npy")
        }
        checkpoints = {p.stem for p in project.models_dir.iterdir()}
        assert kept and len(kept) < len(versions)  # some versions were pruned
        assert on_disk == kept == {c.split(".")[0] for c in checkpoints}
