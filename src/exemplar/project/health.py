"""A project whose database is gone or empty while its data files remain (never start over
silently on top of them).

``Project.open`` never creates the schema; only ``Project.init`` does. If ``exemplar.db``
is missing or 0 bytes, or the database holds no exemplar tables, while ``features.f32``,
``models/`` or ``arrays/`` are still in the folder, the items, labels and cycles that
those files belong to were lost with the database: opening stops with
:class:`~exemplar.errors.DamagedProjectError`, naming the files found and how to recover.
"""

from __future__ import annotations

from pathlib import Path

from exemplar.errors import DamagedProjectError, ProjectError

__all__ = ["check_database_file", "data_files", "missing_schema_error"]

#: What a project folder holds besides its config and database (see docs/project.md).
DATA_FILES = ("features.f32",)
DATA_DIRS = ("models", "arrays")


def data_files(root: Path) -> list[str]:
    """The project's data files present in ``root``, for messages: ``["features.f32 (2.3 MB)",
    "models/ (3 files)"]``."""
    found: list[str] = []
    for name in DATA_FILES:
        path = root / name
        if path.is_file():
            found.append(f"{name} ({_size(path.stat().st_size)})")
    for name in DATA_DIRS:
        path = root / name
        if path.is_dir():
            n = sum(1 for p in path.rglob("*") if p.is_file())
            if n:
                found.append(f"{name}/ ({n} file{'s' if n != 1 else ''})")
    return found


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def check_database_file(root: Path, db_path: Path) -> None:
    """Refuse to open a project whose SQLite file is missing or empty.

    A write-ahead log that holds frames beside a 0-byte file is left for SQLite to read.

    Raises
    ------
    DamagedProjectError
        The file is missing or empty and the project's data files remain.
    ProjectError
        The file is missing or empty and there are no data files either.
    """
    wal = Path(f"{db_path}-wal")
    if db_path.exists() and (db_path.stat().st_size > 0 or (wal.exists() and wal.stat().st_size)):
        return
    state = "is missing" if not db_path.exists() else "is empty (0 bytes)"
    raise _lost(root, f"the project database {db_path} {state}", db_path.name)


def missing_schema_error(root: Path, where: str, db_name: str) -> ProjectError:
    """The error for a database that holds no exemplar tables (``where``: its file or URL)."""
    return _lost(root, f"the project database {where} holds no exemplar tables", db_name)


def _lost(root: Path, what: str, db_name: str) -> ProjectError:
    found = data_files(root)
    if found:
        return DamagedProjectError(
            f"{what}, but the project's data files are still in {root}: {', '.join(found)}. "
            "The items, labels and cycles they belong to were in that database, so exemplar "
            f"will not start over on top of them. To recover, restore {db_name} from a backup "
            "(or set database_url in exemplar.toml back to the right database). To start "
            "over instead, move the data files, the database and exemplar.toml out of the "
            "folder, then run `exemplar init` again"
        )
    return ProjectError(
        f"{what}, and {root} holds no data files: the project was never imported into, or "
        "its files were moved. Restore the database from a backup, or start over: move "
        "exemplar.toml out of the folder and run `exemplar init` again"
    )
