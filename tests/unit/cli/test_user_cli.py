"""`exemplar user list|deactivate|activate|token` through the CLI, checked in the database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.cli.server_commands import parse_duration
from exemplar.errors import UsageError
from exemplar.project import Project
from exemplar.store.accounts import (
    ApiToken,
    add_user,
    create_session,
    create_token,
    list_tokens,
    session_user,
    user_for_token,
    verify_password,
)

runner = CliRunner()
ENV = {"COLUMNS": "200"}
PASSWORD = "correct horse battery"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project with an admin and an annotator."""
    path = tmp_path / "proj"
    with Project.init(path, ["a", "b"]) as project:
        add_user(project.db, "boss", "admin", PASSWORD)
        add_user(project.db, "ann", "annotator", PASSWORD)
    return path


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=ENV)
    return result.exit_code, result.output


def test_user_list(root: Path) -> None:
    code, out = _run("user", "list", "-p", str(root))
    assert code == 0, out
    assert "ann" in out and "annotator" in out and "boss" in out and "admin" in out
    assert "deactivated" not in out


def test_deactivate_and_activate(root: Path) -> None:
    with Project.open(root) as project:
        ann = verify_password(project.db, "ann", PASSWORD)
        assert ann is not None
        token = create_token(project.db, ann.id)
        secret = create_session(project.db, ann.id, ttl_seconds=3600)
    code, out = _run("user", "deactivate", "ann", "-p", str(root))
    assert code == 0, out
    assert "1 session(s) and 1 API token(s) revoked" in out
    with Project.open(root) as project:
        assert verify_password(project.db, "ann", PASSWORD) is None
        assert user_for_token(project.db, token) is None
        assert session_user(project.db, secret) is None
        assert verify_password(project.db, "boss", PASSWORD) is not None
    assert "deactivated" in _run("user", "list", "-p", str(root))[1]
    code, out = _run("user", "activate", "ann", "-p", str(root))
    assert code == 0, out
    with Project.open(root) as project:
        assert verify_password(project.db, "ann", PASSWORD) is not None
        assert user_for_token(project.db, token) is None  # revoked tokens stay revoked


@pytest.mark.parametrize("command", ["deactivate", "activate"])
def test_unknown_user_is_a_clear_error(root: Path, command: str) -> None:
    code, out = _run("user", command, "ghost", "-p", str(root))
    assert code == 2
    assert "no user 'ghost'" in out and "Traceback" not in out


def test_token_with_expiry_list_and_revoke(root: Path) -> None:
    code, token = _run("user", "token", "ann", "--expires", "30d", "-p", str(root))
    assert code == 0, token
    token = token.strip()
    assert token.startswith("exm_")
    code, forever = _run("user", "token", "boss", "--name", "laptop", "-p", str(root))
    assert code == 0, forever
    with Project.open(root) as project:
        assert user_for_token(project.db, token) is not None
        tokens = {t.user: t for t in list_tokens(project.db)}
        ann_token = tokens["ann"]
        assert ann_token.expires_at is not None
        lifetime = ann_token.expires_at - ann_token.created_at
        assert abs(lifetime - timedelta(days=30)) < timedelta(seconds=5)
        assert tokens["boss"].expires_at is None and tokens["boss"].name == "laptop"
    code, listing = _run("user", "token", "--list", "-p", str(root))
    assert code == 0, listing
    assert "ann" in listing and "laptop" in listing and "never" in listing
    assert token not in listing and forever.strip() not in listing
    code, mine = _run("user", "token", "ann", "--list", "-p", str(root))
    assert code == 0 and "laptop" not in mine and "cli" in mine
    code, out = _run("user", "token", "--revoke", str(ann_token.id), "-p", str(root))
    assert code == 0, out
    assert f"revoked API token {ann_token.id}" in out
    with Project.open(root) as project:
        assert user_for_token(project.db, token) is None
        assert user_for_token(project.db, forever.strip()) is not None
        with project.db.read() as s:
            assert s.scalar(select(ApiToken.revoked_at).where(ApiToken.id == ann_token.id))
    assert "revoked" in _run("user", "token", "--list", "-p", str(root))[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["user", "token", "ghost"], "no user 'ghost'"),
        (["user", "token", "--revoke", "999"], "no API token with id 999"),
        (["user", "token", "ann", "--expires", "3x"], "invalid duration '3x'"),
        (["user", "token", "ann", "--expires", "0h"], "longer than 0"),
        (["user", "token", "ann", "--expires", "-1d"], "invalid duration"),
        (["user", "token", "--list", "--revoke", "1"], "either --list or --revoke"),
        (["user", "token", "ann", "--revoke", "1"], "token id only"),
        (["user", "token"], "name the user"),
        (["user", "token", "--list", "ghost"], "no user 'ghost'"),
    ],
)
def test_token_errors(root: Path, args: list[str], message: str) -> None:
    code, out = _run(*args, "-p", str(root))
    assert code == 2, out
    assert message in out and "Traceback" not in out
    with Project.open(root) as project:
        assert list_tokens(project.db) == []  # nothing was created


def test_token_for_a_deactivated_user_is_refused(root: Path) -> None:
    assert _run("user", "deactivate", "ann", "-p", str(root))[0] == 0
    code, out = _run("user", "token", "ann", "-p", str(root))
    assert code == 2 and "deactivated" in out


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("90m", 5400),
        ("12h", 43_200),
        ("30d", 2_592_000),
        ("2w", 1_209_600),
        ("1d12h", 129_600),
        (" 12H ", 43_200),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "d", "1.5h", "12 h", "1y", "0s", "h12"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)
