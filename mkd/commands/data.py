"""``relevance data prepare``: the splits by query, the catalogue and the unlabeled BM25 pool."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from relevance_core.console import fail
from relevance_core.data import (
    PairsFileError,
    build_catalogue,
    default_pairs_path,
    derived_dir,
    load_pairs,
    split_pairs,
    write_catalogue,
    write_pairs,
)

data_app = typer.Typer(no_args_is_help=True)
DEFAULT_PAIRS = default_pairs_path()
DEFAULT_DERIVED = derived_dir()


@data_app.command("prepare")
def prepare(
    pairs: Annotated[Path, typer.Option(help="Labelled pairs TSV to split.")] = DEFAULT_PAIRS,
    out: Annotated[Path, typer.Option(help="Output directory.")] = DEFAULT_DERIVED,
    pool_k: Annotated[int, typer.Option(min=1, help="BM25 candidates per train query in the unlabeled pool.")] = 20,
) -> None:
    """Split by query (80/10/10), write the catalogue and the unlabeled BM25 pool; prints a JSON summary."""
    from mkd.unlabeled_pool import build_pool

    try:
        rows = load_pairs(pairs)
    except PairsFileError as exc:
        raise fail(str(exc)) from None
    splits = split_pairs(rows)
    for name, part in splits.items():
        write_pairs(out / f"{name}.tsv", part)
    catalogue = build_catalogue(rows)
    write_catalogue(out / "catalogue.tsv", catalogue)
    pool = build_pool(splits["train"], catalogue, k=pool_k)
    write_pairs(out / "pool.tsv", [p.pair for p in pool],
                extra={"bm25_score": [f"{p.bm25_score:.4f}" for p in pool], "rank": [p.rank for p in pool]})
    summary: dict[str, Any] = {
        "source": str(pairs),
        "out": str(out),
        "splits": {
            name: {"pairs": len(part), "queries": len({p.query for p in part}),
                   "good_rate": round(sum(p.good for p in part) / max(len(part), 1), 4)}
            for name, part in splits.items()
        },
        "catalogue_products": len(catalogue),
        "pool": {"k": pool_k, "pairs": len(pool), "queries": len({p.pair.query for p in pool}),
                 "products": len({p.pair.product_uid for p in pool}),
                 "per_query_hist": dict(sorted(Counter(Counter(p.pair.query for p in pool).values()).items()))},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary))
