"""The app factory: the JSON API under ``/api/v1`` plus the login, labeling, review and
dashboard pages, over one project.

The parts live in their own modules: :mod:`~exemplar.server.deps` (state, authentication,
templates), :mod:`~exemplar.server.schemas` (request and response models),
:mod:`~exemplar.server.routes` (one router per area) and
:mod:`~exemplar.server.middleware`. This module only puts them together.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from exemplar.errors import StoreError
from exemplar.project import Project
from exemplar.server.deps import API_PREFIX, CSRF_HEADER, ServerState
from exemplar.server.middleware import MAX_BODY_BYTES, install_middleware
from exemplar.server.routes import (
    accounts,
    costs,
    curation,
    dashboard,
    items,
    labeling,
    objects,
    pages,
    review,
    session,
    video_pages,
    viewer,
)
from exemplar.server.routes import stream as stream_routes
from exemplar.server.routes import video as video_routes
from exemplar.server.security import (
    LoginRateLimiter,
    swagger_ui_page,
    validation_error_handler,
)

__all__ = ["API_PREFIX", "CSRF_HEADER", "app_from_env", "create_app"]

_HERE = Path(__file__).parent


def create_app(
    project_root: Path,
    *,
    https_only: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    login_failures_per_minute: int = 5,
    login_failures_per_ip: int = 20,
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
    login_failures_per_ip
        Failed logins allowed per client IP per minute, across all names, before 429
        (password spraying; see :class:`~exemplar.server.security.LoginRateLimiter`).
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

    limiter = LoginRateLimiter(login_failures_per_minute, 60.0, login_failures_per_ip)
    state = ServerState(project, limiter)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if thread is not None:
            thread.start()
        await state.open_queue()  # PostgreSQL: the hot path's async connections
        # What is alive now (the imported modules, the app) lives as long as the server.
        # Frozen, the collector never walks it again: a full collection over those ~200,000
        # objects stopped every request of this process for about 0.1 s.
        gc.freeze()
        yield
        await state.close_queue()
        if thread is not None:
            thread.stop()
        project.close()

    app = FastAPI(
        title=f"exemplar: {project.config.project.name}",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served below, from the vendored Swagger UI
        openapi_url=f"{API_PREFIX}/openapi.json",
        redoc_url=None,
        routes=labeling.routes(API_PREFIX),  # first: the labeling hot path
        max_body_size=max_body_bytes,  # larger bodies: 413 (Starlette counts as they stream)
    )
    app.state.learner = learner
    app.state.exemplar = state
    for module in (session, accounts, items, objects, pages, review, dashboard, curation, viewer):
        app.include_router(module.router())
    app.include_router(costs.router())
    app.include_router(curation.pages())
    app.include_router(video_routes.router())
    app.include_router(video_pages.router())
    app.include_router(stream_routes.router())
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return swagger_ui_page(f"{API_PREFIX}/openapi.json", f"{app.title} - API", "/static/vendor")

    install_middleware(app, project.root, https_only=https_only)

    openapi = app.openapi

    def openapi_with_hot_routes() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = labeling.document(openapi(), API_PREFIX)
        return app.openapi_schema

    app.openapi = openapi_with_hot_routes  # type: ignore[method-assign]

    # FastAPI's 422 echoes the input, which may hold NaN: written as a string here.
    app.add_exception_handler(RequestValidationError, validation_error_handler)

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
