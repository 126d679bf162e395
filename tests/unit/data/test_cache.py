"""The crash-safe array cache used for parsed built-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exemplar.data.cache import load_arrays, save_arrays


def arrays() -> dict[str, np.ndarray]:
    return {"X": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array(["a", "b", "c"])}


def test_round_trip_and_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.npz"
    assert save_arrays(path, arrays(), "k1")
    loaded = load_arrays(path, "k1")
    assert loaded is not None and set(loaded) == {"X", "y"}
    np.testing.assert_array_equal(loaded["X"], arrays()["X"])
    np.testing.assert_array_equal(loaded["y"], arrays()["y"])
    assert [p.name for p in path.parent.iterdir()] == ["c.npz"]


def test_overwrite_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    save_arrays(path, arrays(), "k1")
    save_arrays(path, {"X": np.zeros(2)}, "k2")
    assert load_arrays(path, "k1") is None
    loaded = load_arrays(path, "k2")
    assert loaded is not None and loaded["X"].tolist() == [0.0, 0.0]


def test_missing_or_stale_is_none(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    assert load_arrays(path, "k") is None
    save_arrays(path, arrays(), "k")
    assert load_arrays(path, "other") is None


def test_digest_mismatch_is_none(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    save_arrays(path, arrays(), "k")
    with np.load(path) as npz:
        content = {name: npz[name] for name in npz.files}
    content["X"] = content["X"] + 1  # same key and digest, different data
    np.savez(path, **content)
    assert load_arrays(path, "k") is None


def test_foreign_npz_without_key_is_none(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez(path, X=np.zeros(3))
    assert load_arrays(path, "k") is None


def test_garbage_and_pickles_are_none(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(b"\x00" * 100)
    assert load_arrays(path, "k") is None
    obj = np.empty(1, dtype=object)
    np.savez(path, X=obj)
    assert load_arrays(path, "k") is None


def test_unwritable_location_returns_false(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert save_arrays(blocker / "c.npz", arrays(), "k") is False
