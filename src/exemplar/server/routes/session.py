"""Log in and out: ``POST /api/v1/session`` (JSON or the login form) and ``DELETE``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from exemplar.server.deps import API_PREFIX, SESSION_KEY, State, client_ip, current_user
from exemplar.server.middleware import SESSION_MAX_AGE_S
from exemplar.server.schemas import LoginIn, SessionOut
from exemplar.server.security import csrf_matches, new_csrf_token
from exemplar.store.accounts import AccountError, User, create_session, verify_password

__all__ = ["router"]

log = logging.getLogger("exemplar.server")


def router() -> APIRouter:
    """The session routes (tag ``auth``)."""
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
        ip = client_ip(request)
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
        try:  # the session lives in the database; the signed cookie holds only its secret
            secret = await run_in_threadpool(
                create_session, state.project.db, user.id, SESSION_MAX_AGE_S
            )
        except AccountError as exc:  # deactivated between the password check and now
            raise HTTPException(401, "wrong name or password") from exc
        request.session.clear()  # a fresh session: no fixation
        request.session[SESSION_KEY] = secret
        request.session["csrf"] = csrf = new_csrf_token()
        if is_form:
            return RedirectResponse("/label", status_code=303)
        return SessionOut(name=user.name, role=user.role, csrf=csrf)

    @api.delete("/session", status_code=204, tags=["auth"])
    def logout(
        request: Request, state: State, _user: Annotated[User, Depends(current_user)]
    ) -> Response:
        """Log out: the session ends on the server, so a copy of the cookie is refused too."""
        secret = request.session.get(SESSION_KEY)
        if isinstance(secret, str):
            state.end_session(secret)
        request.session.clear()
        return Response(status_code=204)

    return api
