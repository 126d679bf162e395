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
