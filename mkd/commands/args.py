"""What the offline commands share: the derived splits' default paths and the readers that turn a bad argument
into a clear error naming the option (`relevance_core.console.fail`)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from relevance_core.annotation import Annotator
from relevance_core.console import fail
from relevance_core.data import Pair, PairsFileError, derived_dir, load_pairs

TRAIN_PAIRS = derived_dir() / "train.tsv"
VALID_PAIRS = derived_dir() / "valid.tsv"
TEST_PAIRS = derived_dir() / "test.tsv"
CATALOGUE = derived_dir() / "catalogue.tsv"

Grounded = Annotated[bool, typer.Option(
    "--grounded", help="Grounded decoding: send each pair's grammar of grounded CoTs (every value a span of the query "
                       "or title) as structured_outputs.grammar; endpoints only.")]


def read_pairs(paths: Sequence[Path], *, require_label: bool, limit: int | None = None, seed: int = 0,
               ) -> list[Pair]:
    """The pairs of ``paths`` in order; with ``limit``, a random subset of that many (fixed ``seed``)."""
    pairs: list[Pair] = []
    try:
        for path in paths:
            pairs.extend(load_pairs(path, require_label=require_label))
    except PairsFileError as exc:
        raise fail(str(exc)) from None
    if limit is not None and limit < len(pairs):
        pairs = random.Random(seed).sample(pairs, limit)
    return pairs


def read_annotator(catalogue: Path) -> Annotator:
    """The rule annotator with the brand lexicon of ``catalogue``'s titles."""
    if not catalogue.is_file():
        raise fail(f"--catalogue {catalogue}: no such file (run `relevance data prepare`)")
    try:
        return Annotator.from_catalogue(catalogue)
    except PairsFileError as exc:
        raise fail(f"--catalogue {exc}") from None


def endpoint_arg(value: str) -> tuple[str, str]:
    """``MODEL=BASE_URL`` of an OpenAI-compatible endpoint."""
    model, _, url = value.partition("=")
    if not url or not model or "://" not in url:
        raise fail(f"--endpoint {value!r}: expected MODEL=URL, e.g. qwen2-72b=http://host:8000/v1")
    return model, url
