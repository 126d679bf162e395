"""Accounts in the store: users, API tokens (expiry, revocation) and login sessions.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from exemplar.store.accounts import (
    AccountError,
    ApiToken,
    LoginSession,
    User,
    activate_user,
    add_user,
    create_session,
    create_token,
    deactivate_user,
    list_tokens,
    list_users,
    revoke_session,
    revoke_token,
    revoke_user_sessions,
    session_user,
    user_by_name,
    user_for_token,
    verify_password,
)
from exemplar.store.db import Database, open_database, sqlite_url
from exemplar.store.schema import utcnow

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

PASSWORD = "correct horse"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = open_database(sqlite_url(tmp_path / "accounts.db"))
        yield database
        database.dispose()
        return
    for url in fresh_pg_database():
        database = open_database(url)
        yield database
        database.dispose()


@pytest.fixture
def ann(db: Database) -> User:
    return add_user(db, "ann", "annotator", PASSWORD)


# -- tokens --------------------------------------------------------------------------------


def test_token_without_expiry_works_and_only_its_digest_is_stored(db: Database, ann: User) -> None:
    token = create_token(db, ann.id, "ci")
    user = user_for_token(db, token)
    assert user is not None and user.name == "ann"
    with db.read() as s:
        row = s.scalar(select(ApiToken))
    assert row is not None and row.expires_at is None and row.revoked_at is None
    assert token not in (row.token_hash, row.name)


def test_token_expires(db: Database, ann: User) -> None:
    token = create_token(db, ann.id, "short", expires_in=timedelta(hours=1))
    assert user_for_token(db, token) is not None
    with db.read() as s:
        expires = s.scalar(select(ApiToken.expires_at))
    assert expires is not None
    with db.session() as s:  # an hour later
        s.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert user_for_token(db, token) is None
    assert list_tokens(db)[0].state() == "expired"


@pytest.mark.parametrize("lifetime", [timedelta(0), timedelta(seconds=-5)])
def test_token_lifetime_must_be_positive(db: Database, ann: User, lifetime: timedelta) -> None:
    with pytest.raises(AccountError, match="positive"):
        create_token(db, ann.id, expires_in=lifetime)


def test_revoked_token_is_refused_and_others_keep_working(db: Database, ann: User) -> None:
    first = create_token(db, ann.id, "first")
    second = create_token(db, ann.id, "second")
    ids = {t.name: t.id for t in list_tokens(db)}
    revoke_token(db, ids["first"])
    assert user_for_token(db, first) is None
    assert user_for_token(db, second) is not None
    revoke_token(db, ids["first"])  # twice is harmless
    states = {t.name: t.state() for t in list_tokens(db)}
    assert states == {"first": "revoked", "second": "active"}


def test_revoking_an_unknown_token_is_a_clear_error(db: Database) -> None:
    with pytest.raises(AccountError, match="no API token with id 42"):
        revoke_token(db, 42)


def test_list_tokens_shows_everything_but_the_secret(db: Database, ann: User) -> None:
    bob = add_user(db, "bob", "reviewer", PASSWORD)
    token = create_token(db, ann.id, "ci", expires_in=timedelta(days=30))
    create_token(db, bob.id, "laptop")
    user_for_token(db, token)  # records the use
    tokens = list_tokens(db)
    assert [(t.user, t.name) for t in tokens] == [("ann", "ci"), ("bob", "laptop")]
    ci = tokens[0]
    assert ci.last_used_at is not None and ci.expires_at is not None
    assert timedelta(days=29) < ci.expires_at - ci.created_at <= timedelta(days=30)
    assert ci.created_at.tzinfo is not None
    assert token not in repr(tokens)
    assert [t.name for t in list_tokens(db, "bob")] == ["laptop"]
    with pytest.raises(AccountError, match="no user 'carol'"):
        list_tokens(db, "carol")


def test_no_token_for_unknown_or_deactivated_user(db: Database, ann: User) -> None:
    with pytest.raises(AccountError, match="no user with id"):
        create_token(db, 999)
    deactivate_user(db, "ann")
    with pytest.raises(AccountError, match="deactivated"):
        create_token(db, ann.id)


# -- users ---------------------------------------------------------------------------------


def test_list_users_includes_deactivated_ones(db: Database, ann: User) -> None:
    add_user(db, "bob", "admin", PASSWORD)
    deactivate_user(db, "bob")
    users = list_users(db)
    assert [(u.name, u.role, u.active) for u in users] == [
        ("ann", "annotator", True),
        ("bob", "admin", False),
    ]
    assert user_by_name(db, "bob").active is False
    with pytest.raises(AccountError, match="no user 'zed'"):
        user_by_name(db, "zed")


def test_deactivate_revokes_sessions_and_tokens_and_activate_lets_in_again(
    db: Database, ann: User
) -> None:
    token = create_token(db, ann.id)
    secret = create_session(db, ann.id, ttl_seconds=3600)
    bob = add_user(db, "bob", "annotator", PASSWORD)
    bob_token = create_token(db, bob.id)
    revoked = deactivate_user(db, "ann")
    assert (revoked.sessions, revoked.tokens) == (1, 1)
    assert user_for_token(db, token) is None
    assert session_user(db, secret) is None
    assert verify_password(db, "ann", PASSWORD) is None
    assert user_for_token(db, bob_token) is not None  # other users are untouched
    activate_user(db, "ann")
    assert verify_password(db, "ann", PASSWORD) is not None
    # A token or session that may have leaked stays dead after reactivation.
    assert user_for_token(db, token) is None
    assert session_user(db, secret) is None
    assert user_for_token(db, create_token(db, ann.id)) is not None


def test_deactivating_an_unknown_user_is_a_clear_error(db: Database) -> None:
    with pytest.raises(AccountError, match="no user 'ghost'"):
        deactivate_user(db, "ghost")
    with pytest.raises(AccountError, match="no user 'ghost'"):
        activate_user(db, "ghost")


def test_deactivated_user_with_a_still_valid_token_row_is_refused(db: Database, ann: User) -> None:
    """``active`` alone refuses the user, even if a token row was never revoked."""
    token = create_token(db, ann.id)
    with db.session() as s:
        s.execute(update(User).where(User.id == ann.id).values(active=False))
    assert user_for_token(db, token) is None


# -- sessions ------------------------------------------------------------------------------


def test_session_lifecycle(db: Database, ann: User) -> None:
    secret = create_session(db, ann.id, ttl_seconds=60)
    user = session_user(db, secret)
    assert user is not None and user.name == "ann"
    with db.read() as s:
        row = s.scalar(select(LoginSession))
    assert row is not None and row.id != secret and len(row.id) == 64
    assert row.last_seen_at is not None  # the first use is recorded
    revoke_session(db, secret)
    assert session_user(db, secret) is None  # a replayed cookie after logout is refused
    revoke_session(db, secret)  # twice is harmless
    revoke_session(db, "never-issued")


def test_unknown_and_empty_sessions_are_refused(db: Database, ann: User) -> None:
    create_session(db, ann.id, ttl_seconds=60)
    assert session_user(db, "made-up") is None
    assert session_user(db, "") is None


def test_session_expires(db: Database, ann: User) -> None:
    secret = create_session(db, ann.id, ttl_seconds=60)
    with db.session() as s:
        s.execute(update(LoginSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert session_user(db, secret) is None


def test_session_of_deactivated_user_is_refused(db: Database, ann: User) -> None:
    secret = create_session(db, ann.id, ttl_seconds=60)
    with db.session() as s:
        s.execute(update(User).where(User.id == ann.id).values(active=False))
    assert session_user(db, secret) is None


def test_revoke_user_sessions_ends_only_that_users_open_sessions(db: Database, ann: User) -> None:
    bob = add_user(db, "bob", "annotator", PASSWORD)
    mine = [create_session(db, ann.id, ttl_seconds=60) for _ in range(3)]
    revoke_session(db, mine[0])
    theirs = create_session(db, bob.id, ttl_seconds=60)
    assert revoke_user_sessions(db, ann.id) == 2
    assert all(session_user(db, s) is None for s in mine)
    assert session_user(db, theirs) is not None
    assert revoke_user_sessions(db, ann.id) == 0


def test_session_needs_an_active_user_and_a_positive_lifetime(db: Database, ann: User) -> None:
    with pytest.raises(AccountError, match="positive"):
        create_session(db, ann.id, ttl_seconds=0)
    with pytest.raises(AccountError, match="no active user"):
        create_session(db, 999, ttl_seconds=60)
    deactivate_user(db, "ann")
    with pytest.raises(AccountError, match="no active user"):
        create_session(db, ann.id, ttl_seconds=60)
