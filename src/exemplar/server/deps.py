"""What the routes depend on: the server state, authentication, roles and the templates.

Authentication is a signed session cookie (``SameSite=Strict``; ``Secure`` unless
``https_only=False``) or an ``Authorization: Bearer <token>`` header. Cookie-authenticated
unsafe requests must carry the session's CSRF token in the ``X-Exemplar-CSRF`` header (JSON
API) or a ``csrf`` form field (form posts). Bearer requests need no CSRF token: browsers
never attach them on their own.

The routers (:mod:`exemplar.server.routes`) import this module and
:mod:`exemplar.server.schemas`, never the app factory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.templating import Jinja2Templates

from exemplar.errors import LeaseLostError, QueueError, StoreError
from exemplar.project import Project
from exemplar.server.schemas import MAX_DB_ID, MIN_DB_ID
from exemplar.server.security import (
    LoginRateLimiter,
    TtlCache,
    csrf_matches,
    new_csrf_token,
)
from exemplar.store.accounts import (
    Role,
    User,
    get_user,
    revoke_session,
    session_user,
    user_for_token,
)
from exemplar.store.db import WriterBusy
from exemplar.store.labels import UnknownClassError

if TYPE_CHECKING:
    from exemplar.store.pg_async import AsyncQueue

__all__ = [
    "ALL_ROLES",
    "API_PREFIX",
    "CSRF_HEADER",
    "SESSION_KEY",
    "Admin",
    "Labeler",
    "PathId",
    "Reviewer",
    "ServerState",
    "State",
    "authenticate",
    "client_ip",
    "current_user",
    "page_csrf",
    "page_user",
    "queue_http_error",
    "require_role",
    "server_state",
    "templates",
]

log = logging.getLogger("exemplar.server")

API_PREFIX = "/api/v1"
CSRF_HEADER = "X-Exemplar-CSRF"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALL_ROLES = (Role.ADMIN, Role.REVIEWER, Role.ANNOTATOR)
#: A database id in a path segment.
PathId = Annotated[int, PathParam(ge=MIN_DB_ID, le=MAX_DB_ID)]

#: The server's templates (Jinja2 autoescapes every ``.html`` template).
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

T = TypeVar("T")

#: How long a web worker's event loop waits for SQLite's writer turn before it hands a
#: store call to a thread (see ``ServerState.run_store``).
INLINE_PATIENCE_S = 0.05
#: After the turn stayed busy that long, the loop waits at most ``BUSY_PATIENCE_S`` for
#: this many seconds (a long import must not stall every request by ``INLINE_PATIENCE_S``);
#: that still outlasts another web worker's turn (0.1-0.3 ms).
BUSY_TURN_MEMORY_S = 1.0
BUSY_PATIENCE_S = 0.003

#: Seconds a token's or session's user is cached (a deactivated user is refused after this;
#: a logout ends its session at once in the process that served it, and after this in the
#: other web workers).
AUTH_CACHE_SECONDS = 5.0
#: The key under which the signed session cookie holds the server-side session's secret.
SESSION_KEY = "sid"


class ServerState:
    """What the routes share: the open project, the login limiter and the auth cache."""

    def __init__(self, project: Project, limiter: LoginRateLimiter) -> None:
        self.project = project
        self.limiter = limiter
        #: ``("token", token)``, ``("session", secret)`` or ``("user", user_id)`` -> the
        #: active user (misses uncached).
        self.users: TtlCache[tuple[str, str | int], User | None] = TtlCache(AUTH_CACHE_SECONDS)
        self.inline_store = project.db.dialect == "sqlite"
        self._turn_busy_until = 0.0
        #: PostgreSQL: per event loop running the app, its async queue and how many
        #: lifespans opened it (:meth:`open_queue`).
        self._queues: dict[asyncio.AbstractEventLoop, tuple[AsyncQueue, int]] = {}

    @property
    def queue(self) -> AsyncQueue | None:
        """The async queue of the running event loop (PostgreSQL, while the app runs on it);
        None elsewhere: calls then go through :meth:`run_store`. Outside an event loop, the
        first queue opened (for inspection)."""
        try:
            found = self._queues.get(asyncio.get_running_loop())
        except RuntimeError:
            found = next(iter(self._queues.values()), None)
        return None if found is None else found[0]

    async def open_queue(self) -> None:
        """On PostgreSQL, open an async queue (:mod:`exemplar.store.pg_async`) on this loop.

        The hot routes then await the database on the event loop instead of handing each
        lease and submit to a worker thread (docs/benchmarks.md). Its connections belong to
        this loop: an app run on two loops at once (two test clients) gets one per loop.
        """
        if self.project.db.dialect != "postgresql":
            return
        loop = asyncio.get_running_loop()
        if loop in self._queues:
            queue, depth = self._queues[loop]
            self._queues[loop] = (queue, depth + 1)
            return
        from exemplar.store.pg_async import AsyncQueue

        queue = AsyncQueue(self.project.db)
        await queue.open()
        self._queues[loop] = (queue, 1)

    async def close_queue(self) -> None:
        """Close this loop's async queue when its last lifespan ends (at shutdown)."""
        loop = asyncio.get_running_loop()
        if loop not in self._queues:
            return
        queue, depth = self._queues[loop]
        if depth > 1:
            self._queues[loop] = (queue, depth - 1)
            return
        del self._queues[loop]
        await queue.close()

    def user_for_token(self, token: str) -> User | None:
        """The active user of an API token, from the cache or the database."""
        return self.users.get(("token", token), lambda: user_for_token(self.project.db, token))

    def user(self, user_id: int) -> User | None:
        """The active user with ``user_id``, from the cache or the database."""
        return self.users.get(("user", user_id), lambda: get_user(self.project.db, user_id))

    def session_user(self, secret: str) -> User | None:
        """The active user of a live login session, from the cache or the database."""
        return self.users.get(("session", secret), lambda: session_user(self.project.db, secret))

    def end_session(self, secret: str) -> None:
        """Log out: revoke the session in the database and forget it here at once."""
        revoke_session(self.project.db, secret)
        self.users.discard(("session", secret))

    async def run_store(self, call: Callable[[], T]) -> T:
        """Run a short store call of the labeling hot path, without a worker thread if it can.

        On SQLite the call runs right here, on the event loop, once the writer turn is free:
        a lease or a submit is a few hundred microseconds of local work, less than the
        hand-off to a worker thread that would carry it (about 0.2-0.45 ms of CPU on a
        2-core machine), and a worker thread would then wait for the interpreter lock while
        it holds the turn. The loop waits for the turn at most ``INLINE_PATIENCE_S`` (a
        long write elsewhere, such as an import); after that the call goes to the thread
        pool, and for ``BUSY_TURN_MEMORY_S`` calls wait at most ``BUSY_PATIENCE_S``.
        On PostgreSQL every call goes to the thread pool: it waits on the network and on
        commit fsyncs (the hot routes use :attr:`queue` instead, when it is open).
        """
        if self.inline_store:
            now = time.monotonic()
            patience = BUSY_PATIENCE_S if now < self._turn_busy_until else INLINE_PATIENCE_S
            with ExitStack() as turn:
                try:
                    turn.enter_context(self.project.db.write_turn(patience))
                except WriterBusy:
                    # A long write elsewhere: do not stall this loop again for a while.
                    self._turn_busy_until = now + BUSY_TURN_MEMORY_S
                else:
                    return call()
        return await run_in_threadpool(call)


