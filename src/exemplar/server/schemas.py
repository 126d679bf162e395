"""The request and response models of the JSON API (``/api/v1``), one place for all of them.

They are pydantic v2 models; FastAPI documents them in the OpenAPI schema under their class
names, and the plain Starlette hot routes (:mod:`exemplar.server.routes.labeling`) validate
with the same models and document them by hand.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from exemplar.store.accounts import Role

__all__ = [
    "MAX_DB_ID",
    "MIN_DB_ID",
    "LabelIn",
    "LabelOut",
    "LoginIn",
    "NextQuery",
    "ReviewIn",
    "ReviewOut",
    "SessionOut",
    "TokenIn",
    "TokenOut",
    "UndoOut",
    "UserIn",
    "UserOut",
]

#: Database ids are SQLite INTEGERs (signed 64-bit); larger numbers are a 422, not a crash.
MIN_DB_ID = -(2**63)
MAX_DB_ID = 2**63 - 1


# -- session and accounts --------------------------------------------------------------------


class LoginIn(BaseModel):
    """Credentials for ``POST /api/v1/session``."""

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    """The logged-in user and the CSRF token to send in ``X-Exemplar-CSRF``."""

    name: str
    role: str
    csrf: str


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


# -- labeling --------------------------------------------------------------------------------


class NextQuery(BaseModel):
    """The query of ``GET /api/v1/items/next``."""

    after: int | None = Field(default=None, ge=MIN_DB_ID, le=MAX_DB_ID)


class LabelIn(BaseModel):
    """A label for a leased queue entry.

    ``action`` is ``label`` (``label`` names the class), ``accept`` (take the model's
    proposal) or ``reject`` (record the proposal as rejected). Retrying with the same
    ``idempotency_key`` returns the label written the first time.
    """

    entry_id: int = Field(ge=MIN_DB_ID, le=MAX_DB_ID)
    label: str | None = Field(default=None, max_length=255)
    action: Literal["label", "accept", "reject"] = "label"
    idempotency_key: str | None = Field(
        default=None, min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$"
    )

    @model_validator(mode="after")
    def _label_names_a_class(self) -> LabelIn:
        if self.action == "label" and self.label is None:
            raise ValueError("action 'label' needs a label")
        return self


class LabelOut(BaseModel):
    """The label row that was written (or found, for a retry)."""

    label_id: int
    item_id: int
    label: str | None
    status: str


class UndoOut(BaseModel):
    """What an undo did: the label it superseded and the entry given back to the caller."""

    entry_id: int
    item_id: int
    undone_label_id: int
    marker_label_id: int


# -- review ----------------------------------------------------------------------------------


class ReviewIn(BaseModel):
    """A reviewer's decision on an item's current label.

    ``correct`` needs ``label``. ``accept`` of a disputed item needs ``label``, one of the
    classes its annotators chose; otherwise ``accept`` keeps the current label.
    """

    action: Literal["accept", "correct", "reject"]
    label: str | None = Field(default=None, max_length=255)


class ReviewOut(BaseModel):
    """The label row the review appended."""

    label_id: int
    item_id: int
    label: str | None
    status: str
    annotator: str | None
