"""The FastAPI application: JSON API under ``/api/v1`` plus the login and labeling pages.

Authentication is a signed session cookie (``SameSite=Strict``; ``Secure`` unless
``https_only=False``) or an ``Authorization: Bearer <token>`` header. Cookie-authenticated
unsafe requests must carry the session's CSRF token in the ``X-Exemplar-CSRF`` header (JSON
API) or a ``csrf`` form field (form posts). Bearer requests need no CSRF token: browsers
never attach them on their own.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, ValidationError
from starlette.middleware.sessions import SessionMiddleware

from exemplar.errors import LeaseLostError, QueueError, StoreError
from exemplar.project import Project
from exemplar.server.items import registered_image
from exemplar.server.security import (
    LoginRateLimiter,
    TtlCache,
    csrf_matches,
    new_csrf_token,
    session_secret,
)
from exemplar.store.accounts import (
    AccountError,
    Role,
    User,
    add_user,
    create_token,
    get_user,
    user_for_token,
    verify_password,
)
from exemplar.store.db import WriterBusy
from exemplar.store.labels import UnknownClassError

__all__ = ["API_PREFIX", "CSRF_HEADER", "create_app"]

log = logging.getLogger("exemplar.server")

API_PREFIX = "/api/v1"
CSRF_HEADER = "X-Exemplar-CSRF"
SESSION_COOKIE = "exemplar_session"
MAX_BODY_BYTES = 1024 * 1024
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HERE = Path(__file__).parent
ALL_ROLES = (Role.ADMIN, Role.REVIEWER, Role.ANNOTATOR)
#: Database ids are SQLite INTEGERs (signed 64-bit); larger numbers are a 422, not a crash.
MIN_DB_ID = -(2**63)
MAX_DB_ID = 2**63 - 1
#: A database id in a path segment.
PathId = Annotated[int, PathParam(ge=MIN_DB_ID, le=MAX_DB_ID)]


# -- request and response schemas -----------------------------------------------------------


class LoginIn(BaseModel):
    """Credentials for ``POST /api/v1/session``."""

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    """The logged-in user and the CSRF token to send in ``X-Exemplar-CSRF``."""

    name: str
    role: str
    csrf: str


class UndoOut(BaseModel):
    """What an undo did: the label it superseded and the entry given back to the caller."""

    entry_id: int
    item_id: int
    undone_label_id: int
    marker_label_id: int


class UserIn(BaseModel):
    """A new account (admin only)."""

    name: str = Field(min_length=1, max_length=64)
    role: Role
    password: str = Field(min_length=8, max_length=1024)


class UserOut(BaseModel):
    """An account, without its secret."""

    id: int
    name: str
    role: str


class TokenIn(BaseModel):
    """A name for a new API token."""

    name: str = Field(default="api", min_length=1, max_length=64)


class TokenOut(BaseModel):
    """A new API token; it is shown once and only its digest is stored."""

    token: str


# -- the app ---------------------------------------------------------------------------------


T = TypeVar("T")

#: How long a web worker's event loop waits for SQLite's writer turn before it hands a
#: store call to a thread (see ``ServerState.run_store``).
INLINE_PATIENCE_S = 0.05
#: After the turn stayed busy that long, the loop waits at most ``BUSY_PATIENCE_S`` for
#: this many seconds (a long import must not stall every request by ``INLINE_PATIENCE_S``);
#: that still outlasts another web worker's turn (0.1-0.3 ms).
BUSY_TURN_MEMORY_S = 1.0
BUSY_PATIENCE_S = 0.003

#: Seconds a token's or session's user is cached (a deactivated user is refused after this).
AUTH_CACHE_SECONDS = 5.0


class ServerState:
    """What the routes share: the open project, the login limiter and the auth cache."""

    def __init__(self, project: Project, limiter: LoginRateLimiter) -> None:
        self.project = project
        self.limiter = limiter
        #: ``("token", token)`` or ``("user", user_id)`` -> the active user (misses uncached).
        self.users: TtlCache[tuple[str, str | int], User | None] = TtlCache(AUTH_CACHE_SECONDS)
        self.inline_store = project.db.dialect == "sqlite"
        self._turn_busy_until = 0.0

    def user_for_token(self, token: str) -> User | None:
        """The active user of an API token, from the cache or the database."""
        return self.users.get(("token", token), lambda: user_for_token(self.project.db, token))

    def user(self, user_id: int) -> User | None:
        """The active user with ``user_id``, from the cache or the database."""
        return self.users.get(("user", user_id), lambda: get_user(self.project.db, user_id))

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
        commit fsyncs.
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


def _client_ip(request: Request) -> str:
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
        user_id = request.session.get("user_id")
        user = state.user(user_id) if isinstance(user_id, int) else None
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
Admin = Annotated[User, Depends(require_role(Role.ADMIN))]
State = Annotated[ServerState, Depends(_state)]


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


def _api_router() -> APIRouter:
    api = APIRouter(prefix=API_PREFIX)

    @api.post("/session", response_model=SessionOut, tags=["auth"])
    async def login(request: Request, state: State) -> Any:
        """Log in with JSON ``{name, password}`` or a form post (fields name, password, csrf)."""
        is_form = not request.headers.get("content-type", "").startswith("application/json")
        try:
            if is_form:
                form = await request.form()
                if not csrf_matches(request.session.get("csrf"), str(form.get("csrf") or "")):
                    raise HTTPException(403, "missing or wrong CSRF token; reload the login page")
                creds = LoginIn(
                    name=str(form.get("name") or ""), password=str(form.get("password") or "")
                )
            else:
                creds = LoginIn.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            raise HTTPException(422, "send a name and a password") from exc
        ip = _client_ip(request)
        wait = state.limiter.retry_after(ip, creds.name)
        if wait is not None:
            log.warning("login rate limit hit for %r from %s", creds.name, ip)
            raise HTTPException(
                429,
                "too many failed logins; try again later",
                headers={"Retry-After": str(int(wait))},
            )
        user = await run_in_threadpool(
            verify_password, state.project.db, creds.name, creds.password
        )
        if user is None:
            state.limiter.failed(ip, creds.name)
            log.info("failed login for %r from %s", creds.name, ip)
            if is_form:
                return RedirectResponse("/login?error=1", status_code=303)
            raise HTTPException(401, "wrong name or password")
        state.limiter.succeeded(ip, creds.name)
        request.session.clear()  # a fresh session: no fixation
        request.session["user_id"] = user.id
        request.session["csrf"] = csrf = new_csrf_token()
        if is_form:
            return RedirectResponse("/label", status_code=303)
        return SessionOut(name=user.name, role=user.role, csrf=csrf)

    @api.delete("/session", status_code=204, tags=["auth"])
    def logout(request: Request, _user: Annotated[User, Depends(current_user)]) -> Response:
        """Log out (end the cookie session)."""
        request.session.clear()
        return Response(status_code=204)

    @api.post("/tokens", response_model=TokenOut, status_code=201, tags=["auth"])
    def new_token(body: TokenIn, user: Labeler, state: State) -> TokenOut:
        """Create an API token for the calling user (``Authorization: Bearer <token>``)."""
        return TokenOut(token=create_token(state.project.db, user.id, body.name))

    @api.post("/users", response_model=UserOut, status_code=201, tags=["users"])
    def new_user(body: UserIn, _admin: Admin, state: State) -> UserOut:
        """Create an account (admins only)."""
        try:
            user = add_user(state.project.db, body.name, body.role.value, body.password)
        except AccountError as exc:
            raise HTTPException(409 if "exists" in str(exc) else 422, str(exc)) from exc
        return UserOut(id=user.id, name=user.name, role=user.role)

    @api.post("/items/{entry_id}/skip", tags=["labeling"])
    def skip_item(entry_id: PathId, user: Labeler, state: State) -> dict[str, Any]:
        """Put a leased entry back; it is served again after every pending entry."""
        try:
            state.project.skip_item(entry_id, user.name)
        except (QueueError, StoreError) as exc:
            raise queue_http_error(exc) from exc
        return {"entry_id": entry_id, "status": "skipped"}

    @api.post("/labels/undo", response_model=UndoOut, tags=["labeling"])
    def undo(user: Labeler, state: State) -> UndoOut:
        """Take back the caller's newest label still in force; its item is leased back to them.

        History stays append-only: an undo appends a ``rejected`` row without a class.
        """
        try:
            done = state.project.undo_last_label(user.name)
        except (QueueError, StoreError) as exc:
            raise queue_http_error(exc) from exc
        if done is None:
            raise HTTPException(409, "nothing to undo (no label of yours in the open cycle)")
        return UndoOut(
            entry_id=done.entry_id,
            item_id=done.item_id,
            undone_label_id=done.undone_label_id,
            marker_label_id=done.marker_label_id,
        )

    @api.get("/status", tags=["project"])
    def status(_user: Labeler, state: State) -> dict[str, Any]:
        """Cycle, state, queue, label counts per class and metric history."""
        result: dict[str, Any] = state.project.status()
        result.pop("root", None)  # no server paths to clients
        return result

    @api.post("/retrain", status_code=202, tags=["project"])
    def retrain(request: Request, _admin: Admin) -> dict[str, Any]:
        """Wake the background learner to advance the loop now (admins only)."""
        learner = getattr(request.app.state, "learner", None)
        if learner is None:
            raise HTTPException(409, "background learning is off for this server")
        learner.request_retrain()
        return {"status": "requested", "worker": learner.state()}

    @api.get("/media/{item_ref:path}", tags=["labeling"])
    def media(item_ref: str, request: Request, _user: Labeler, state: State) -> FileResponse:
        """The image of a registered image item; anything else is 404."""
        if not item_ref.isdigit():
            log.warning(
                "refused media path %r from %s (not an item id)", item_ref, _client_ip(request)
            )
            raise HTTPException(404, "no such media")
        path = registered_image(state.project, int(item_ref))
        if path is None:
            raise HTTPException(404, "no such media")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    return api


def _pages(templates: Jinja2Templates) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    def _csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = request.session["csrf"] = new_csrf_token()
        return token

    @pages.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/label", status_code=303)

    @pages.get("/login")
    def login_page(request: Request, error: int = 0) -> Response:
        return templates.TemplateResponse(
            request, "login.html", {"csrf": _csrf(request), "error": bool(error)}
        )

    @pages.get("/label")
    def label_page(request: Request, state: State) -> Response:
        user_id = request.session.get("user_id")
        user = get_user(state.project.db, user_id) if isinstance(user_id, int) else None
        if user is None:
            return RedirectResponse("/login", status_code=303)
        return templates.TemplateResponse(
            request,
            "label.html",
            {
                "csrf": _csrf(request),
                "user": user.name,
                "project": state.project.config.project.name,
                "classes": list(
                    zip(state.project.classes, class_keys(state.project.classes), strict=True)
                ),
            },
        )

    return pages


#: Keys the labeling page reserves for actions.
RESERVED_KEYS = frozenset({"x", "s", "u", "?"})


def class_keys(classes: list[str]) -> list[str]:
    """The key that picks each class on the labeling page.

    When every class name is a single, distinct character that is not an action key (for
    example digits ``0``–``9``), the key is the name itself, so pressing ``3`` labels "3".
    Otherwise the first ten classes get ``1``–``9`` and ``0``; the rest have no key.
    """
    single = all(len(c) == 1 for c in classes) and len(set(classes)) == len(classes)
    if single and not set(classes) & RESERVED_KEYS:
        return list(classes)
    return [str((i + 1) % 10) if i < 10 else "" for i in range(len(classes))]


class _SecurityHeaders:
    """Conservative browser security headers on every response."""

    HEADERS = (
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
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
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    project_root: Path,
    *,
    https_only: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    login_failures_per_minute: int = 5,
    background_learning: bool = False,
    learner_process: bool = False,
) -> FastAPI:
    """The labeling server of the project at ``project_root``.

    Parameters
    ----------
    project_root
        The project folder; it is opened now and closed when the app shuts down.
    https_only
        Mark the session cookie ``Secure`` (set it when serving behind HTTPS).
    max_body_bytes
        Larger request bodies are answered with 413.
    login_failures_per_minute
        Failed logins allowed per (client IP, user name) per minute before 429.
    background_learning
        With a human oracle, run a :class:`~exemplar.server.worker.BackgroundLearner` that
        retrains and refills the queue in a thread while the server keeps answering.
    learner_process
        A learner runs in another process (:class:`~exemplar.server.worker.LearnerProcess`,
        as ``exemplar serve`` starts it): ``POST /api/v1/retrain`` wakes that one.
    """
    from exemplar.server.worker import BackgroundLearner, LearnerLink

    project = Project.open(project_root)
    human = project.config.oracle.kind == "human"
    thread = BackgroundLearner(project) if background_learning and human else None
    learner: BackgroundLearner | LearnerLink | None = thread
    if learner_process and human:
        learner = LearnerLink(project.root)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if thread is not None:
            thread.start()
        # What is alive now (the imported modules, the app) lives as long as the server.
        # Frozen, the collector never walks it again: a full collection over those ~200,000
        # objects stopped every request of this process for about 0.1 s.
        gc.freeze()
        yield
        if thread is not None:
            thread.stop()
        project.close()

    from exemplar.server import dashboard, labeling, review  # here: they import this module

    app = FastAPI(
        title=f"exemplar: {project.config.project.name}",
        version="1",
        lifespan=lifespan,
        docs_url=f"{API_PREFIX}/docs",
        openapi_url=f"{API_PREFIX}/openapi.json",
        redoc_url=None,
        routes=labeling.routes(API_PREFIX),  # first: the labeling hot path
        max_body_size=max_body_bytes,  # larger bodies: 413 (Starlette counts as they stream)
    )
    app.state.learner = learner
    app.state.exemplar = ServerState(project, LoginRateLimiter(login_failures_per_minute, 60.0))
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    app.include_router(_api_router())
    app.include_router(_pages(templates))
    app.include_router(review.router())
    app.include_router(dashboard.router())
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(project.root),
        session_cookie=SESSION_COOKIE,
        max_age=8 * 3600,
        same_site="strict",
        https_only=https_only,
    )
    app.add_middleware(_SecurityHeaders)

    openapi = app.openapi

    def openapi_with_hot_routes() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = labeling.document(openapi(), API_PREFIX)
        return app.openapi_schema

    app.openapi = openapi_with_hot_routes  # type: ignore[method-assign]

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    return app


#: Environment variables through which ``exemplar serve`` configures its web workers.
ENV_ROOT = "EXEMPLAR_SERVE_ROOT"
ENV_HTTPS_ONLY = "EXEMPLAR_SERVE_HTTPS_ONLY"
ENV_LEARNER_PROCESS = "EXEMPLAR_SERVE_LEARNER_PROCESS"


def app_from_env() -> FastAPI:
    """The app of one web worker of ``exemplar serve`` (a uvicorn factory; see ``ENV_*``)."""
    root = os.environ.get(ENV_ROOT)
    if not root:
        raise RuntimeError(f"{ENV_ROOT} is not set (start the server with `exemplar serve`)")
    return create_app(
        Path(root),
        https_only=os.environ.get(ENV_HTTPS_ONLY) == "1",
        learner_process=os.environ.get(ENV_LEARNER_PROCESS) == "1",
    )
