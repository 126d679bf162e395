"""What every command module shares: the typer app, the consoles, one-line errors.

The command modules (``main``, ``project_commands``, ``server_commands``) import this module
and register their commands on :data:`app`; ``main`` imports the other two so that they do.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from exemplar.errors import ExemplarError

__all__ = ["app", "console", "err_console", "one_line_errors", "parse_params"]

app = typer.Typer(
    name="exemplar",
    help="Active learning that proves itself against random sampling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(fn: F) -> F:
    """Print exemplar errors (and unexpected ones) as a single line and exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ExemplarError as exc:
            if os.environ.get("EXEMPLAR_DEBUG"):
                raise
            _print_error("error:", str(exc))
            raise typer.Exit(2) from None
        except (OSError, MemoryError) as exc:
            if os.environ.get("EXEMPLAR_DEBUG"):
                raise
            _print_error("error:", str(exc))
            raise typer.Exit(1) from None
        except Exception as exc:  # a bug: still one line, with the way to see more
            if os.environ.get("EXEMPLAR_DEBUG"):
                raise
            damaged = _damaged_database(exc)
            if damaged is not None:  # a corrupt SQLite file met outside SQLAlchemy
                _print_error("error:", str(damaged))
                raise typer.Exit(2) from None
            _print_error(
                "internal error:",
                f"{type(exc).__name__}: {exc} "
                "(set EXEMPLAR_DEBUG=1 to see the traceback, and please report it)",
            )
            raise typer.Exit(3) from None

    return wrapper  # type: ignore[return-value]


def _damaged_database(exc: BaseException) -> ExemplarError | None:
    """The damaged-database error for a raw sqlite3 error of a corrupt file, else None.

    Statements run through SQLAlchemy raise ``DamagedProjectError`` themselves; this
    catches the few hot paths that use the driver's cursor directly.
    """
    import sqlite3

    if not isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        getattr(exc, "orig", None), sqlite3.DatabaseError
    ):
        return None
    from exemplar.store.db import damaged_database, is_damage

    if not is_damage(exc):
        return None
    return damaged_database(None, str(getattr(exc, "orig", None) or exc))


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=20", "C=0.5", "optimizer=sgd"]`` -> a dict; values are JSON when they parse."""
    import json

    from exemplar.errors import ConfigError

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-param {pair!r} is not KEY=VALUE")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def _print_error(prefix: str, message: str) -> None:
    """One line on stderr; the message is plain text (``[section]`` is not rich markup)."""
    err_console.print(
        Text.assemble((prefix, "bold red"), " ", message), highlight=False, soft_wrap=True
    )
