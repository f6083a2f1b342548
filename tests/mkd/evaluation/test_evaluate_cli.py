"""`relevance evaluate` and `relevance data prepare` end to end, on small files and through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from mkd.scorers import BM25Scorer
from relevance.cli import app
from relevance_core.data import Pair

ROWS = [
    "angle bracket\tSimpson Strong-Tie 12-Gauge Angle Bracket\t3\tfrom A",
    "angle bracket\tBEHR Premium Deck Stain\t1\t",
    "angle bracket\tEverbilt Corner Brace\t2.33\t",
    "deck stain\tBEHR Premium Deck Stain\t3\t",
    "deck stain\tDelta Shower Head in Chrome\t1\t",
    "deck stain\tSimpson Strong-Tie 12-Gauge Angle Bracket\t1.67\t",
    "shower head\tDelta Shower Head in Chrome\t2.67\t",
    "shower head\tEverbilt Corner Brace\t1.33\t",
]
HEADER = "query\tproduct_title\trelevance\tcomment\n"


def test_bm25_ranks_matching_titles_first() -> None:
    pairs = [Pair("deck stain", "BEHR Premium Deck Stain", 3.0, "1"),
             Pair("deck stain", "Delta Shower Head in Chrome", 1.0, "2")]
    scores = BM25Scorer(show_progress=False).score(pairs)
    assert scores[0] > scores[1] == 0


def test_evaluate_prints_json_last_and_writes_report(write_tsv, tmp_path: Path) -> None:
    path = write_tsv(ROWS, header=HEADER)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", "--pairs", str(path), "--model", "bm25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n"] == 8
    for key in ("roc_auc", "neg_pr_auc", "ndcg10"):
        assert 0.0 <= report[key] <= 1.0
    assert report["roc_auc"] > 0.5  # BM25 beats chance on these toy pairs
    assert report["long_tail"]["n"] + report["head"]["n"] == 8
    assert (out / "roc.png").stat().st_size > 1000 and (out / "pr_bad.png").stat().st_size > 1000
    assert json.loads((out / "report.json").read_text())["roc_auc"] == report["roc_auc"]
    scores = np.loadtxt(out / "scores.tsv", delimiter="\t", skiprows=1, usecols=5)
    ratings = np.loadtxt(out / "scores.tsv", delimiter="\t", skiprows=1, usecols=4)
    assert report["roc_auc"] == pytest.approx(roc_auc_score(ratings > 2.0, scores), abs=1e-5)


def test_titles_with_quotes_are_scored_and_written(write_tsv, tmp_path: Path) -> None:
    """Amazon ESCI titles end in a double quote (`18"`): the per-pair scores file keeps them as they were."""
    rows = [r.replace("Angle Bracket", 'Angle Bracket 18"').replace("Deck Stain", 'Deck "Stain" \\ 1') for r in ROWS]
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", "--pairs", str(write_tsv(rows, header=HEADER)), "--model",
                                      "bm25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    titles = [line.split("\t")[3] for line in (out / "scores.tsv").read_text().splitlines()[1:]]
    assert titles == [r.split("\t")[1] for r in rows]


def test_a_report_error_never_loses_the_scores(write_tsv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault injected (a fake: a plotting failure cannot be caused otherwise) after scoring: the per-pair
    scores are already on disk."""
    import mkd.evaluation.report as report

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the plotting backend failed")

    monkeypatch.setattr(report, "write_plots", broken)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", "--pairs", str(write_tsv(ROWS, header=HEADER)), "--model",
                                      "bm25", "--out", str(out)])
    assert result.exit_code != 0
    assert len((out / "scores.tsv").read_text().splitlines()) == len(ROWS) + 1


def test_evaluate_reports_bad_input_without_traceback(write_tsv) -> None:
    path = write_tsv(["angle bracket\tSimpson\tgood\t"], header=HEADER)
    result = CliRunner().invoke(app, ["evaluate", "--pairs", str(path), "--model", "bm25"])
    assert result.exit_code == 2
    assert "pairs.tsv:2: field 'relevance'" in result.output
    good = write_tsv(ROWS, header=HEADER, name="good.tsv")
    result = CliRunner().invoke(app, ["evaluate", "--pairs", str(good), "--model", "nonsense"])
    assert result.exit_code == 2
    assert "unknown model" in result.output


def test_console_script_contract(write_tsv) -> None:
    """The real entry point: stdout's last line is one JSON object with fractions."""
    path = write_tsv(ROWS, header=HEADER)
    proc = subprocess.run([sys.executable, "-m", "relevance.cli", "evaluate", "--pairs", str(path), "--model", "bm25"],
                          capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report) >= {"roc_auc", "neg_pr_auc", "ndcg10", "n"}


def test_data_prepare_writes_splits_catalogue_and_pool(tmp_path: Path, vendored_pairs: Path) -> None:
    # A 2,000-row prefix of the vendored file keeps this fast.
    lines = vendored_pairs.read_text(encoding="utf-8").splitlines()[:2001]
    source = tmp_path / "subset.tsv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "derived"
    result = CliRunner().invoke(app, ["data", "prepare", "--pairs", str(source), "--out", str(out), "--pool-k", "5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert sum(s["pairs"] for s in summary["splits"].values()) == 2000
    for name in ("train", "valid", "test", "catalogue", "pool"):
        assert (out / f"{name}.tsv").exists()
    assert 0 < summary["pool"]["pairs"] <= 5 * summary["splits"]["train"]["queries"]
    assert max(int(k) for k in summary["pool"]["per_query_hist"]) <= 5
