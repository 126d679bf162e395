"""Accounts of the labeling server: users with a role, and API tokens for scripts.

Passwords are hashed with argon2id (argon2-cffi); API tokens are random strings of which
only the SHA-256 digest is stored, so a leaked database reveals neither. The tables live on
the same declarative ``Base`` as the rest of the schema and are created by the Alembic
migration ``0002``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import ForeignKey, Integer, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from exemplar.errors import ExemplarError
from exemplar.store.db import Database, WriterBusy
from exemplar.store.schema import Base, utcnow

__all__ = [
    "AccountError",
    "ApiToken",
    "Role",
    "User",
    "add_user",
    "create_token",
    "get_user",
    "user_for_token",
    "verify_password",
]

_HASHER = PasswordHasher()
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: Prefix of every API token, so a leaked one is recognisable in logs and secret scanners.
TOKEN_PREFIX = "exm_"
MIN_PASSWORD_LENGTH = 8


class AccountError(ExemplarError, ValueError):
    """A user or token cannot be created: bad name, unknown role, weak password, duplicate."""


class Role(StrEnum):
    """What a user may do. Annotators label; reviewers label too; admins also manage users."""

    ADMIN = "admin"
    REVIEWER = "reviewer"
    ANNOTATOR = "annotator"


class User(Base):
    """A person who logs in to the labeling server."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    active: Mapped[bool] = mapped_column(default=True)


class ApiToken(Base):
    """A bearer token of one user; only its SHA-256 digest is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AccountError(
            f"unknown role {role!r}; choose one of: {', '.join(r.value for r in Role)}"
        ) from None


def add_user(db: Database, name: str, role: str, password: str) -> User:
    """Create a user with an argon2 password hash.

    Raises
    ------
    AccountError
        The name is malformed or taken, the role unknown, or the password shorter than
        ``MIN_PASSWORD_LENGTH`` characters.
    """
    if not _NAME.match(name):
        raise AccountError(
            f"invalid user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'"
        )
    checked = _role(role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    with db.session() as s:
        if s.scalar(select(User.id).where(User.name == name)) is not None:
            raise AccountError(f"user {name!r} already exists")
        user = User(name=name, role=checked.value, password_hash=_HASHER.hash(password))
        s.add(user)
        s.flush()
    return user


def get_user(db: Database, user_id: int) -> User | None:
    """The active user with ``user_id``, or None."""
    with db.read() as s:
        user = s.get(User, user_id)
    return user if user is not None and user.active else None


def verify_password(db: Database, name: str, password: str) -> User | None:
    """The active user ``name`` if ``password`` is theirs, else None (constant-ish time)."""
    with db.read() as s:
        user = s.scalar(select(User).where(User.name == name))
    if user is None or not user.active:
        # Hash anyway so that unknown names take as long as wrong passwords.
        _HASHER.hash(password)
        return None
    try:
        _HASHER.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Database, user_id: int, name: str = "api") -> str:
    """Create an API token for ``user_id``; the token itself is returned once, never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        if s.get(User, user_id) is None:
            raise AccountError(f"no user with id {user_id}")
        s.add(ApiToken(user_id=user_id, token_hash=_digest(token), name=name[:64]))
    return token


#: ``last_used_at`` is refreshed at most this often, so authenticating is a read, not a
#: write, on almost every request (a write per request contended for SQLite's lock).
TOKEN_USE_RESOLUTION = timedelta(minutes=1)
#: Seconds recording a token's use may wait for the writer turn before it is skipped.
USE_RECORD_PATIENCE_S = 0.05


def user_for_token(db: Database, token: str) -> User | None:
    """The active user owning ``token`` (recording its use once a minute), or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(token)
    with db.read() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if row is None:
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.active:
            return None
        last = row.last_used_at
    now = utcnow()
    if (
        last is None
        or now - (last if last.tzinfo else last.replace(tzinfo=UTC)) > TOKEN_USE_RESOLUTION
    ):
        # Bookkeeping only: the server calls this on its event loop, so it does not wait
        # behind a long write (an import, the learner); the next use records it instead.
        with (
            contextlib.suppress(WriterBusy),
            db.write_turn(USE_RECORD_PATIENCE_S),
            db.session() as s,
        ):
            s.execute(
                update(ApiToken).where(ApiToken.token_hash == digest).values(last_used_at=now)
            )
    return user
