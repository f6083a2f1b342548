"""``relevance cot``: parse and render ELLM-rele chains of thought from the command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from relevance_core.cot.grammar import Explanation, parse, render

cot_app = typer.Typer(no_args_is_help=True)


@cot_app.command("parse")
def parse_command(
    query: Annotated[str, typer.Option(help="The search query the CoT was generated for.")],
    title: Annotated[str, typer.Option(help="The item title the CoT was generated for.")],
) -> None:
    """Parse a CoT read from stdin; print the ParseResult as JSON. Exit code 1 if the text is malformed."""
    result = parse(sys.stdin.read(), query, title)
    typer.echo(result.model_dump_json(indent=2))
    if not result.ok:
        raise typer.Exit(1)


@cot_app.command("render")
def render_command() -> None:
    """Render an Explanation JSON read from stdin as CoT text. Exit code 1 if the JSON is not an Explanation."""
    try:
        explanation = Explanation.model_validate_json(sys.stdin.read())
    except ValidationError as exc:
        typer.echo(f"not an Explanation: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(render(explanation))
