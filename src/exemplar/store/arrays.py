"""Large arrays beside the database: the feature matrix and per-model-version arrays.

Features live in one append-only raw float32 file (``features.f32``), read back as a
read-only memory map. The database records how many rows are committed; a tail written
by a process that crashed before its commit is cut off on the next write, so rows and
items never disagree. Per-model arrays (scores, embeddings) are ``.npy`` files named by
model version, written atomically and memory-mapped on read (DESIGN.md §4).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from exemplar.errors import StoreError

__all__ = ["ArrayStore"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ArrayStore:
    """Arrays of one project, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.features_path = root / "features.f32"

    def append_features(self, X: np.ndarray, committed_rows: int, dim: int) -> int:
        """Write ``X`` after the ``committed_rows`` rows; return the first new row.

        Anything beyond the committed rows (a crashed writer's tail) is truncated first.
        The data is flushed to disk before returning, so the caller may commit.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != dim:
            raise StoreError(f"feature rows must have {dim} columns, got shape {X.shape}")
        self.root.mkdir(parents=True, exist_ok=True)
        size = committed_rows * dim * 4
        with open(self.features_path, "ab+") as fh:
            fh.truncate(size)
            fh.seek(size)
            fh.write(X.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        return committed_rows

    def features(self, n_rows: int, dim: int) -> np.ndarray:
        """The first ``n_rows`` committed feature rows as a read-only memory map."""
        if n_rows == 0:
            return np.empty((0, dim), dtype=np.float32)
        have = self.features_path.stat().st_size if self.features_path.exists() else 0
        if have < n_rows * dim * 4:
            raise StoreError(
                f"{self.features_path} holds {have // (4 * dim)} rows but the database "
                f"records {n_rows}: the feature file was truncated or replaced"
            )
        return np.memmap(self.features_path, dtype=np.float32, mode="r", shape=(n_rows, dim))

    def save(self, name: str, array: np.ndarray) -> Path:
        """Write ``arrays/<name>.npy`` atomically (temp file, fsync, rename)."""
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def load(self, name: str) -> np.ndarray:
        """Memory-map ``arrays/<name>.npy`` (read-only; never unpickles)."""
        path = self._path(name)
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise StoreError(f"missing array file {path}") from None
        except ValueError as exc:
            raise StoreError(f"corrupt array file {path}: {exc}") from None

    def exists(self, name: str) -> bool:
        """Whether ``arrays/<name>.npy`` exists."""
        return self._path(name).exists()

    def delete(self, name: str) -> None:
        """Remove ``arrays/<name>.npy`` if it exists."""
        self._path(name).unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise StoreError(f"invalid array name {name!r}")
        return self.root / "arrays" / f"{name}.npy"
