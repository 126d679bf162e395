"""The interactive API docs (``/api/v1/docs``) in a real browser, under the app's CSP.

Swagger UI used to come from a CDN, which the app's own ``default-src 'self'`` policy
blocked: the page stayed blank. It is vendored now (``static/vendor/swagger-ui*``), and its
inline start script is allowed by its hash on that page only. Debian's chromium through
Playwright (``conftest.py``), like the labeling page tests; skipped where either is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from exemplar.server import create_app
from loop_helpers import make_project
from uvicorn_server import serve

pytestmark = pytest.mark.e2e

TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("docs") / "proj"
    with make_project(root, oracle="human", n=50):
        pass
    with serve(create_app(root)) as url:
        yield url


def test_swagger_ui_renders_the_operations_under_the_csp(base_url: str, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    console: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{base_url}/api/v1/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=TIMEOUT_S * 1000)
    paths: Any = page.eval_on_selector_all(
        ".opblock-summary-path", "els => els.map(e => e.dataset.path || e.textContent)"
    )
    context.close()
    assert "/api/v1/items/next" in paths and "/api/v1/session" in paths, paths
    blocked = [m for m in console if "Content Security Policy" in m or "Refused" in m]
    assert not blocked, blocked
    assert not [m for m in console if m.startswith(("error", "page error"))], console
    origin = urlsplit(base_url).netloc
    foreign = [u for u in requests if urlsplit(u).scheme != "data" and urlsplit(u).netloc != origin]
    assert not foreign, foreign
