"""What the loop needs from a project: a narrow protocol, so the loop sits below the facade.

:class:`~exemplar.project.Project` satisfies :class:`LoopContext` structurally; the loop
engine, the oracles and the labels-file code type against this protocol and never import
``exemplar.project`` (DESIGN.md §3: imports point downward only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from exemplar.loop.config import ProjectConfig
from exemplar.store import Database
from exemplar.store.arrays import ArrayStore

__all__ = ["LoopContext"]


class LoopContext(Protocol):
    """One project's configuration, database, arrays and features, as the loop reads them.

    Attributes
    ----------
    root : Path
        The project folder (checkpoint paths are recorded relative to it).
    config : ProjectConfig
        The validated ``exemplar.toml``.
    db : Database
        The project's database.
    arrays : ArrayStore
        The feature matrix and per-model-version arrays.
    models_dir : Path
        Where model checkpoints are written.
    """

    root: Path
    config: ProjectConfig
    db: Database
    arrays: ArrayStore
    models_dir: Path

    @property
    def classes(self) -> list[str]:
        """The project's class names."""
        ...

    @property
    def n_rows(self) -> int:
        """Committed feature rows (= imported items)."""
        ...

    def features(self) -> np.ndarray:
        """All committed feature rows, memory-mapped read-only."""
        ...
