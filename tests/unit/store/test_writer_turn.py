"""The writer turn of a SQLite database (``Database.write_turn``): reentrant in a thread,
exclusive between threads (a mutex) and between processes (``flock`` on
``<database>.write-lock``), bounded by ``patience``; a no-op on PostgreSQL.

Every wait here is guarded by a timeout, so a deadlock fails a test instead of hanging it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import pytest
from sqlalchemy import select as sql_select
from sqlalchemy import text

from exemplar.store.db import Database, WriterBusy, open_database, sqlite_url
from exemplar.store.schema import Meta

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

#: No wait in these tests should come near this; it only turns a deadlock into a failure.
GUARD_S = 20.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "project.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    database = open_database(sqlite_url(db_path))
    try:
        yield database
    finally:
        database.dispose()


def _in_thread(work: Callable[[], Any], timeout: float = GUARD_S) -> Any:
    """Run ``work`` in a daemon thread; its result, its exception, or a failure on timeout."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"still waiting after {timeout} s: deadlock?")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class _Holder:
    """A thread that enters ``context()`` and stays inside until :meth:`release`."""

    def __init__(self, context: Callable[[], Any]) -> None:
        self._context = context
        self.entered = threading.Event()
        self._release = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self._context():
                self.entered.set()
                self._release.wait(GUARD_S)
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            self.error = exc
            self.entered.set()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self.entered.wait(GUARD_S), "the holder never got in"
        assert self.error is None, self.error
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(GUARD_S)
        assert not self._thread.is_alive(), "the holder did not leave"
        assert self.error is None, self.error

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _take_turn(db: Database, patience: float | None) -> float:
    """Enter and leave the turn with ``patience``; the seconds that took."""
    start = time.monotonic()
    with db.write_turn(patience):
        pass
    return time.monotonic() - start


def _busy(db: Database, patience: float) -> float:
    """Seconds until ``write_turn(patience)`` gave up with WriterBusy (fails if it did not).

    Tried in a thread of its own (this thread may hold no turn), guarded against waiting on.
    """

    def attempt() -> float:
        start = time.monotonic()
        with pytest.raises(WriterBusy), db.write_turn(patience):
            pass
        return time.monotonic() - start

    waited: float = _in_thread(attempt, timeout=GUARD_S / 2)
    return waited


# -- one thread --------------------------------------------------------------------------------


def test_the_turn_is_reentrant_within_a_thread(db: Database) -> None:
    def nested() -> str:
        with db.write_turn(), db.write_turn(), db.write_turn(patience=0):
            # a write transaction takes the turn too: it must not wait for itself
            with db.session() as s:
                s.add(Meta(key="nested", value="yes"))
            with db.session() as s:
                value = s.scalar(sql_select(Meta.value).where(Meta.key == "nested"))
        return str(value)

    assert _in_thread(nested) == "yes"
    # and the turn is free again for everyone afterwards
    assert _in_thread(lambda: _take_turn(db, 0.05)) < GUARD_S


def test_leaving_an_inner_turn_keeps_the_outer_one(db: Database) -> None:
    inner_left = threading.Event()
    outer_done = threading.Event()

    def holder() -> None:
        with db.write_turn():
            with db.write_turn():
                pass
            inner_left.set()
            outer_done.wait(GUARD_S)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    try:
        assert inner_left.wait(GUARD_S)
        _busy(db, 0.05)  # still held by the outer turn
    finally:
        outer_done.set()
        thread.join(GUARD_S)
    assert not thread.is_alive()
    assert _take_turn(db, 1.0) < 1.0


# -- another thread ----------------------------------------------------------------------------


def test_another_thread_holding_the_turn_makes_a_patient_writer_busy(db: Database) -> None:
    with _Holder(db.write_turn) as holder:
        waited = _busy(db, 0.05)
        assert 0.04 <= waited < 5.0
        assert _busy(db, 0) < 5.0  # no patience at all: refused at once
        holder.release()
        assert _take_turn(db, 1.0) < 1.0  # free once the holder left


def test_an_unbounded_writer_waits_for_the_holder_then_writes(db: Database) -> None:
    got_it = threading.Event()

    def writer() -> None:
        with db.session() as s:
            s.add(Meta(key="late", value="1"))
        got_it.set()

    with _Holder(db.write_turn) as holder:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        assert not got_it.wait(0.2)  # still waiting for the holder
        holder.release()
        assert got_it.wait(GUARD_S)
    thread.join(GUARD_S)
    with db.read() as s:
        assert s.scalar(sql_select(Meta.value).where(Meta.key == "late")) == "1"


def test_an_open_write_session_holds_the_turn_but_readers_go_on(db: Database) -> None:
    with db.session() as s:
        s.add(Meta(key="before", value="0"))

    def writing() -> Any:
        return db.session()

    with _Holder(writing):
        _busy(db, 0.05)

        def read() -> str | None:
            with db.read() as s:
                return s.scalar(sql_select(Meta.value).where(Meta.key == "before"))

        # A reader that waited for the turn would wait here until the guard fires.
        assert _in_thread(read, timeout=5.0) == "0"
        with db.read() as s:  # and in this thread too
            assert s.execute(text("SELECT count(*) FROM meta")).scalar_one() >= 1
    assert _take_turn(db, 1.0) < 1.0


