"""Alembic environment: runs against the connection exemplar hands it (see store.db.migrate)."""

from __future__ import annotations

from alembic import context

from exemplar.store import accounts  # noqa: F401 - registers the account tables
from exemplar.store.schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` from a developer's shell
    from sqlalchemy import create_engine

    connection = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://").connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
