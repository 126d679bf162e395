"""Migration 0005 (sessions, token expiry and revocation, items.file_id), data intact.

Runs on SQLite and PostgreSQL: a database is built at revision 0004 with a user, a token
and an item, then opened (which upgrades it), then used; and downgraded again.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from exemplar.store.accounts import create_session, session_user, user_for_token
from exemplar.store.db import open_database, sqlite_url

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database, migrate

NOW = datetime(2030, 1, 1, tzinfo=UTC)
TOKEN = "exm_made-before-0005"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "old.db")
        return
    yield from fresh_pg_database()


def _old_database(url: str) -> None:
    """A database at revision 0004 with a user, their API token and an image item."""
    engine = create_engine(url)
    with engine.begin() as conn:
        migrate(conn, "0004")
        conn.execute(
            text(
                "INSERT INTO users (id, name, role, password_hash, created_at, active) "
                "VALUES (1, 'ann', 'annotator', 'x', :now, :yes)"
            ),
            {"now": NOW, "yes": True},
        )
        conn.execute(
            text(
                "INSERT INTO api_tokens (id, user_id, token_hash, name, created_at) "
                "VALUES (3, 1, :digest, 'ci', :now)"
            ),
            {"digest": hashlib.sha256(TOKEN.encode()).hexdigest(), "now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO items (id, uid, row, uri, kind, split, created_at) "
                "VALUES (1, 'u1', 0, '/data/a.png', 'image', 'pool', :now)"
            ),
            {"now": NOW},
        )
    engine.dispose()


def test_0004_database_is_upgraded_in_place(db_url: str) -> None:
    _old_database(db_url)
    db = open_database(db_url)  # upgrades to the newest revision
    try:
        columns = {c["name"]: c for c in inspect(db.engine).get_columns("api_tokens")}
        assert columns["expires_at"]["nullable"] and columns["revoked_at"]["nullable"]
        session_cols = {c["name"]: c for c in inspect(db.engine).get_columns("sessions")}
        assert set(session_cols) == {
            "id",
            "user_id",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_seen_at",
        }
        assert inspect(db.engine).get_pk_constraint("sessions")["constrained_columns"] == ["id"]
        indexes = {
            ix["name"]: ix["column_names"] for ix in inspect(db.engine).get_indexes("sessions")
        }
        assert indexes["ix_sessions_user_id"] == ["user_id"]
        fks = inspect(db.engine).get_foreign_keys("sessions")
        assert [(f["referred_table"], f["constrained_columns"]) for f in fks] == [
            ("users", ["user_id"])
        ]
        with db.engine.connect() as conn:
            item = conn.execute(text("SELECT uri, kind, file_id FROM items")).one()
            token = conn.execute(text("SELECT name, expires_at, revoked_at FROM api_tokens")).one()
        assert tuple(item) == ("/data/a.png", "image", None)
        assert tuple(token) == ("ci", None, None)
        # The token made before the upgrade still works: no expiry, not revoked.
        user = user_for_token(db, TOKEN)
        assert user is not None and user.name == "ann"
        secret = create_session(db, 1, ttl_seconds=60)
        assert session_user(db, secret) is not None
    finally:
        db.dispose()


def test_downgrade_to_0004_keeps_users_tokens_and_items(db_url: str) -> None:
    _old_database(db_url)
    db = open_database(db_url)
    create_session(db, 1, ttl_seconds=60)
    db.dispose()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        migrate(conn, "0004", down=True)
    try:
        tables = set(inspect(engine).get_table_names())
        token_cols = [c["name"] for c in inspect(engine).get_columns("api_tokens")]
        item_cols = [c["name"] for c in inspect(engine).get_columns("items")]
        with engine.connect() as conn:
            tokens = conn.execute(text("SELECT id, name FROM api_tokens")).all()
            items = conn.execute(text("SELECT uri FROM items")).all()
    finally:
        engine.dispose()
    assert "sessions" not in tables
    assert "expires_at" not in token_cols and "revoked_at" not in token_cols
    assert "file_id" not in item_cols
    assert [tuple(t) for t in tokens] == [(3, "ci")]
    assert [tuple(i) for i in items] == [("/data/a.png",)]


def test_models_match_the_migrations(db_url: str) -> None:
    """The ORM models (schema.py, accounts.py) and the migrated schema do not drift apart."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from exemplar.store.schema import Base

    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        db.dispose()