# -- another process ---------------------------------------------------------------------------

#: Opens the database, takes the turn, says "held", and leaves when stdin says so (or closes).
_HOLDER_SCRIPT = """
import sys
from pathlib import Path
from exemplar.store.db import open_database, sqlite_url

db = open_database(sqlite_url(Path(sys.argv[1])), create=False)
with db.write_turn():
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
db.dispose()
"""


class _HolderProcess:
    """Another Python process that holds the writer turn of ``path`` until released."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER_SCRIPT, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], GUARD_S)
        if not ready:
            pytest.fail("the holder process said nothing")
        line = self.proc.stdout.readline().strip()
        if not line:
            assert self.proc.stderr is not None
            pytest.fail(f"the holder process failed: {self.proc.stderr.read()}")
        return line

    def __enter__(self) -> Self:
        assert self._line() == "held"
        return self

    def release(self) -> None:
        if self.proc.poll() is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self._line() == "released"
        assert self.proc.wait(GUARD_S) == 0

    def __exit__(self, *_exc: object) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.kill()
        finally:
            self.proc.wait(GUARD_S)
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


def test_another_process_holding_the_turn_makes_a_patient_writer_busy(
    db: Database, db_path: Path
) -> None:
    with _HolderProcess(db_path) as other:
        assert Path(f"{db_path}.write-lock").exists()
        waited = _busy(db, 0.05)
        assert 0.04 <= waited < 5.0
        other.release()
        assert _take_turn(db, 5.0) < 5.0
        with db.session() as s:
            s.add(Meta(key="after", value="1"))


def test_an_unbounded_writer_waits_for_another_process(db: Database, db_path: Path) -> None:
    got_it = threading.Event()

    def writer() -> None:
        with db.write_turn():
            got_it.set()

    with _HolderProcess(db_path) as other:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        assert not got_it.wait(0.3)
        other.release()
        assert got_it.wait(GUARD_S)
        thread.join(GUARD_S)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_the_turn_of_a_killed_process_is_freed(db: Database, db_path: Path) -> None:
    with _HolderProcess(db_path) as other:
        _busy(db, 0.05)
        os.kill(other.proc.pid, signal.SIGKILL)
        other.proc.wait(GUARD_S)
        assert _take_turn(db, 5.0) < 5.0


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_forked_child_takes_the_turn_once_the_parent_releases_it(db: Database) -> None:
    with db.write_turn():
        pass  # the parent has opened its lock file
    holder = _Holder(db.write_turn)
    holder.__enter__()  # a parent thread holds the turn while the process forks
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a copy of a locked mutex would keep it out for ever
        os.close(read_end)
        code = 1
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    with db.write_turn(0.1):
                        code = 0
                        break
                except WriterBusy:
                    continue
        finally:
            os.write(write_end, bytes([code]))
            os._exit(code)
    os.close(write_end)
    time.sleep(0.3)  # the child is trying while the parent holds the turn
    holder.release()
    ready, _, _ = select.select([read_end], [], [], 20)
    assert ready, "the forked child never took the turn"
    assert os.read(read_end, 1) == b"\x00"
    os.close(read_end)
    assert os.waitpid(pid, 0)[1] == 0


def test_recording_a_token_use_does_not_wait_for_a_long_write(db: Database) -> None:
    from exemplar.store.accounts import add_user, create_token, user_for_token

    user = add_user(db, "ann", "annotator", "a long password")
    token = create_token(db, user.id, "script")
    with _Holder(db.write_turn):  # an import or the learner writing for a while
        found = _in_thread(lambda: user_for_token(db, token), timeout=2.0)
    assert found is not None and found.name == "ann"


@pytest.fixture
def pg_db() -> Iterator[Database]:
    for url in fresh_pg_database():
        database = open_database(url)
        try:
            yield database
        finally:
            database.dispose()


def test_postgresql_has_no_writer_turn(pg_db: Database) -> None:
    with pg_db.session() as s:
        s.add(Meta(key="row", value="0"))

    @contextmanager
    def updating() -> Iterator[None]:
        # An open transaction holding a row lock, as another writer's would.
        with pg_db.session() as s:
            s.execute(text("UPDATE meta SET value = '1' WHERE key = 'row'"))
            yield

    with _Holder(updating), _Holder(pg_db.write_turn):
        # Neither the open write transaction nor another thread's "turn" makes it wait.
        assert _take_turn(pg_db, 0) < 5.0
        assert _in_thread(lambda: _take_turn(pg_db, 0), timeout=5.0) < 5.0
        with pg_db.write_turn(patience=0), pg_db.session() as s:
            s.add(Meta(key="other", value="x"))  # another row: no lock to wait for
    with pg_db.read() as s:
        values = {key: value for key, value in s.execute(sql_select(Meta.key, Meta.value))}
    assert values["row"] == "1" and values["other"] == "x"
