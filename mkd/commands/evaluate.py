"""``relevance evaluate``: score a labelled pairs file with a model (`mkd.scorers`) and report overall and
long-tail metrics (`mkd.evaluation.report`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from relevance_core.console import fail
from relevance_core.data import PairsFileError


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
    from mkd.scorers import UnknownModelError, load_scorer

    try:
        # the model first, so that a bad --model fails before the pairs are read
        scorer = load_scorer(model, version=version, model_name=model_name, show_progress=sys.stderr.isatty())
        report = run_evaluation(pairs, scorer, out, model=model, long_tail_min_queries=long_tail_min_queries)
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
