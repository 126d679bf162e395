"""The app's middleware: the signed session cookie, browser security headers, body limit.

The request body limit is FastAPI's own ``max_body_size`` (Starlette counts the body as it
streams, so no POST body is buffered to measure it); ``MAX_BODY_BYTES`` is its default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from exemplar.server.security import CONTENT_SECURITY_POLICY, session_secret

__all__ = [
    "MAX_BODY_BYTES",
    "SESSION_COOKIE",
    "SESSION_MAX_AGE_S",
    "SecurityHeaders",
    "install_middleware",
]

#: Larger request bodies are answered with 413.
MAX_BODY_BYTES = 1024 * 1024
SESSION_COOKIE = "exemplar_session"
#: How long a signed session cookie is accepted.
SESSION_MAX_AGE_S = 8 * 3600


class SecurityHeaders:
    """Conservative browser security headers on every response.

    A response that sets its own ``Content-Security-Policy`` keeps it (the API docs page
    allows its inline start script by hash); every other one gets the strict policy.
    """

    CSP = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == self.CSP[0] for name, _ in headers):
                    headers.append(self.CSP)
                message["headers"] = [*headers, *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def install_middleware(app: FastAPI, project_root: Path, *, https_only: bool) -> None:
    """Add the session cookie (``SameSite=Strict``, ``Secure`` if ``https_only``) and
    the security headers to ``app``."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(project_root),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        same_site="strict",
        https_only=https_only,
    )
    app.add_middleware(SecurityHeaders)
