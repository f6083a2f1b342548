"""``relevance teacher annotate``: label-consistent CoT annotations of labelled pairs (`mkd.annotation.llm`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mkd.commands.args import CATALOGUE, TRAIN_PAIRS, endpoint_arg, read_annotator, read_pairs


def annotate(
    out: Annotated[Path, typer.Option(help="Annotation JSONL (appended to; pairs already in it are skipped).")],
    pairs: Annotated[Path, typer.Option(help="Labelled pairs TSV to annotate.")] = TRAIN_PAIRS,
    endpoint: Annotated[list[str] | None, typer.Option(
        help="An annotating L-LLM behind an OpenAI-compatible API, as MODEL=BASE_URL (repeatable: tried in "
             "order). Without it, the local programmatic stand-in annotates.")] = None,
    n: Annotated[int, typer.Option(min=1, help="Samples per endpoint (self-consistency).")] = 4,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.8,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.7,
    top_k: Annotated[int, typer.Option(min=1)] = 50,
    concurrency: Annotated[int, typer.Option(min=1, help="Pairs in flight (endpoints).")] = 8,
    max_tokens: Annotated[int, typer.Option(min=16)] = 256,
    api_key: Annotated[str | None, typer.Option(envvar="RELEVANCE_TEACHER_API_KEY")] = None,
    catalogue: Annotated[Path, typer.Option(help="Catalogue TSV whose titles give the brand lexicon (local).")]
    = CATALOGUE,
    limit: Annotated[int | None, typer.Option(min=1, help="Annotate a random subset of this many pairs.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write label-consistent CoT annotations (P_L-LLM = S + E + Q + T). The last line printed is a JSON summary:
    coverage (share of pairs with a CoT that agrees with the label) and per-aspect counts."""
    from mkd.annotation.llm import EndpointSpec, annotate_endpoints, annotate_local

    chosen = read_pairs([pairs], require_label=True, limit=limit, seed=seed)
    if endpoint:
        specs = [EndpointSpec(base_url=url, model=model, api_key=api_key) for model, url in map(endpoint_arg, endpoint)]
        summary = asyncio.run(annotate_endpoints(chosen, specs, out, n=n, concurrency=concurrency,
                                                 temperature=temperature, top_p=top_p, top_k=top_k,
                                                 max_tokens=max_tokens))
        if summary.failed and not summary.annotated:
            Console(stderr=True).print(f"[red]every endpoint failed[/red]: {summary.errors[:2]}", highlight=False)
            print(json.dumps(summary.to_dict()))
            raise typer.Exit(3)
    else:
        summary = annotate_local(chosen, read_annotator(catalogue), out)
    print(json.dumps(summary.to_dict() | {"out": str(out)}))
