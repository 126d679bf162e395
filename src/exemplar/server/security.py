"""Security pieces of the server: session secret, login rate limit, auth cache, CSRF."""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = [
    "LoginRateLimiter",
    "TtlCache",
    "csrf_matches",
    "new_csrf_token",
    "session_secret",
]


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
    """At most ``max_failures`` failed logins per ``window`` seconds per (client IP, user)."""

    def __init__(self, max_failures: int = 5, window: float = 60.0) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _prune(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures[key]
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, ip: str, name: str) -> float | None:
        """Seconds to wait if (ip, name) is blocked now, else None."""
        now = time.monotonic()
        with self._lock:
            times = self._prune((ip, name), now)
            if len(times) >= self.max_failures:
                return max(1.0, times[0] + self.window - now)
        return None

    def failed(self, ip: str, name: str) -> None:
        """Record a failed login."""
        with self._lock:
            self._failures[(ip, name)].append(time.monotonic())

    def succeeded(self, ip: str, name: str) -> None:
        """Forget the failures of (ip, name) after a successful login."""
        with self._lock:
            self._failures.pop((ip, name), None)


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

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()
