"""Accounts migration, the `user add` command, and a real uvicorn server over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import server_helpers
from alembic import command
from server_helpers import PASSWORD
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from exemplar.cli.main import app as cli
from exemplar.project import Project
from exemplar.server import create_app
from exemplar.store.accounts import AccountError, add_user, verify_password
from exemplar.store.db import _alembic_config, sqlite_url
from uvicorn_server import serve

# Fixtures shared through a helper module (a second `conftest` would shadow tests/conftest).
project_root = server_helpers.project_root


def test_project_from_0001_is_upgraded_on_open(tmp_path: Path) -> None:
    root = tmp_path / "old"
    Project.init(root, ["a", "b"]).close()
    url = sqlite_url(root / "exemplar.db")
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert "users" not in inspect(engine).get_table_names()
    engine.dispose()
    with Project.open(root) as project:
        tables = inspect(project.db.engine).get_table_names()
        assert {"users", "api_tokens"} <= set(tables)
        add_user(project.db, "ann", "annotator", PASSWORD)
        assert verify_password(project.db, "ann", PASSWORD) is not None
        assert verify_password(project.db, "ann", "wrong password") is None
        with pytest.raises(AccountError, match="unknown role"):
            add_user(project.db, "bob", "king", PASSWORD)
        with pytest.raises(AccountError, match="already exists"):
            add_user(project.db, "ann", "annotator", PASSWORD)


def test_cli_user_add_and_token(project_root: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "user",
            "add",
            "carol",
            "--role",
            "reviewer",
            "--password",
            PASSWORD,
            "-p",
            str(project_root),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "carol" in result.output
    prompted = runner.invoke(
        cli, ["user", "add", "dave", "-p", str(project_root)], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert prompted.exit_code == 0, prompted.output
    bad = runner.invoke(
        cli,
        ["user", "add", "eve", "--role", "god", "--password", PASSWORD, "-p", str(project_root)],
    )
    assert bad.exit_code == 2 and "unknown role" in bad.output
    token = runner.invoke(cli, ["user", "token", "carol", "-p", str(project_root)])
    assert token.exit_code == 0 and token.output.startswith("exm_")
    with Project.open(project_root) as project:
        user = verify_password(project.db, "dave", PASSWORD)
        assert user is not None and user.role == "annotator"


def test_real_uvicorn_login_next_submit(project_root: Path) -> None:
    with serve(create_app(project_root)) as url, httpx.Client(base_url=url, timeout=10) as http:
        login = http.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
        assert login.status_code == 200
        assert "samesite=strict" in login.headers["set-cookie"].lower()
        assert "httponly" in login.headers["set-cookie"].lower()
        http.headers["X-Exemplar-CSRF"] = login.json()["csrf"]
        item = http.get("/api/v1/items/next").json()
        body = {"entry_id": item["entry_id"], "label": "7", "idempotency_key": "http-key-1"}
        first = http.post("/api/v1/labels", json=body)
        retry = http.post("/api/v1/labels", json=body)
        assert first.status_code == 200 and first.json() == retry.json()
        assert http.get("/api/v1/items/next").json()["entry_id"] != item["entry_id"]
        assert http.get("/label").status_code == 200


def test_token_use_is_recorded_at_most_once_a_minute(tmp_path: Path) -> None:
    from datetime import timedelta

    from sqlalchemy import select, update

    from exemplar.store.accounts import ApiToken, create_token, user_for_token

    with Project.init(tmp_path / "p", ["a", "b"]) as project:
        user = add_user(project.db, "scripter", "annotator", PASSWORD)
        token = create_token(project.db, user.id, "ci")

        def last_used() -> object:
            with project.db.read() as s:
                return s.scalar(select(ApiToken.last_used_at))

        assert user_for_token(project.db, token).name == "scripter"  # type: ignore[union-attr]
        first = last_used()
        assert first is not None
        user_for_token(project.db, token)
        assert last_used() == first  # within the minute: a read, no write
        with project.db.session() as s:
            s.execute(update(ApiToken).values(last_used_at=first - timedelta(minutes=5)))  # type: ignore[operator]
        user_for_token(project.db, token)
        assert last_used() != first - timedelta(minutes=5)  # type: ignore[operator]
        assert user_for_token(project.db, "exm_not-a-token") is None
