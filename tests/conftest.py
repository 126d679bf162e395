"""Shared fixtures: every store and loop test runs on SQLite and on a real PostgreSQL
(the helpers live in ``pg_helpers``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The CLI's rich consoles take their width from COLUMNS when they are created (on import);
# xdist workers have no terminal, so tests that read tables set one width for every worker.
os.environ.setdefault("COLUMNS", "200")

from pg_helpers import fresh_pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``""`` for a project's default SQLite file, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield ""
        return
    yield from fresh_pg_database()
