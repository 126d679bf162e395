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


@pytest.fixture(autouse=True)
def _no_leftover_running_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Let a test start its own event loop after a browser test ran in the same worker.

    Playwright's sync API (the session's ``browser``, tests/e2e) leaves its event loop
    marked as running in the worker's main thread between its calls, so a later test of the
    same xdist worker that calls ``asyncio.run`` would be refused. Between Playwright's
    calls that loop is idle: for a test that does not use the browser, the mark is lifted,
    and put back afterwards.
    """
    import asyncio.events

    leftover = asyncio.events._get_running_loop()
    if leftover is None or "browser" in request.fixturenames:
        yield
        return
    asyncio.events._set_running_loop(None)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(leftover)