# The dependencies below are ``async def``: FastAPI runs a plain ``def`` dependency in a
# worker thread, and that hand-off cost more than the dependency itself. They do no I/O,
# except a short database read when the auth cache misses (once per AUTH_CACHE_SECONDS).


def server_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app serving ``request``."""
    state: ServerState = request.app.state.exemplar
    return state


async def _state(request: Request) -> ServerState:
    return server_state(request)


def client_ip(request: Request) -> str:
    """The client's address as the server sees it (``unknown`` without one)."""
    return request.client.host if request.client else "unknown"


async def authenticate(request: Request, roles: Iterable[Role] = ALL_ROLES) -> User:
    """The authenticated user (bearer token or session cookie), CSRF-checked, in ``roles``.

    Raises
    ------
    HTTPException
        401 without a valid token or session, 403 without the CSRF token (cookie sessions'
        unsafe requests) or for a role not in ``roles``.
    """
    state = server_state(request)
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        user = state.user_for_token(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HTTPException(401, "invalid API token", headers={"WWW-Authenticate": "Bearer"})
    else:
        secret = request.session.get(SESSION_KEY)
        user = state.session_user(secret) if isinstance(secret, str) else None
        if user is None:
            request.session.clear()
            raise HTTPException(401, "not logged in", headers={"WWW-Authenticate": "Bearer"})
        if request.method not in _SAFE_METHODS and not csrf_matches(
            request.session.get("csrf"), request.headers.get(CSRF_HEADER)
        ):
            log.warning(
                "CSRF check failed for %s %s (user %s)", request.method, request.url.path, user.name
            )
            raise HTTPException(403, f"missing or wrong CSRF token (send the {CSRF_HEADER} header)")
    if user.role not in {r.value for r in roles}:
        raise HTTPException(403, f"role {user.role!r} may not do this")
    return user


async def current_user(request: Request) -> User:
    """The authenticated user, whatever the role (a dependency; see :func:`authenticate`)."""
    return await authenticate(request)


def require_role(*roles: Role) -> Callable[..., Awaitable[User]]:
    """A dependency that lets only ``roles`` through (403 for the others)."""

    async def check(request: Request) -> User:
        return await authenticate(request, roles)

    return check


Labeler = Annotated[User, Depends(require_role(*ALL_ROLES))]
Reviewer = Annotated[User, Depends(require_role(Role.REVIEWER, Role.ADMIN))]
Admin = Annotated[User, Depends(require_role(Role.ADMIN))]
State = Annotated[ServerState, Depends(_state)]


def page_csrf(request: Request) -> str:
    """The session's CSRF token for a page's forms and scripts (made if missing)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = new_csrf_token()
    return token


def page_user(request: Request, project: Project) -> tuple[User | None, str]:
    """The session's user (None if logged out) and its CSRF token (made if missing)."""
    secret = request.session.get(SESSION_KEY)
    user = session_user(project.db, secret) if isinstance(secret, str) else None
    return user, page_csrf(request)


def queue_http_error(exc: Exception) -> HTTPException:
    """Map queue and label errors to HTTP statuses with the library's message."""
    if isinstance(exc, UnknownClassError):
        return HTTPException(422, str(exc))
    if isinstance(exc, LeaseLostError):
        return HTTPException(409, str(exc))
    if isinstance(exc, QueueError):
        return HTTPException(404 if str(exc).startswith("no queue entry") else 409, str(exc))
    if isinstance(exc, StoreError):
        return HTTPException(503, str(exc))
    raise exc
