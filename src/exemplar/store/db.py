"""Database engines and migrations: SQLite (WAL) by default, PostgreSQL by URL.

``open_database`` creates or upgrades the schema with Alembic, so a project made by an
older exemplar opens with a newer one; a database from a *newer* exemplar is refused
with a clear error instead of being modified.

A damaged SQLite file is reported as :class:`~exemplar.errors.DamagedProjectError` (the
file and how to recover), wherever SQLite notices it: every statement's "database disk
image is malformed" or "file is not a database" is translated. A file that may have been
left damaged (written to since its last clean close, or with a write-ahead log left
behind by a process that did not close) gets ``PRAGMA quick_check`` before anything
writes to it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, Dialect, Engine, ExceptionContext, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from exemplar.errors import DamagedProjectError, EmptyDatabaseError, StoreError

try:  # POSIX only; elsewhere SQLite's busy timeout alone arbitrates between writers.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Database",
    "WriterBusy",
    "bind_time",
    "damaged_database",
    "id_chunks",
    "is_damage",
    "open_database",
    "pyformat",
    "read_time",
    "safe_url",
    "sqlite_url",
]

#: SQLite waits this long for a competing writer before raising "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


class WriterBusy(Exception):
    """Another writer kept the turn longer than the caller's patience (``write_turn``)."""


class _WriterTurn:
    """The right to write one SQLite file: a mutex for this process's threads, then an OS
    file lock (``<database>.write-lock``) shared with every other process.

    SQLite's busy handler makes a writer that finds the database locked sleep with growing
    back-off (1, 2, 5, 10, ... 100 ms), so under contention the write lock often sits idle
    while waiters sleep. Writers that queue on the file lock first are handed the turn at
    once instead. The kernel drops the file lock of a process that dies. The turn is
    reentrant within a thread, so a function that takes it may call another that does.
    """

    def __init__(self, lock_path: str | None) -> None:
        self._lock_path = lock_path
        self._after_fork()
        _TURNS.add(self)

    def _after_fork(self) -> None:
        # A forked child starts with no turn: a fresh mutex, and its own open file (flock
        # locks belong to the open file, which the child would share with its parent).
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._depth = threading.local()

    def _file(self) -> int | None:
        if self._lock_path is None or fcntl is None:
            return None
        if self._fd is None:
            try:
                self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:  # read-only directory: SQLite's busy handler alone
                self._lock_path = None
                return None
        return self._fd

    @contextmanager
    def hold(self, patience: float | None = None) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        if depth:  # this thread holds the turn already
            self._depth.n = depth + 1
            try:
                yield
            finally:
                self._depth.n = depth
            return
        deadline = None if patience is None else time.monotonic() + patience
        if not self._mutex.acquire(timeout=-1 if patience is None else patience):
            raise WriterBusy(f"another thread of this process wrote for over {patience} s")
        try:
            fd = self._file()
            if fd is not None:
                self._lock_file(fd, deadline, patience)
            self._depth.n = 1
            try:
                yield
            finally:
                self._depth.n = 0
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    @staticmethod
    def _lock_file(fd: int, deadline: float | None, patience: float | None) -> None:
        if deadline is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        # flock has no timeout: poll. A turn of the labeling server lasts about 0.1-0.3 ms.
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise WriterBusy(f"another process wrote for over {patience} s") from exc
                time.sleep(POLL_SECONDS)


#: How often a writer with limited patience looks whether the turn is free.
POLL_SECONDS = 0.0002
_TURNS: weakref.WeakSet[_WriterTurn] = weakref.WeakSet()


def _reset_turns_in_child() -> None:
    for turn in list(_TURNS):
        turn._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_turns_in_child)


