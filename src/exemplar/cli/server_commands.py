"""Server commands: ``exemplar serve`` and ``exemplar user add|list|deactivate|activate|token``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from exemplar.cli.common import app, console, one_line_errors
from exemplar.errors import UsageError

if TYPE_CHECKING:
    from exemplar.store.accounts import TokenInfo

ProjectDir = Annotated[Path, typer.Option("--project", "-p", help="The project folder.")]

user_app = typer.Typer(help="Manage the labeling server's accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@app.command()
@one_line_errors
def serve(
    project: Annotated[Path, typer.Argument(help="The project folder.")] = Path("."),
    host: Annotated[
        str, typer.Option(help="Address to listen on (default: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    https_only: Annotated[
        bool, typer.Option(help="Mark the session cookie Secure (when behind HTTPS).")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="Web worker processes (about one per CPU core).")
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    learner_nice: Annotated[
        int,
        typer.Option(min=0, max=19, help="Niceness added to the background learner process."),
    ] = 10,
) -> None:
    """Start the labeling server (JSON API under /api/v1, docs at /api/v1/docs).

    With a human oracle, a background learner retrains in a process of its own at a lower
    CPU priority, so annotators never wait for training; the web workers share the queue
    through the database (leases are atomic there).
    """
    import os

    import uvicorn

    from exemplar.project import Project
    from exemplar.server import app as server_app
    from exemplar.server.worker import LearnerProcess

    root = project.resolve()
    with Project.open(root) as proj:  # fail here, not in every worker, if it cannot open
        human = proj.config.oracle.kind == "human"
    os.environ[server_app.ENV_ROOT] = str(root)
    os.environ[server_app.ENV_HTTPS_ONLY] = "1" if https_only else "0"
    os.environ[server_app.ENV_LEARNER_PROCESS] = "1" if human else "0"
    learner = LearnerProcess(root, nice=learner_nice) if human else None
    if learner is not None:
        learner.start()
    console.print(f"serving {project} on http://{host}:{port}/label (API docs: /api/v1/docs)")
    try:
        uvicorn.run(
            "exemplar.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
            log_level="info",
        )
    finally:
        if learner is not None:
            learner.stop()


@user_app.command("add")
@one_line_errors
def user_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin, reviewer or annotator.")] = "annotator",
    password: Annotated[
        str | None, typer.Option(help="Password (prompted for when left out).")
    ] = None,
    project: ProjectDir = Path("."),
) -> None:
    """Create a user of the labeling server."""
    from exemplar.project import Project
    from exemplar.store.accounts import add_user

    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with Project.open(project) as proj:
        user = add_user(proj.db, name, role, password)
    console.print(f"created user [bold]{user.name}[/] ({user.role})", highlight=False)


#: ``--expires`` units, in seconds.
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"`` or a sum such as ``"1d12h"`` as a timedelta.

    Raises
    ------
    UsageError
        The text is not a positive duration in those units.
    """
    spec = text.strip().lower()
    parts = _DURATION.findall(spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise UsageError(
            f"invalid duration {text!r}: use a whole number and a unit (s, m, h, d or w), "
            "e.g. 30d, 12h, 90m or 1d12h"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: it must be longer than 0")
    return timedelta(seconds=seconds)


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@user_app.command("list")
@one_line_errors
def user_list(project: ProjectDir = Path(".")) -> None:
    """List the users: name, role, active or deactivated, creation time."""
    from exemplar.project import Project
    from exemplar.store.accounts import list_users

    with Project.open(project) as proj:
        users = list_users(proj.db)
    if not users:
        console.print("no users yet; create one with `exemplar user add NAME --role admin`")
        return
    table = Table(title="users")
    for col in ("name", "role", "state", "created"):
        table.add_column(col, no_wrap=True)
    for user in users:
        state = "active" if user.active else "deactivated"
        table.add_row(user.name, user.role, state, _when(user.created_at))
    console.print(table)


@user_app.command("deactivate")
@one_line_errors
def user_deactivate(
    name: Annotated[str, typer.Argument(help="The user to lock out.")],
    project: ProjectDir = Path("."),
) -> None:
    """Lock a user out: no login, and their sessions and API tokens are revoked at once.

    The labeling server refuses them within a few seconds (its cache of users lasts 5 s).
    """
    from exemplar.project import Project
    from exemplar.store.accounts import deactivate_user

    with Project.open(project) as proj:
        revoked = deactivate_user(proj.db, name)
    console.print(
        f"deactivated [bold]{name}[/]: {revoked.sessions} session(s) and "
        f"{revoked.tokens} API token(s) revoked",
        highlight=False,
    )


@user_app.command("activate")
@one_line_errors
def user_activate(
    name: Annotated[str, typer.Argument(help="The user to let in again.")],
    project: ProjectDir = Path("."),
) -> None:
    """Let a deactivated user log in again (revoked tokens stay revoked: make new ones)."""
    from exemplar.project import Project
    from exemplar.store.accounts import activate_user

    with Project.open(project) as proj:
        activate_user(proj.db, name)
    console.print(f"activated [bold]{name}[/]", highlight=False)


@user_app.command("token")
@one_line_errors
def user_token(
    name: Annotated[
        str | None, typer.Argument(help="The user the new token acts as (with --list: filter).")
    ] = None,
    token_name: Annotated[str, typer.Option("--name", help="A label for the token.")] = "cli",
    expires: Annotated[
        str | None,
        typer.Option(help="Lifetime of the new token, e.g. 30d, 12h, 90m (default: no expiry)."),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the API tokens (never their secret) instead.")
    ] = False,
    revoke: Annotated[
        int | None, typer.Option(help="Revoke the token with this id (see --list) instead.")
    ] = None,
    project: ProjectDir = Path("."),
) -> None:
    """Create an API token (printed once; send it as `Authorization: Bearer <token>`).

    With --list, show the tokens; with --revoke ID, revoke one.
    """
    from exemplar.project import Project
    from exemplar.store.accounts import create_token, list_tokens, revoke_token, user_by_name

    if list_ and revoke is not None:
        raise UsageError("use either --list or --revoke, not both")
    if (list_ or revoke is not None) and expires is not None:
        raise UsageError("--expires applies to a new token, not to --list or --revoke")
    if revoke is not None and name is not None:
        raise UsageError("--revoke takes a token id only; leave out the user name")
    if not list_ and revoke is None and name is None:
        raise UsageError("name the user the token acts as: `exemplar user token NAME`")
    lifetime = None if expires is None else parse_duration(expires)
    with Project.open(project) as proj:
        if revoke is not None:
            revoke_token(proj.db, revoke)
            console.print(f"revoked API token {revoke}", highlight=False)
            return
        if list_:
            _print_tokens(list_tokens(proj.db, name))
            return
        assert name is not None
        token = create_token(proj.db, user_by_name(proj.db, name).id, token_name, lifetime)
    typer.echo(token)


def _print_tokens(tokens: list[TokenInfo]) -> None:
    if not tokens:
        console.print("no API tokens")
        return
    table = Table(title="API tokens")
    for col in ("id", "user", "name", "state", "created", "last used", "expires"):
        table.add_column(col, no_wrap=True, justify="right" if col == "id" else "left")
    now = datetime.now(UTC)
    for t in tokens:
        table.add_row(
            str(t.id),
            t.user,
            t.name,
            t.state(now),
            _when(t.created_at),
            _when(t.last_used_at),
            "never" if t.expires_at is None else _when(t.expires_at),
        )
    console.print(table)
