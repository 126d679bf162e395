"""The browser every end-to-end test drives: Debian's chromium through Playwright.

Playwright never downloads a browser here; it launches the system's ``/usr/bin/chromium``
(installed by ``.ci/chromium``). Where chromium or Playwright is missing, each browser test
skips with the reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless chromium for the whole session (each test opens its own context)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) "
            "to run the browser tests"
        )
    try:
        sync_api = importlib.import_module("playwright.sync_api")
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    try:
        playwright = sync_api.sync_playwright().start()
    except Exception as exc:  # noqa: BLE001 - any failure means "no browser here"
        pytest.skip(f"playwright could not start: {exc}")
    try:
        try:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
            )
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"playwright could not launch {CHROMIUM}: {exc}")
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
