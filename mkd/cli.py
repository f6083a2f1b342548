"""Commands of the offline flow: ``relevance data ...`` and ``relevance evaluate``."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def evaluate(
    pairs: Annotated[Path, typer.Option(help="TSV with at least the columns query, product_title, relevance.")],
    model: Annotated[str, typer.Option(
        help="'bm25', 'rules' (the rule annotator without the label; 'rules:CATALOGUE'), 'teacher' (the shipped "
             "local ELLM-rele; 'teacher:ADAPTER' for another), a model repository "
             "(ONNX Runtime only), an exported version directory, or a student checkpoint directory.")] = "bm25",
    version: Annotated[int | None, typer.Option(
        min=1, help="Model repository version (default: the highest).")] = None,
    model_name: Annotated[str | None, typer.Option(
        help="Model in the repository (default: colbert).")] = None,
    out: Annotated[Path | None, typer.Option(help="Directory for report.json, scores.tsv and ROC/PR plots.")] = None,
    long_tail_min_queries: Annotated[int, typer.Option(
        min=1, help="A query is long-tail if a token occurs in fewer train queries than this.")] = 3,
) -> None:
    """Evaluate MODEL on PAIRS. The last line printed is one JSON object (roc_auc, neg_pr_auc, ndcg10, n, ...)."""
    from mkd.evaluation.report import run_evaluation
    from mkd.evaluation.scorers import UnknownModelError

    try:
        report = run_evaluation(pairs, model, out, long_tail_min_queries=long_tail_min_queries,
                                show_progress=sys.stderr.isatty(), version=version, model_name=model_name)
    except (PairsFileError, UnknownModelError) as exc:
        raise fail(str(exc)) from None
    table = Table(title=f"{model} on {pairs}")
    table.add_column("slice")
    for column in ("n", "queries", "ROC-AUC", "Neg PR-AUC", "NDCG@10"):
        table.add_column(column, justify="right")
    for name, part in (("all", report), ("long tail", report["long_tail"]), ("head", report["head"])):
        table.add_row(name, str(part["n"]), str(part["n_queries"]), _fmt(part["roc_auc"]),
                      _fmt(part["neg_pr_auc"]), _fmt(part["ndcg10"]))
    Console().print(table)
    Console().print(f"long tail: {report['long_tail']['definition']}", highlight=False)
    if out is not None:
        Console().print(f"report, scores and plots in {out}", highlight=False)
    print(json.dumps(report))
