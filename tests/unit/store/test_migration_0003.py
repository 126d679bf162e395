"""Migration 0003 (queue slots) upgrades a project's database in place, data intact.

Runs on SQLite and PostgreSQL: a database is built at revision 0002 with queued, leased
and labeled items, then opened (which upgrades it), then used with overlap.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from exemplar.store.db import _alembic_config, open_database, sqlite_url
from exemplar.store.queue import enqueue, lease, submit
from exemplar.store.schema import QueueEntry

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database, migrate

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "old.db")
        return
    yield from fresh_pg_database()


def _old_database(url: str) -> None:
    """A database at revision 0002 with a cycle, 3 items, 3 queue entries and a label."""
    engine = create_engine(url)
    with engine.begin() as conn:
        migrate(conn, "0002")
        conn.execute(
            text(
                "INSERT INTO cycles (id, number, state, seed, strategy, batch_size, metrics, "
                "timings, stopping_state, created_at, updated_at) VALUES "
                "(1, 0, 'label', 7, 'random', 3, '{}', '{}', '{}', :now, :now)"
            ),
            {"now": NOW},
        )
        for i in range(3):
            conn.execute(
                text(
                    "INSERT INTO items (id, uid, row, uri, kind, split, created_at) "
                    "VALUES (:id, :uid, :row, :uri, 'features', 'pool', :now)"
                ),
                {"id": i + 1, "uid": f"u{i}", "row": i, "uri": f"mem://{i}", "now": NOW},
            )
        for i, (status, who) in enumerate((("done", "ann"), ("leased", "bob"), ("pending", None))):
            conn.execute(
                text(
                    "INSERT INTO queue (item_id, cycle_id, strategy, score, rank, status, "
                    "annotator, lease_expires, attempts, created_at, updated_at) VALUES "
                    "(:item, 1, 'random', :score, :rank, :status, :who, NULL, :attempts, "
                    ":now, :now)"
                ),
                {
                    "item": i + 1,
                    "score": 0.5 + i,
                    "rank": i,
                    "status": status,
                    "who": who,
                    "attempts": int(who is not None),
                    "now": NOW,
                },
            )
        conn.execute(
            text(
                "INSERT INTO labels (item_id, label, status, source, annotator, cycle_id, "
                "strategy, created_at) VALUES (1, 'a', 'verified', 'human', 'ann', 1, "
                "'random', :now)"
            ),
            {"now": NOW},
        )
    engine.dispose()


def test_0002_database_is_upgraded_in_place(db_url: str) -> None:
    _old_database(db_url)
    db = open_database(db_url)  # upgrades to the newest revision
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT item_id, cycle_id, slot, strategy, score, rank, status, annotator, "
                    "attempts FROM queue ORDER BY item_id"
                )
            ).all()
            labels = conn.execute(text("SELECT item_id, label, annotator FROM labels")).all()
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert [tuple(r) for r in rows] == [
            (1, 1, 0, "random", 0.5, 0, "done", "ann", 1),
            (2, 1, 0, "random", 1.5, 1, "leased", "bob", 1),
            (3, 1, 0, "random", 2.5, 2, "pending", None, 0),
        ]
        assert [tuple(r) for r in labels] == [(1, "a", "ann")]
        assert revision == ScriptDirectory.from_config(_alembic_config()).get_current_head()
        uniques = inspect(db.engine).get_unique_constraints("queue")
        assert {
            "name": "uq_queue_item_cycle_slot",
            "column_names": ["item_id", "cycle_id", "slot"],
        } in [{"name": u["name"], "column_names": u["column_names"]} for u in uniques]
        # The upgraded queue takes more slots of an item, but never the same slot twice.
        with db.session() as s:
            assert enqueue(s, 1, [(3, "random", None)]) == 0  # item 3 is queued already
            s.add(QueueEntry(item_id=3, cycle_id=1, slot=1, rank=2, strategy="random"))
        with pytest.raises(IntegrityError), db.session() as s:
            s.add(QueueEntry(item_id=3, cycle_id=1, slot=1, rank=2, strategy="random"))
        # The old pending entry and the new slot are served to two annotators and settle.
        first = lease(db, "carol", lease_seconds=60)
        second = lease(db, "dave", lease_seconds=60)
        assert first is not None and second is not None
        assert (first.item_id, second.item_id) == (3, 3)
        submit(db, first.entry_id, "carol", "a", classes=["a", "b"])
        submit(db, second.entry_id, "dave", "a", classes=["a", "b"])
        with db.read() as s:
            slots = s.execute(
                select(QueueEntry.slot, QueueEntry.status).where(QueueEntry.item_id == 3)
            ).all()
        assert sorted(tuple(r) for r in slots) == [(0, "done"), (1, "done")]
    finally:
        db.dispose()


def test_downgrade_to_0002_keeps_slot_zero(db_url: str) -> None:
    _old_database(db_url)
    db = open_database(db_url)
    with db.session() as s:
        s.add(QueueEntry(item_id=3, cycle_id=1, slot=1, rank=2, strategy="random"))
    db.dispose()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        migrate(conn, "0002", down=True)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT item_id, status FROM queue ORDER BY item_id")).all()
    columns = [c["name"] for c in inspect(engine).get_columns("queue")]
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "done"), (2, "leased"), (3, "pending")]
    assert "slot" not in columns
