"""Accounts: API tokens for the caller (``POST /api/v1/tokens``) and new users (admins)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from exemplar.server.deps import API_PREFIX, Admin, Labeler, State
from exemplar.server.schemas import TokenIn, TokenOut, UserIn, UserOut
from exemplar.store.accounts import AccountError, add_user, create_token

__all__ = ["router"]


def router() -> APIRouter:
    """The token route (tag ``auth``) and the user route (tag ``users``)."""
    api = APIRouter(prefix=API_PREFIX)

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

    return api
