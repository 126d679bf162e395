"""Pooled PostgreSQL connections: tested after idling, replaced when the server closed them."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from exemplar.store import db as db_module
from exemplar.store.db import open_database
from pg_helpers import PG_SERVER, fresh_pg_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_pg_database()


def _backend_pid(database: db_module.Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_the_server_closed_is_replaced_after_idling(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = open_database(pg_url)
    try:
        database.engine.dispose()  # one fresh pooled connection from here on
        first = _backend_pid(database)
        assert _backend_pid(database) == first  # reused from the pool, no reconnect
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)  # it has idled "long enough"
        second = _backend_pid(database)  # the ping fails, the pool connects afresh
        assert second != first
    finally:
        database.dispose()


def test_a_connection_used_a_moment_ago_is_not_tested(pg_url: str) -> None:
    database = open_database(pg_url)
    try:
        database.engine.dispose()
        first = _backend_pid(database)
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        # Checked in a moment ago, so used without a test round trip: the dead connection
        # surfaces as one error (the price of no extra round trip per request) ...
        with pytest.raises(Exception, match="terminat|closed|connection"):
            _backend_pid(database)
        # ... and the pool, told it was a disconnect, connects afresh.
        assert _backend_pid(database) != first
    finally:
        database.dispose()
