"""Typed core errors -> one clear message and the documented exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from orchestrator.cli.render import emit_json
from orchestrator.errors import BluegreenError
from orchestrator.text import terminal

EXIT_CODES = """\b
Exit codes:
  0  done
  1  error (router, state store, Ansible, lab)
  2  bad usage or bad input (config, inventory, campaign file, arguments); nothing changed
  3  verification failed; traffic not moved (exposure: a CVE is open at the threshold)
  4  rolled back automatically during bake
  5  lock held by another run
  6  outside the maintenance window / deferred"""

F = TypeVar("F", bound=Callable[..., Any])


def fail(exc: BluegreenError, as_json: bool) -> None:
    if as_json:
        emit_json({"error": exc.message, "fix": exc.hint, "exit_code": exc.exit_code})
    else:
        # messages quote hosts and files: no sequence of theirs, not even a colour
        click.secho(f"error: {terminal(exc.message)}", fg="red", err=True)
        if exc.hint:
            click.echo(f"  fix: {terminal(exc.hint)}", err=True)
    sys.exit(exc.exit_code)


def handles_errors(func: F) -> F:
    """Turn typed core errors into one clear message and the documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BluegreenError as exc:
            fail(exc, bool(kwargs.get("as_json")))
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
