"""The command line's one way to stop on a user error: a red one-line message on stderr, exit code 2."""

from __future__ import annotations

import typer
from rich.console import Console

err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print a one-line error (no traceback) and return the exit (code 2) for the caller to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)
