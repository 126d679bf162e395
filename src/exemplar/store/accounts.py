"""Accounts of the labeling server: users with a role, API tokens, and login sessions.

Passwords are hashed with argon2id (argon2-cffi); API tokens and session secrets are random
strings of which only the SHA-256 digest is stored, so a leaked database reveals neither.
A token may expire and can be revoked; a session lives on the server, so logging out or
deactivating its user ends it at once. The tables live on the same declarative ``Base`` as
the rest of the schema and are created by the Alembic migrations ``0002`` and ``0005``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import CursorResult, ForeignKey, Integer, String, Update, select, update
from sqlalchemy.orm import InstrumentedAttribute, Mapped, Session, mapped_column

from exemplar.errors import ExemplarError
from exemplar.store.db import Database, WriterBusy
from exemplar.store.schema import Base, utcnow

__all__ = [
    "AccountError",
    "ApiToken",
    "LoginSession",
    "Revoked",
    "Role",
    "TokenInfo",
    "User",
    "activate_user",
    "add_user",
    "create_session",
    "create_token",
    "deactivate_user",
    "get_user",
    "list_tokens",
    "list_users",
    "revoke_session",
    "revoke_token",
    "revoke_user_sessions",
    "session_user",
    "user_by_name",
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
    #: None: the token never expires.
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class LoginSession(Base):
    """A browser login. The cookie holds a random secret; ``id`` is its SHA-256 digest."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)


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


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    """A stored datetime as aware UTC (SQLite hands back naive values)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and _aware(expires_at) <= now


def _updated(s: Session, statement: Update) -> int:
    """Run an UPDATE; the number of rows it changed."""
    return int(cast(CursorResult[Any], s.execute(statement)).rowcount)


def _named(s: Session, name: str) -> User:
    """The user called ``name`` (active or not); AccountError when there is none."""
    user = s.scalar(select(User).where(User.name == name))
    if user is None:
        raise AccountError(f"no user {name!r}; see `exemplar user list`")
    return user


def user_by_name(db: Database, name: str) -> User:
    """The user called ``name`` (active or not).

    Raises
    ------
    AccountError
        No user has that name.
    """
    with db.read() as s:
        return _named(s, name)


def list_users(db: Database) -> list[User]:
    """Every user, active or not, by name."""
    with db.read() as s:
        return list(s.scalars(select(User).order_by(User.name)))


class Revoked(NamedTuple):
    """What deactivating a user ended."""

    sessions: int
    tokens: int


def deactivate_user(db: Database, name: str) -> Revoked:
    """Stop ``name`` from logging in, and revoke their open sessions and API tokens.

    Reactivating the user later (``activate_user``) does not bring the tokens back: a
    token that may have leaked stays dead; create a new one.

    Raises
    ------
    AccountError
        No user has that name.
    """
    now = utcnow()
    with db.session() as s:
        user = _named(s, name)
        user.active = False
        sessions = _revoke_sessions(s, user.id, now)
        tokens = _updated(
            s,
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now),
        )
    return Revoked(sessions=sessions, tokens=tokens)


def activate_user(db: Database, name: str) -> None:
    """Let a deactivated user log in again (their revoked tokens stay revoked).

    Raises
    ------
    AccountError
        No user has that name.
    """
    with db.session() as s:
        _named(s, name).active = True


# -- API tokens ----------------------------------------------------------------------------


def create_token(
    db: Database, user_id: int, name: str = "api", expires_in: timedelta | None = None
) -> str:
    """Create an API token for ``user_id``; the token itself is returned once, never stored.

    ``expires_in``: how long the token stays valid (None: until revoked).

    Raises
    ------
    AccountError
        The user does not exist or is deactivated, or ``expires_in`` is not positive.
    """
    if expires_in is not None and expires_in <= timedelta(0):
        raise AccountError(f"a token's lifetime must be positive, not {expires_in}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise AccountError(f"no user with id {user_id}")
        if not user.active:
            raise AccountError(
                f"user {user.name!r} is deactivated; `exemplar user activate {user.name}` first"
            )
        s.add(
            ApiToken(
                user_id=user_id,
                token_hash=_digest(token),
                name=name[:64],
                created_at=now,
                expires_at=None if expires_in is None else now + expires_in,
            )
        )
    return token


#: ``last_used_at`` is refreshed at most this often, so authenticating is a read, not a
#: write, on almost every request (a write per request contended for SQLite's lock).
TOKEN_USE_RESOLUTION = timedelta(minutes=1)
#: Seconds recording a token's use may wait for the writer turn before it is skipped.
USE_RECORD_PATIENCE_S = 0.05


def _due(last: datetime | None, now: datetime) -> bool:
    return last is None or now - _aware(last) > TOKEN_USE_RESOLUTION


def _record_use(db: Database, statement: Update) -> None:
    # Bookkeeping only: the server calls this on its event loop, so it does not wait behind
    # a long write (an import, the learner); the next use records it instead.
    with (
        contextlib.suppress(WriterBusy),
        db.write_turn(USE_RECORD_PATIENCE_S),
        db.session() as s,
    ):
        s.execute(statement)


def _holder(
    db: Database,
    table: type[ApiToken | LoginSession],
    key: InstrumentedAttribute[str],
    seen: InstrumentedAttribute[datetime | None],
    secret: str,
) -> User | None:
    """The active user holding the token or session whose ``key`` is ``secret``'s digest.

    None for an unknown, revoked or expired one, or a deactivated user. Its ``seen`` column
    is refreshed at most once per :data:`TOKEN_USE_RESOLUTION`.
    """
    digest = _digest(secret)
    now = utcnow()
    with db.read() as s:
        row = s.execute(
            select(seen, table.expires_at, table.revoked_at, User)
            .join(User, User.id == table.user_id)
            .where(key == digest)
        ).first()
    if row is None:
        return None
    last, expires, revoked, user = row
    if revoked is not None or _expired(expires, now) or not user.active:
        return None
    if _due(last, now):
        _record_use(db, update(table).where(key == digest).values({seen: now}))
    return user


def user_for_token(db: Database, token: str) -> User | None:
    """The active user owning ``token`` (recording its use once a minute), or None.

    None as well for a revoked or expired token.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    return _holder(db, ApiToken, ApiToken.token_hash, ApiToken.last_used_at, token)


