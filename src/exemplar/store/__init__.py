"""The project store: database (SQLite or PostgreSQL) and memory-mapped arrays."""

from exemplar.store.db import Database, open_database, sqlite_url

__all__ = ["Database", "open_database", "sqlite_url"]
