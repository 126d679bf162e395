"""Server commands: ``exemplar serve`` and ``exemplar user add|token``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exemplar.cli.main import app, console, one_line_errors

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
) -> None:
    """Start the labeling server (JSON API under /api/v1, docs at /api/v1/docs)."""
    import uvicorn

    from exemplar.server import create_app

    web = create_app(project, https_only=https_only, background_learning=True)
    console.print(f"serving {project} on http://{host}:{port}/label (API docs: /api/v1/docs)")
    uvicorn.run(web, host=host, port=port, log_level="info")


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


@user_app.command("token")
@one_line_errors
def user_token(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    token_name: Annotated[str, typer.Option("--name", help="A label for the token.")] = "cli",
    project: ProjectDir = Path("."),
) -> None:
    """Create an API token (printed once; send it as `Authorization: Bearer <token>`)."""
    from sqlalchemy import select

    from exemplar.errors import ProjectError
    from exemplar.project import Project
    from exemplar.store.accounts import User, create_token

    with Project.open(project) as proj:
        with proj.db.read() as s:
            user_id = s.scalar(select(User.id).where(User.name == name))
        if user_id is None:
            raise ProjectError(f"no user {name!r}; create one with `exemplar user add`")
        token = create_token(proj.db, user_id, token_name)
    typer.echo(token)