@dataclass(frozen=True)
class TokenInfo:
    """What ``list_tokens`` shows of a token (never the token: only its digest is stored)."""

    id: int
    user: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``"revoked"``, ``"expired"`` or ``"active"``."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if _expired(self.expires_at, now or utcnow()) else "active"


def list_tokens(db: Database, user_name: str | None = None) -> list[TokenInfo]:
    """The API tokens of every user (or of ``user_name``), oldest first.

    Raises
    ------
    AccountError
        ``user_name`` is not a user.
    """
    query = (
        select(
            ApiToken.id,
            User.name,
            ApiToken.name,
            ApiToken.created_at,
            ApiToken.last_used_at,
            ApiToken.expires_at,
            ApiToken.revoked_at,
        )
        .join(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.id)
    )
    if user_name is not None:
        user_by_name(db, user_name)  # a clear error for an unknown name
        query = query.where(User.name == user_name)
    with db.read() as s:
        rows = s.execute(query).all()
    return [
        TokenInfo(
            id=r[0],
            user=r[1],
            name=r[2],
            created_at=_aware(r[3]),
            last_used_at=None if r[4] is None else _aware(r[4]),
            expires_at=None if r[5] is None else _aware(r[5]),
            revoked_at=None if r[6] is None else _aware(r[6]),
        )
        for r in rows
    ]


def revoke_token(db: Database, token_id: int) -> None:
    """Revoke the API token ``token_id`` (see ``list_tokens``); revoking twice is harmless.

    Raises
    ------
    AccountError
        No token has that id.
    """
    with db.session() as s:
        token = s.get(ApiToken, token_id)
        if token is None:
            raise AccountError(f"no API token with id {token_id}; see `exemplar user token --list`")
        if token.revoked_at is None:
            token.revoked_at = utcnow()


# -- login sessions -----------------------------------------------------------------------


def create_session(db: Database, user_id: int, ttl_seconds: float) -> str:
    """Open a login session for ``user_id`` lasting ``ttl_seconds``; returns its secret.

    The secret goes into the cookie; the database keeps only its SHA-256 digest.

    Raises
    ------
    AccountError
        The user does not exist or is deactivated, or ``ttl_seconds`` is not positive.
    """
    if not ttl_seconds > 0:
        raise AccountError(f"a session's lifetime must be positive, not {ttl_seconds} s")
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    with db.session() as s:
        user = s.get(User, user_id)
        if user is None or not user.active:
            raise AccountError(f"no active user with id {user_id}")
        s.add(
            LoginSession(
                id=_digest(secret),
                user_id=user_id,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
        )
    return secret


def session_user(db: Database, secret: str) -> User | None:
    """The active user of the session ``secret`` (recording its use once a minute), or None.

    None for an unknown, revoked or expired session, or a deactivated user.
    """
    if not secret:
        return None
    return _holder(db, LoginSession, LoginSession.id, LoginSession.last_seen_at, secret)


def revoke_session(db: Database, secret: str) -> None:
    """End the session ``secret`` (logout); an unknown or ended session is left as it is."""
    with db.session() as s:
        s.execute(
            update(LoginSession)
            .where(LoginSession.id == _digest(secret), LoginSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


def revoke_user_sessions(db: Database, user_id: int) -> int:
    """End every session of ``user_id`` not ended yet; returns how many it ended."""
    with db.session() as s:
        return _revoke_sessions(s, user_id, utcnow())


def _revoke_sessions(s: Session, user_id: int, now: datetime) -> int:
    return _updated(
        s,
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=now),
    )