class Database:
    """An engine plus a session factory, with the schema at the newest migration."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readers = sessionmaker(
            engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )
        self.path = _sqlite_file(engine)
        self._turn = _WriterTurn(f"{self.path}.write-lock" if self.path else None)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def write_turn(self, patience: float | None = None) -> Iterator[None]:
        """Hold the right to write (SQLite; a no-op on PostgreSQL, whose rows lock).

        Every write transaction of this package runs inside it, so writers of one SQLite
        file, in any process, take turns on an OS file lock instead of meeting SQLite's
        sleeping busy handler. Reentrant within a thread. ``patience`` bounds the wait in
        seconds (None: wait as long as it takes).

        Raises
        ------
        WriterBusy
            Another thread or process held the turn for longer than ``patience``.
        """
        if self.engine.dialect.name != "sqlite":
            yield
            return
        with self._turn.hold(patience):
            yield

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction in the writer turn: committed on success, else rolled back.

        On SQLite it takes the write lock at BEGIN (``BEGIN IMMEDIATE``), so concurrent
        writers queue instead of failing when they upgrade a read lock. Do not open a
        second session while holding one in the same thread.
        """
        with self.write_turn(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction that does not block writers (deferred BEGIN on SQLite)."""
        with self._readers() as session, session.begin():
            yield session

    def quick_check(self) -> None:
        """Run SQLite's ``PRAGMA quick_check`` (a no-op on PostgreSQL) in a read transaction.

        It reads every page and checks the b-trees and records (not that indexes match
        their tables): about 0.07-0.1 s for a project of 10^5 items (26 MB).

        Raises
        ------
        DamagedProjectError
            The check found damage; the message names the file and how to recover.
        """
        if self.engine.dialect.name != "sqlite":
            return
        reader = self.engine.execution_options(sqlite_begin="DEFERRED")
        with reader.connect() as conn:
            rows = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check(100)").all()]
        if rows != ["ok"]:
            problems = [
                line.strip()
                for row in rows
                for line in row.splitlines()
                if line.strip() and not line.startswith("***")
            ]
            more = f"; and {len(problems) - 2} more" if len(problems) > 2 else ""
            detail = "; ".join(problems[:2]) + more
            _forget_clean(self.path)
            raise damaged_database(self.path, f"PRAGMA quick_check: {detail}")

    def dispose(self) -> None:
        """Close every pooled connection.

        When that closed the last connection to a SQLite file (its write-ahead log is
        gone) and no damage was seen, the file is marked as cleanly closed, so the next
        open skips the integrity check.
        """
        self.engine.dispose()
        if self.path is not None:
            _mark_clean(self.path)


def open_database(url: str, *, create: bool = True) -> Database:
    """Connect to ``url``, then create the schema or upgrade it to the newest revision.

    A SQLite file that may be damaged (see :func:`needs_check`) is checked with
    ``PRAGMA quick_check`` first, before any migration writes to it.

    Raises
    ------
    EmptyDatabaseError
        ``create`` is false and the database holds no exemplar schema.
    DamagedProjectError
        The SQLite file is corrupt or not a database.
    StoreError
        If the server is unreachable, or the database was written by a newer exemplar.
    """
    engine = _engine(url)
    try:
        database = Database(engine)
        if database.path is not None and needs_check(database.path):
            database.quick_check()
        with engine.begin() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            script = ScriptDirectory.from_config(_alembic_config())
            head = script.get_current_head()
            if current is not None and script.get_revision(current) is None:
                raise StoreError(
                    f"the database at {safe_url(url)} has schema revision {current}, which this "
                    "version of exemplar does not know; upgrade exemplar to open it"
                )
            if current is None and not create:
                raise EmptyDatabaseError(
                    f"the database at {safe_url(url)} holds no exemplar tables"
                )
            if current != head:
                cfg = _alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    except OperationalError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database {safe_url(url)}: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"database error at {safe_url(url)}: {exc}") from exc
    except BaseException:
        engine.dispose()
        raise
    return database


# -- a damaged SQLite file ---------------------------------------------------------------------

#: SQLite's primary result codes for a corrupt file and for a file that is not a database.
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
#: Beside ``exemplar.db``: the file's size, mtime and inode when it was last closed cleanly.
CLEAN_SUFFIX = ".clean"


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` (sqlite3's error, or SQLAlchemy's wrapper of one) reports a damaged file.

    True for "database disk image is malformed" (``SQLITE_CORRUPT``) and "file is not a
    database" (``SQLITE_NOTADB``); false for locks, I/O errors, constraint violations.
    """
    orig = getattr(exc, "orig", None) or exc
    if not isinstance(orig, sqlite3.DatabaseError):
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    message = str(orig)
    return "malformed" in message or "not a database" in message


def damaged_database(path: str | None, detail: str) -> DamagedProjectError:
    """The error for a damaged SQLite file: what SQLite said, and the two ways to recover."""
    name = Path(path).name if path else "exemplar.db"
    where = path or "the project's SQLite database"
    return DamagedProjectError(
        f"the project database {where} is damaged ({detail}). Stop every exemplar process "
        f"using it, keep a copy of the damaged file, then either restore {name} from a backup "
        f"(and remove {name}-wal and {name}-shm beside it), or salvage what SQLite can still "
        f'read: `sqlite3 {name} ".recover" | sqlite3 recovered.db`, then replace {name} with '
        "recovered.db"
    )


def _sqlite_file(engine: Engine) -> str | None:
    """The path of the engine's SQLite file, or None (PostgreSQL, in-memory)."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def _stamp(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


def needs_check(path: str) -> bool:
    """Whether the SQLite file at ``path`` may be damaged and deserves ``PRAGMA quick_check``.

    True when a write-ahead log (``-wal``) holds frames (a process has it open, or one did
    not close: an unclean shutdown), or when the file was not closed cleanly by exemplar
    since it last changed (size, mtime or inode differ from the ``.clean`` stamp, or there
    is none).
    """
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return True
    try:
        recorded = Path(path + CLEAN_SUFFIX).read_text().strip()
    except OSError:
        return True
    return recorded != _stamp(path)


def _mark_clean(path: str) -> None:
    if path in _DAMAGED or Path(f"{path}-wal").exists():
        return  # damaged, or another connection (maybe another process) still writes
    stamp = _stamp(path)
    if stamp is None:
        return
    try:
        Path(path + CLEAN_SUFFIX).write_text(stamp + "\n")
    except OSError:  # a read-only folder: the next open checks again
        pass


def _forget_clean(path: str | None) -> None:
    if path is None:
        return
    _DAMAGED.add(path)
    try:
        Path(path + CLEAN_SUFFIX).unlink(missing_ok=True)
    except OSError:
        pass


#: SQLite files of this process found damaged: never stamped clean.
_DAMAGED: set[str] = set()


def _report_damage(ctx: ExceptionContext) -> None:
    """``handle_error``: a statement that met a damaged SQLite file raises the clear error."""
    if is_damage(ctx.original_exception):
        path = _sqlite_file(ctx.engine) if ctx.engine is not None else None
        _forget_clean(path)
        raise damaged_database(path, str(ctx.original_exception)) from ctx.original_exception


#: Connections each process keeps open. The labeling server runs up to 40 requests at once
#: per process (its thread pool); with SQLAlchemy's default of 5 kept (+10 opened and
#: closed again on demand), busy servers kept opening connections, each a server-side fork
#: on PostgreSQL. 16 + 8 per process stays well inside PostgreSQL's default 100 connections
#: for a few web workers.
POOL_SIZE = 16
POOL_OVERFLOW = 8


def _engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        event.listen(engine, "handle_error", _report_damage)
    else:
        event.listen(engine.pool, "checkin", _note_checkin)
        event.listen(engine.pool, "checkout", _ping_if_idle)
    return engine


#: A pooled server connection idle longer than this is tested before use (a restarted
#: server closed it). SQLAlchemy's ``pool_pre_ping`` tests every checkout: one more round
#: trip for each of the server's requests, and most of a short read's time.
PING_AFTER_IDLE_S = 10.0


def _note_checkin(_dbapi_conn: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    if time.monotonic() - record.info.get("checked_in", 0.0) < PING_AFTER_IDLE_S:
        return
    try:
        cur = dbapi_conn.cursor()
        cur.execute("SELECT 1")
        cur.close()
        dbapi_conn.rollback()
    except Exception as exc:  # any failure means "reconnect"
        raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide when transactions start (see _begin_immediate).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a process crash (kill -9); only an OS crash or
    # power loss can roll back the last commits. FULL would fsync every commit.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Writers take the write lock at BEGIN, so two writers never deadlock upgrading read
    # locks; readers (Database.read) begin deferred and never block anyone in WAL mode.
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


# -- plain SQL on the driver's connection (the hot paths: store.queue, store.labels) ----------


@cache
def _time_processors(dialect: Dialect) -> tuple[Any, Any]:
    impl = DateTime(timezone=True).dialect_impl(dialect)
    return impl.bind_processor(dialect), impl.result_processor(dialect, None)


def bind_time(dialect: Dialect, value: datetime) -> Any:
    """An aware UTC datetime as the driver takes it (SQLite: SQLAlchemy's text format)."""
    bind, _ = _time_processors(dialect)
    return value if bind is None else bind(value)


def read_time(dialect: Dialect, value: Any) -> datetime:
    """A datetime column value from the driver as an aware UTC datetime."""
    _, result = _time_processors(dialect)
    value = value if result is None else result(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def pyformat(sql: str) -> str:
    """``:name`` placeholders (sqlite3's named style) as psycopg's ``%(name)s``."""
    return re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", sql)


def _alembic_config() -> Config:
    cfg = Config()
    location = resources.files("exemplar.store") / "migrations"
    cfg.set_main_option("script_location", str(location))
    return cfg


def safe_url(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for messages
        return "<invalid url>"


def id_chunks(values: Sequence[int], size: int = 500) -> list[list[int]]:
    """``values`` in lists of at most ``size``: an ``IN (...)`` per list stays far below
    PostgreSQL's 65,535 bind parameters (and SQLite's limit) however many ids there are."""
    values = list(values)
    return [values[i : i + size] for i in range(0, len(values), size)]
