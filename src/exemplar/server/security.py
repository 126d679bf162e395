"""Security pieces of the server: session secret, login rate limit, auth cache, CSRF, the
content security policy and the API docs page under it, and safe handling of hostile input
(ids in paths, non-finite numbers in validation errors).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable
from pathlib import Path
from stat import S_ISREG
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from exemplar.server.schemas import MAX_DB_ID
from exemplar.sources.images import file_id

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "LoginRateLimiter",
    "TtlCache",
    "csrf_matches",
    "json_safe",
    "media_file",
    "new_csrf_token",
    "parse_db_id",
    "session_secret",
    "swagger_ui_page",
    "validation_error_handler",
]

#: The policy of every page: scripts, styles, images and requests from this server only.
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
_DB_ID = re.compile(r"[0-9]{1,19}")

log = logging.getLogger("exemplar.server")


#: The file in the project folder holding the session-signing secret.
SECRET_NAME = ".server-secret"


def session_secret(root: Path) -> str:
    """The project's session-signing secret, created (mode 0600) on first use."""
    path = root / SECRET_NAME
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= 32:
            return value
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def new_csrf_token() -> str:
    """A fresh random CSRF token (kept in the signed session)."""
    return secrets.token_urlsafe(32)


def csrf_matches(expected: object, given: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token with the one sent."""
    if not isinstance(expected, str) or not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class LoginRateLimiter:
    """Failed logins allowed per ``window`` seconds: per (client IP, user name) and per IP.

    Two limits apply, both counted over the last ``window`` seconds:

    * ``max_failures`` failures for one name from one IP block that name from that IP
      (password guessing against one account). Other IPs can still log in to it, so
      nobody can lock a user out everywhere; the block lifts ``window`` seconds after the
      oldest counted failure, and a successful login forgets that name's failures.
    * ``max_ip_failures`` failures from one IP across all names block that IP for every
      name (password spraying: one password tried against many names). A success does
      not forget these, so an attacker cannot reset the count by logging in to an
      account of their own between tries.

    Below both limits every login is checked: a right password is never refused because
    other names failed from the same IP (colleagues behind one proxy or NAT).
    """

    #: Above this many tracked keys, keys with no failure inside the window are dropped.
    MAX_KEYS = 10_000

    def __init__(
        self, max_failures: int = 5, window: float = 60.0, max_ip_failures: int = 20
    ) -> None:
        if max_failures < 1 or max_ip_failures < 1 or window <= 0:
            raise ValueError(
                "the login limits must be at least 1 failure in a window of more than 0 s, "
                f"got {max_failures} per name, {max_ip_failures} per IP, {window} s"
            )
        self.max_failures = max_failures
        self.window = window
        self.max_ip_failures = max_ip_failures
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._ip_failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, times: deque[float], now: float) -> deque[float]:
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, ip: str, name: str) -> float | None:
        """Seconds to wait if ``name`` may not log in from ``ip`` now, else None."""
        now = time.monotonic()
        waits = []
        with self._lock:
            times = self._failures.get((ip, name))
            if times is not None and len(self._recent(times, now)) >= self.max_failures:
                waits.append(times[-self.max_failures] + self.window - now)
            ip_times = self._ip_failures.get(ip)
            if ip_times is not None and len(self._recent(ip_times, now)) >= self.max_ip_failures:
                waits.append(ip_times[-self.max_ip_failures] + self.window - now)
        return max(1.0, *waits) if waits else None

    def failed(self, ip: str, name: str) -> None:
        """Record a failed login of ``name`` from ``ip``."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) + len(self._ip_failures) > self.MAX_KEYS:
                self._drop_stale(now)
            self._failures[(ip, name)].append(now)
            self._ip_failures[ip].append(now)

    def succeeded(self, ip: str, name: str) -> None:
        """Forget the failures of ``name`` from ``ip`` (not those counted for the IP)."""
        with self._lock:
            self._failures.pop((ip, name), None)

    def _drop_stale(self, now: float) -> None:
        for pair in [k for k, times in self._failures.items() if not self._recent(times, now)]:
            del self._failures[pair]
        for ip in [k for k, times in self._ip_failures.items() if not self._recent(times, now)]:
            del self._ip_failures[ip]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A thread-safe map whose entries live ``ttl`` seconds (at most ``max_size`` entries).

    The server keeps authentication results here for a few seconds, so a request costs no
    database read for its token or session; a deactivated user or a deleted token therefore
    stops working at most ``ttl`` seconds later. Misses are computed outside the lock (two
    threads may compute the same key once each; both results are equal).
    """

    def __init__(self, ttl: float, max_size: int = 4096) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._items: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        """The live value of ``key``, else ``compute()`` (stored unless it is None)."""
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = compute()
        if value is not None:
            with self._lock:
                if len(self._items) >= self.max_size:
                    self._items = {k: v for k, v in self._items.items() if v[0] > now}
                    if len(self._items) >= self.max_size:
                        self._items.clear()
                self._items[key] = (now + self.ttl, value)
        return value

    def discard(self, key: K) -> None:
        """Forget ``key`` (a logout: the next lookup reads the database again)."""
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()


def parse_db_id(text: str) -> int | None:
    """The database id written as ``text`` (ASCII digits, at most ``MAX_DB_ID``), else None.

    ``str.isdigit`` and ``int`` accept more than ASCII digits (``"²"`` is a digit to
    ``isdigit`` and an error to ``int``; ``"٣"`` is 3 to both), and a number beyond 64 bits
    overflows the database driver: both were unhandled errors (500) before.
    """
    if not _DB_ID.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_DB_ID else None


def json_safe(value: Any) -> Any:
    """``value`` (made of JSON types) with every NaN or infinity written as a string.

    Strict JSON has no non-finite numbers, and Starlette refuses to write them; a request
    body with ``NaN`` (which Python's and pydantic's JSON parsers accept) came back in the
    422 error's ``input`` and failed the error response itself.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a :class:`RequestValidationError`, safe for any input it echoes."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else [{"msg": str(exc)}]
    return JSONResponse({"detail": json_safe(jsonable_encoder(errors))}, status_code=422)


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def swagger_ui_page(openapi_url: str, title: str, vendor_url: str) -> HTMLResponse:
    """The Swagger UI page for ``openapi_url``, from the copy vendored under ``vendor_url``.

    The assets are served by this server (``static/vendor/swagger-ui*``, from the npm
    package ``swagger-ui-dist``), so the page works offline and under
    :data:`CONTENT_SECURITY_POLICY`. Its one inline script, which starts Swagger UI, is
    allowed by its SHA-256 hash in this page's own policy; no other page allows it. The
    validator badge is off: it would load an image from validator.swagger.io.
    """
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{vendor_url}/swagger-ui-bundle.js",
        swagger_css_url=f"{vendor_url}/swagger-ui.css",
        swagger_favicon_url=f"{vendor_url}/swagger-ui-favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )
    html = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    page.headers["content-security-policy"] = (
        f"{CONTENT_SECURITY_POLICY}; script-src 'self' {hashes}"
    )
    return page


def media_file(uri: str, recorded_id: str | None) -> Path | None:
    """The file of an image item, if it is still the file that was imported; else None.

    Import records the image's real path as its URI and its ``file_id`` (device, inode,
    size, modification time). A path whose real path is not the URI any more (the file or a
    folder above it was replaced by a symbolic link, for example to a system file), or a
    file with another ``file_id`` (replaced or modified in place), is refused and logged.
    Items imported before ``file_id`` was recorded are checked by real path only.
    """
    try:
        real = os.path.realpath(uri, strict=True)
        stat = os.stat(real)
    except (OSError, ValueError):  # missing, a link loop, or a NUL byte in the path
        return None
    if real != uri:
        log.warning("refused media %s: its real path is now %s", uri, real)
        return None
    if not S_ISREG(stat.st_mode):
        return None
    if recorded_id is not None and file_id(stat) != recorded_id:
        log.warning("refused media %s: the file changed since import", uri)
        return None
    return Path(real)
