"""A project whose database was emptied, deleted or corrupted is reported, never papered over.

Defect 1: a 0-byte (or missing) ``exemplar.db`` next to the project's data files was
silently recreated as an empty schema, so ``status`` said 0 items with exit code 0.
Defect 3: garbage in the middle of the file made ``status``/``export`` print "internal
error" with an SQL dump, and ``run`` exit 0 saying it stopped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.cli.main import app
from exemplar.errors import DamagedProjectError, ProjectError
from exemplar.project import Project
from exemplar.project.config import CONFIG_NAME, load_config, save_config
from exemplar.store.db import CLEAN_SUFFIX, damaged_database, is_damage, needs_check
from loop_helpers import make_project
from pg_helpers import fresh_pg_database

runner = CliRunner()
ENV = {"COLUMNS": "400"}


@pytest.fixture(scope="module")
def ran_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated digits project that ran to its budget (items, labels, cycles, models)."""
    root = tmp_path_factory.mktemp("ran") / "proj"
    with make_project(root, budget=40, n=300) as project:
        project.run()
    return root


@pytest.fixture
def project(ran_project: Path, tmp_path: Path) -> Path:
    """A fresh copy of the ran project (each test may damage it)."""
    root = tmp_path / "proj"
    shutil.copytree(ran_project, root)
    return root


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=ENV)
    return result.exit_code, result.output


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- defect 1: a missing or empty database -----------------------------------------------------


def test_truncated_database_is_refused_and_never_recreated(project: Path) -> None:
    db = project / "exemplar.db"
    open(db, "w").close()  # truncated to 0 bytes
    with pytest.raises(DamagedProjectError) as info:
        Project.open(project)
    message = str(info.value)
    assert "is empty (0 bytes)" in message and str(db) in message
    for name in ("features.f32", "models/", "arrays/"):
        assert name in message
    assert "restore exemplar.db from a backup" in message and "exemplar init" in message
    assert db.stat().st_size == 0  # no schema was written into it


def test_truncated_database_through_the_cli(project: Path) -> None:
    db = project / "exemplar.db"
    open(db, "w").close()
    for args in (["status"], ["run"], ["export", str(project.parent / "out.csv")]):
        code, out = _cli(*args, "-p", str(project))
        assert code == 2, out
        assert "is empty (0 bytes)" in out and "features.f32" in out, out
        assert "internal error" not in out and "Traceback" not in out
        assert db.stat().st_size == 0
    assert not (project.parent / "out.csv").exists()


def test_deleted_database_is_refused_and_not_created(project: Path) -> None:
    db = project / "exemplar.db"
    db.unlink()
    code, out = _cli("status", "-p", str(project))
    assert code == 2 and "is missing" in out and "models/" in out, out
    assert not db.exists()


