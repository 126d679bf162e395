"""Migration 0006 (annotations, items.width/height): an existing project upgrades, data intact.

Runs on SQLite and PostgreSQL: a database is built at revision 0005 with a cycle, items,
labels and a queue, then opened (which upgrades it), then used; and downgraded again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from exemplar.store.annotations import (
    AnnotationIn,
    SubmittedObject,
    add_annotations,
    current_annotations,
    submit_objects,
)
from exemplar.store.db import open_database, sqlite_url
from exemplar.store.labels import current_labels
from exemplar.store.queue import lease

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database, migrate

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CLASSES = ("cat", "dog")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "old.db")
        return
    yield from fresh_pg_database()


def _old_database(url: str) -> None:
    """A database at revision 0005: a cycle, three items, two labels, one queued item."""
    engine = create_engine(url)
    with engine.begin() as conn:
        migrate(conn, "0005")
        conn.execute(
            text(
                "INSERT INTO cycles (id, number, state, seed, strategy, batch_size, metrics, "
                "timings, stopping_state, created_at, updated_at) VALUES "
                "(1, 1, 'label', 7, 'entropy', 2, '{}', '{}', '{}', :now, :now)"
            ),
            {"now": NOW},
        )
        for i in range(3):
            conn.execute(
                text(
                    "INSERT INTO items (id, uid, row, uri, kind, split, file_id, created_at) "
                    "VALUES (:id, :uid, :row, :uri, 'image', 'pool', :fid, :now)"
                ),
                {
                    "id": i + 1,
                    "uid": f"u{i}",
                    "row": i,
                    "uri": f"/d/{i}.png",
                    "fid": f"f{i}",
                    "now": NOW,
                },
            )
        for item_id, label, key in ((1, "cat", "k1"), (2, "dog", None)):
            conn.execute(
                text(
                    "INSERT INTO labels (item_id, label, status, source, annotator, cycle_id, "
                    "idempotency_key, created_at) VALUES "
                    "(:item, :label, 'verified', 'human', 'ann', 1, :key, :now)"
                ),
                {"item": item_id, "label": label, "key": key, "now": NOW},
            )
        conn.execute(
            text(
                "INSERT INTO queue (item_id, cycle_id, slot, strategy, score, rank, status, "
                "attempts, created_at, updated_at) VALUES "
                "(3, 1, 0, 'entropy', 0.5, 0, 'pending', 0, :now, :now)"
            ),
            {"now": NOW},
        )
    engine.dispose()


def test_0005_database_is_upgraded_with_its_data(db_url: str) -> None:
    _old_database(db_url)
    db = open_database(db_url)  # upgrades to the newest revision
    try:
        assert "annotations" in inspect(db.engine).get_table_names()
        item_cols = {c["name"]: c for c in inspect(db.engine).get_columns("items")}
        assert item_cols["width"]["nullable"] and item_cols["height"]["nullable"]
        with db.engine.connect() as conn:
            items = conn.execute(
                text("SELECT id, uid, row, uri, file_id, width, height FROM items ORDER BY id")
            ).all()
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0009"  # and on through curation's, media's and streams' tables
        assert {"curation_operations", "curation_candidates", "media"} <= set(
            inspect(db.engine).get_table_names()
        )
        item_cols = {c["name"] for c in inspect(db.engine).get_columns("items")}
        assert {"media_id", "origin_x", "origin_y", "scale", "frame"} <= item_cols
        annotation_cols = {c["name"] for c in inspect(db.engine).get_columns("annotations")}
        assert {"track_id", "keyframe"} <= annotation_cols
        assert [tuple(r) for r in items] == [
            (i + 1, f"u{i}", i, f"/d/{i}.png", f"f{i}", None, None) for i in range(3)
        ]
        with db.read() as s:
            labels = current_labels(s)
        assert [(x.item_id, x.label, x.status) for x in labels] == [
            (1, "cat", "verified"),
            (2, "dog", "verified"),
        ]
        # The old queue entry and cycle still work: the item is labeled with objects.
        leased = lease(db, "ann", lease_seconds=60)
        assert leased is not None and leased.item_id == 3
        with db.session() as s:
            add_annotations(
                s,
                3,
                [AnnotationIn("dog", (1, 1, 9, 9))],
                status="proposed",
                source="model",
                classes=CLASSES,
            )
        done = submit_objects(
            db,
            leased.entry_id,
            "ann",
            [SubmittedObject(None, "cat", (0, 0, 4, 4))],
            classes=CLASSES,
            idempotency_key="k1-objects",
        )
        assert (done.drawn, done.rejected, done.label.cycle_id) == (1, 1, 1)
        with db.read() as s:
            current = current_annotations(s, [3])
        assert sorted((a.label, a.status) for a in current) == [
            ("cat", "verified"),
            ("dog", "rejected"),
        ]
    finally:
        db.dispose()


def test_downgrade_to_0005_keeps_items_and_labels(db_url: str) -> None:
    _old_database(db_url)
    db = open_database(db_url)
    with db.session() as s:
        add_annotations(
            s,
            1,
            [AnnotationIn("cat", (1, 1, 9, 9))],
            status="verified",
            source="human",
            classes=CLASSES,
        )
    db.dispose()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        migrate(conn, "0005", down=True)
    try:
        tables = set(inspect(engine).get_table_names())
        item_cols = [c["name"] for c in inspect(engine).get_columns("items")]
        with engine.connect() as conn:
            items = conn.execute(text("SELECT uri, file_id FROM items ORDER BY id")).all()
            labels = conn.execute(text("SELECT item_id, label FROM labels ORDER BY id")).all()
    finally:
        engine.dispose()
    assert "annotations" not in tables
    assert "width" not in item_cols and "height" not in item_cols
    assert [tuple(i) for i in items] == [(f"/d/{i}.png", f"f{i}") for i in range(3)]
    assert [tuple(x) for x in labels] == [(1, "cat"), (2, "dog")]
    # And up again: the open upgrades the downgraded database once more.
    db = open_database(db_url)
    try:
        with db.read() as s:
            assert current_annotations(s) == []
            assert len(current_labels(s)) == 2
    finally:
        db.dispose()


def test_models_match_the_migrations(db_url: str) -> None:
    """The ORM models (Annotation, Item.width/height) and migration 0006 do not drift apart."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from exemplar.store.schema import Base

    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        indexes = {
            ix["name"]: ix["column_names"] for ix in inspect(db.engine).get_indexes("annotations")
        }
        assert indexes["ix_annotations_object_id"] == ["object_id"]
        assert indexes["ix_annotations_item_id"] == ["item_id"]
    finally:
        db.dispose()
