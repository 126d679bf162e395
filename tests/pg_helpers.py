"""PostgreSQL for tests: the test server, a fresh database per test, Alembic moves.

PostgreSQL is the server on 127.0.0.1:5432 (trust auth, database ``test``); each test gets
a fresh database created for it and dropped afterwards. Where the server is unreachable
the PostgreSQL half is skipped with the reason, except under CI (``CI`` set), where that
is a failure: CI must exercise PostgreSQL. Test modules import these from here (not from
``conftest``, a name several folders' fixture files share).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Connection

from exemplar.store.db import _alembic_config

__all__ = ["PG_SERVER", "fresh_pg_database", "migrate", "pg_unreachable_reason"]

PG_SERVER = os.environ.get("EXEMPLAR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_unreachable_reason() -> str | None:
    """None if the PostgreSQL test server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_SERVER, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot test PostgreSQL"
        return f"PostgreSQL not reachable at {PG_SERVER}: {exc}"


def fresh_pg_database() -> Iterator[str]:
    """Create a uniquely named database, yield its SQLAlchemy URL, then drop it."""
    reason = pg_unreachable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the PostgreSQL tests)")
        pytest.skip(reason)
    import psycopg

    name = f"ex_{uuid.uuid4().hex}"
    with psycopg.connect(PG_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(conn: Connection, revision: str, *, down: bool = False) -> None:
    """Move the database of ``conn`` to Alembic ``revision`` (upgrade, or downgrade)."""
    cfg = _alembic_config()
    cfg.attributes["connection"] = conn
    (command.downgrade if down else command.upgrade)(cfg, revision)