def test_missing_database_without_data_files_is_an_error_too(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    Project.init(root, ["a", "b"]).close()
    (root / "exemplar.db").unlink()
    with pytest.raises(ProjectError, match="holds no data files") as info:
        Project.open(root)
    assert not isinstance(info.value, DamagedProjectError)
    assert not (root / "exemplar.db").exists()


def test_a_database_without_exemplar_tables_is_refused(project: Path) -> None:
    db = project / "exemplar.db"
    db.unlink()
    with sqlite3.connect(db) as conn:  # some other SQLite file in its place
        conn.execute("CREATE TABLE notes (x TEXT)")
    conn.close()
    with pytest.raises(DamagedProjectError, match="holds no exemplar tables"):
        Project.open(project)
    with sqlite3.connect(db) as conn:  # no schema was created in it
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["notes"]


def test_an_empty_postgresql_database_is_refused(tmp_path: Path) -> None:
    urls = fresh_pg_database()
    first = next(urls)
    second_gen = fresh_pg_database()
    second = next(second_gen)
    try:
        root = tmp_path / "pg"
        make_project(root, database_url=first, n=100).close()
        config = load_config(root / CONFIG_NAME)
        config.project.database_url = second  # an empty database, e.g. a wrong URL
        save_config(config, root / CONFIG_NAME)
        with pytest.raises(DamagedProjectError, match="holds no exemplar tables") as info:
            Project.open(root)
        assert "features.f32" in str(info.value)
        from sqlalchemy import create_engine, inspect

        engine = create_engine(second)
        assert inspect(engine).get_table_names() == []  # nothing was created there
        engine.dispose()
    finally:
        for gen in (urls, second_gen):
            with pytest.raises(StopIteration):
                next(gen)


# -- defect 3: corruption in the middle of the database ----------------------------------------


def _corrupt_middle(db: Path) -> None:
    """8 KB of garbage at half the file (page-aligned, so whole table pages are hit)."""
    size = db.stat().st_size
    assert size > 16 * 4096  # enough pages that the middle holds table data
    rng = __import__("random").Random(7)
    with open(db, "r+b") as fh:
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(bytes(rng.randrange(256) for _ in range(8192)))


def _corrupt_table(db: Path, table: str) -> None:
    """Garbage over the data pages of ``table`` (found with SQLite's dbstat table), so a
    statement reading it hits them whatever else the schema holds."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [n for (n,) in conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (table,))]
    conn.close()
    assert pages, f"table {table} has no pages"
    rng = __import__("random").Random(7)
    with open(db, "r+b") as fh:
        for page in pages[len(pages) // 2 :]:
            fh.seek((page - 1) * page_size)
            fh.write(bytes(rng.randrange(256) for _ in range(page_size)))


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["export", "OUT"], ["run"], ["label"]],
    ids=["status", "status-json", "export", "run", "label"],
)
def test_corrupt_database_is_reported_by_every_command(project: Path, args: list[str]) -> None:
    db = project / "exemplar.db"
    _corrupt_middle(db)
    before = _digest(db)
    out_file = project.parent / "out.csv"
    args = [str(out_file) if a == "OUT" else a for a in args]
    code, out = _cli(*args, "-p", str(project))
    assert code == 2, out
    assert f"the project database {db} is damaged" in out
    assert "restore exemplar.db from a backup" in out and ".recover" in out
    assert "internal error" not in out and "SELECT" not in out and "Traceback" not in out
    assert "stopped at cycle" not in out
    assert _digest(db) == before  # nothing was written to the damaged file
    assert not (project / ("exemplar.db" + CLEAN_SUFFIX)).exists()
    assert not out_file.exists()


def test_corruption_seen_by_a_statement_is_reported_too(project: Path) -> None:
    """When the open check is skipped (the file looks cleanly closed), the first statement
    that reads a damaged page raises the same error, not SQLAlchemy's."""
    db = project / "exemplar.db"
    Project.open(project).close()  # checked and stamped as cleanly closed
    stat = db.stat()
    _corrupt_table(db, "labels")
    os.utime(db, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, mtime and inode
    assert not needs_check(str(db))
    before = _digest(db)
    code, out = _cli("export", str(project.parent / "out.csv"), "-p", str(project))
    assert code == 2, out
    assert f"the project database {db} is damaged (database disk image is malformed)" in out
    assert "internal error" not in out and "SELECT" not in out
    assert _digest(db) == before
    # Once seen, the file is no longer trusted as cleanly closed: the next open checks it.
    assert needs_check(str(db))
    code, out = _cli("run", "-p", str(project))
    assert code == 2 and "is damaged" in out, out


def test_run_checks_the_database_even_when_it_looks_cleanly_closed(project: Path) -> None:
    """`run` first after damage that kept size, mtime and inode, in a page the loop never
    reads (the users table of a stopped project): still exit 2, never "stopped", exit 0."""
    import sqlite3

    db = project / "exemplar.db"
    Project.open(project).close()
    stat = db.stat()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'users'").fetchone()
    with open(db, "r+b") as fh:
        fh.seek((root[0] - 1) * page_size)
        fh.write(b"\xa5" * page_size)
    os.utime(db, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not needs_check(str(db))
    before = _digest(db)
    code, out = _cli("run", "-p", str(project))
    assert code == 2, out
    assert "damage" in out and "stopped" not in out
    assert _digest(db) == before


def test_garbage_header_is_not_a_database(project: Path) -> None:
    db = project / "exemplar.db"
    with open(db, "r+b") as fh:
        fh.write(b"\xff" * 100)
    with pytest.raises(DamagedProjectError, match="file is not a database"):
        Project.open(project)
    code, out = _cli("status", "-p", str(project))
    assert code == 2 and "is damaged" in out and "internal error" not in out, out


# -- when the open-time check runs ------------------------------------------------------------


@pytest.fixture
def statements(project: Path) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: object, _cur: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    from sqlalchemy.engine import Engine

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def test_quick_check_runs_only_when_the_file_was_not_closed_cleanly(
    project: Path, statements: list[str]
) -> None:
    db = str(project / "exemplar.db")
    marker = Path(db + CLEAN_SUFFIX)
    marker.unlink(missing_ok=True)  # e.g. a project made by an older exemplar
    assert needs_check(db)
    Project.open(project).close()
    assert sum("quick_check" in s for s in statements) == 1
    assert marker.exists() and not needs_check(db)  # the clean close stamped the file
    Project.open(project).close()
    assert sum("quick_check" in s for s in statements) == 1  # no second check
    # A write-ahead log left behind (a process that did not close) asks for a check.
    Path(db + "-wal").write_bytes(b"\0" * 32)
    assert needs_check(db)
    Path(db + "-wal").unlink()
    # So does a change to the file after its clean close.
    os.utime(db, ns=(0, 0))
    assert needs_check(db)


def test_is_damage_tells_corruption_from_other_errors() -> None:
    assert is_damage(sqlite3.DatabaseError("database disk image is malformed"))
    assert is_damage(sqlite3.DatabaseError("file is not a database"))
    assert not is_damage(sqlite3.OperationalError("database is locked"))
    assert not is_damage(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_damage(ValueError("malformed"))
    message = str(damaged_database("/x/exemplar.db", "boom"))
    assert "/x/exemplar.db is damaged (boom)" in message


def test_a_raw_driver_error_of_a_corrupt_file_is_not_an_internal_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The hot paths that use sqlite3's cursor directly get the same one-line error."""
    import typer

    from exemplar.cli.main import one_line_errors

    @one_line_errors
    def command() -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    @one_line_errors
    def bug() -> None:
        raise sqlite3.OperationalError("no such column: x")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 2
    err = capsys.readouterr().err
    assert "is damaged (database disk image is malformed)" in err and "internal error" not in err
    with pytest.raises(typer.Exit) as info:
        bug()
    assert info.value.exit_code == 3  # other driver errors stay internal errors
