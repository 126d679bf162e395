"""Migration 0004 rebuilds the queue's rank index as (status, rank, id), data intact."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from exemplar.store.db import open_database, sqlite_url
from exemplar.store.queue import lease

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "old.db")
        return
    yield from fresh_pg_database()


def _rank_index(url: str) -> list[str | None]:
    engine = create_engine(url)
    try:
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("queue")}
    finally:
        engine.dispose()
    return indexes["ix_queue_status_rank"]


def test_upgrade_adds_id_to_the_rank_index_and_keeps_the_queue(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        migrate(conn, "0003")
        conn.execute(
            text(
                "INSERT INTO items (id, uid, row, uri, kind, split, created_at) "
                "VALUES (1, 'u1', 0, 'mem://1', 'features', 'pool', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO queue (id, item_id, cycle_id, rank, status, attempts, slot, "
                "created_at, updated_at) "
                "VALUES (5, 1, NULL, 0, 'pending', 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    assert _rank_index(db_url) == ["status", "rank"]

    db = open_database(db_url)  # upgrades to the newest revision
    try:
        assert _rank_index(db_url) == ["status", "rank", "id"]
        leased = lease(db, "ann", lease_seconds=60)
        assert leased is not None and leased.entry_id == 5
    finally:
        db.dispose()

    engine = create_engine(db_url)
    with engine.begin() as conn:
        migrate(conn, "0003", down=True)
    engine.dispose()
    assert _rank_index(db_url) == ["status", "rank"]
