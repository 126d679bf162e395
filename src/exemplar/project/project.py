"""The Python API of a project: ``Project.init(...)`` / ``Project.open(path)``.

The CLI is a thin layer over this class. A project is a folder holding
``exemplar.toml``, the SQLite database (unless ``database_url`` points elsewhere),
the feature array and per-model arrays, and model checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from sqlalchemy import select

from exemplar.errors import ExemplarError, ProjectError
from exemplar.project.config import (
    CONFIG_NAME,
    ProjectConfig,
    load_config,
    save_config,
    validate_config,
)
from exemplar.store import Database, open_database, sqlite_url
from exemplar.store.arrays import ArrayStore
from exemplar.store.schema import Meta

if TYPE_CHECKING:
    from exemplar.loop.engine import RunOutcome
    from exemplar.loop.labels_file import LabelImport
    from exemplar.project.exporting import ObjectsExport
    from exemplar.project.importing import ImportReport
    from exemplar.store.queue import LeasedItem, UndoneLabel

__all__ = ["Project"]

DB_NAME = "exemplar.db"


class Project:
    """An open project: its config, database and arrays.

    The facade above the loop: it satisfies :class:`~exemplar.loop.context.LoopContext`
    (root, config, db, arrays, models_dir, classes, n_rows, features), which is all the
    loop engine and the oracles see of it.
    """

    def __init__(self, root: Path, config: ProjectConfig, db: Database) -> None:
        self.root = root
        self.config = config
        self.db = db
        self.arrays = ArrayStore(root)
        self.models_dir = root / "models"
        self._config_mtime = self._mtime()

    # -- lifecycle -------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        root: Path | str,
        classes: Sequence[str],
        *,
        name: str | None = None,
        task: str = "classification",
        database_url: str = "",
        **sections: dict[str, object],
    ) -> Project:
        """Create a project folder with ``exemplar.toml`` and an empty database.

        ``sections`` override config sections, e.g. ``oracle={"kind": "simulated"}``.
        """
        root = Path(root)
        path = root / CONFIG_NAME
        if path.exists():
            raise ProjectError(f"{root} already holds a project ({CONFIG_NAME} exists)")
        raw: dict[str, object] = {
            "project": {
                "name": name or root.resolve().name,
                "task": task,
                "classes": list(classes),
                "database_url": database_url,
            },
            **sections,
        }
        config = validate_config(raw, where="project settings")
        root.mkdir(parents=True, exist_ok=True)
        db = open_database(cls._url(root, config))
        save_config(config, path)
        return cls(root, config, db)

    @classmethod
    def open(cls, root: Path | str) -> Project:
        """Open an existing project (upgrading its database schema if needed).

        Never creates the schema (only :meth:`init` does): a database that is missing,
        empty or without exemplar tables is an error, and a damaged SQLite file is
        reported as such (``PRAGMA quick_check`` when it was not closed cleanly).

        Raises
        ------
        DamagedProjectError
            The database is missing, empty or corrupt while the project's data files
            remain; the message names them and how to recover.
        ProjectError
            ``root`` is not a project, or its database is missing with no data files.
        """
        from exemplar.errors import EmptyDatabaseError
        from exemplar.project.health import check_database_file, missing_schema_error
        from exemplar.store.db import safe_url

        root = Path(root)
        if not (root / CONFIG_NAME).exists():
            raise ProjectError(
                f"{root} is not an exemplar project (no {CONFIG_NAME}); run `exemplar init`"
            )
        config = load_config(root / CONFIG_NAME)
        url = cls._url(root, config)
        if not config.project.database_url:
            check_database_file(root, root / DB_NAME)
        try:
            db = open_database(url, create=False)
        except EmptyDatabaseError:
            where = str(root / DB_NAME) if not config.project.database_url else safe_url(url)
            raise missing_schema_error(root, where, DB_NAME) from None
        return cls(root, config, db)

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _url(root: Path, config: ProjectConfig) -> str:
        return config.project.database_url or sqlite_url(root / DB_NAME)

    # -- facts -----------------------------------------------------------------------

    @property
    def classes(self) -> list[str]:
        """The project's class names, as ``exemplar.toml`` lists them now: a split or merge
        applied by another process (the CLI beside a server) is seen at the next read."""
        mtime = self._mtime()
        if mtime != self._config_mtime:
            self._config_mtime = mtime
            try:
                self.config.project.classes = list(
                    load_config(self.root / CONFIG_NAME).project.classes
                )
            except ExemplarError:  # a file being edited by hand: keep the classes we have
                pass
        return list(self.config.project.classes)

    def _mtime(self) -> int | None:
        try:
            return (self.root / CONFIG_NAME).stat().st_mtime_ns
        except OSError:
            return None

    def meta(self, key: str) -> str | None:
        """A value from the ``meta`` table."""
        with self.db.read() as s:
            return s.scalar(select(Meta.value).where(Meta.key == key))

    @property
    def feature_dim(self) -> int | None:
        """Columns of the feature array (fixed by the first import)."""
        value = self.meta("feature_dim")
        return None if value is None else int(value)

    @property
    def n_rows(self) -> int:
        """Committed feature rows (= imported items)."""
        value = self.meta("n_rows")
        return 0 if value is None else int(value)

    # -- actions (the CLI calls these) -----------------------------------------------------

    def import_(self, path: Path | str, **options: Any) -> ImportReport:
        """Import a folder of images, a CSV/Parquet file, or .npy/.npz (see ``import_path``)."""
        from exemplar.project.importing import import_path

        return import_path(self, Path(path), **options)

    def export(self, path: Path | str, **options: Any) -> int:
        """Export labels with provenance to CSV or JSON; returns the number of rows."""
        from exemplar.project.exporting import export_labels

        return export_labels(self, Path(path), **options)

    def export_objects(self, path: Path | str, fmt: str, **options: Any) -> ObjectsExport:
        """Write the labeled objects as COCO, YOLO, VOC or Label Studio (``export_objects``)."""
        from exemplar.project.exporting import export_objects

        return export_objects(self, Path(path), fmt, **options)

    def run(
        self,
        max_cycles: int | None = None,
        *,
        wait: bool = False,
        on_event: Callable[[str], None] | None = None,
    ) -> RunOutcome:
        """Drive the loop until it stops, waits for labels, or ran ``max_cycles`` cycles.

        The database is checked first (``PRAGMA quick_check`` on SQLite, ~0.1 s per 10^5
        items), so a run never reports success on a damaged file, even when the damage left
        the file's size and time unchanged and the cycle would read only healthy pages.
        """
        from exemplar.loop.engine import LoopEngine

        self.db.quick_check()
        return LoopEngine(self, wait=wait, on_event=on_event).run(max_cycles)

    def status(self) -> dict[str, Any]:
        """Cycle, state, queue, label counts per class, and metric history."""
        from exemplar.project.status import project_status

        return project_status(self)

    def next_item(self, annotator: str) -> LeasedItem | None:
        """Lease the best queued item to ``annotator`` (the same one again if still leased)."""
        from exemplar.store.queue import lease

        return lease(self.db, annotator, lease_seconds=self.config.oracle.lease_seconds)

    def submit_label(
        self,
        entry_id: int,
        annotator: str,
        label: str,
        *,
        idempotency_key: str | None = None,
        seconds: float | None = None,
    ) -> None:
        """Record a human label for a leased queue entry (``seconds``: the time spent on it;
        without it, the time from the lease to this call is recorded)."""
        from exemplar.store.queue import submit

        submit(
            self.db,
            entry_id,
            annotator,
            label,
            classes=self.classes,
            idempotency_key=idempotency_key,
            seconds=seconds,
        )

    def skip_item(self, entry_id: int, annotator: str) -> None:
        """Put a leased item back at the end of the queue (a stream item: back into the
        feed after ``[stream] skip_requeue_after`` other items, or after
        ``[oracle] lease_seconds`` when no other item comes)."""
        from exemplar.project.stream import requeue_after
        from exemplar.store.queue import skip

        after = requeue_after(self, entry_id)
        park = None if after is None else float(self.config.oracle.lease_seconds)
        skip(self.db, entry_id, annotator, requeue_after=after, park_seconds=park)

    def undo_last_label(self, annotator: str) -> UndoneLabel | None:
        """Take back ``annotator``'s newest label still in force (see ``store.queue.undo_last``).

        The label is superseded by an undo marker (append-only history) and the item is
        leased to ``annotator`` again, so ``next_item`` returns it. None if nothing to undo.
        """
        from exemplar.store.queue import undo_last

        return undo_last(self.db, annotator, lease_seconds=self.config.oracle.lease_seconds)

    def import_labels(self, path: Path | str, *, annotator: str | None = None) -> LabelImport:
        """Label items (queued or not) from a CSV/JSON labels file of another tool or person."""
        from exemplar.loop.labels_file import apply_labels_file

        return apply_labels_file(self, Path(path), annotator=annotator)

    def features(self) -> np.ndarray:
        """All committed feature rows, memory-mapped read-only."""
        dim = self.feature_dim
        if dim is None:
            raise ProjectError("the project has no items yet; run `exemplar import` first")
        return self.arrays.features(self.n_rows, dim)
