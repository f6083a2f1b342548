"""The counterfactual faithfulness evaluation (`relevance teacher evaluate-explanations --mode decision`) against a
real gateway process on the shipped student, on a tiny fixture of test-split pairs: every figure it reports is
recomputed from its own rows, and the CLI writes the report and the plot."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mkd.evaluation.faithfulness import Gateway, evaluate_writer, moved, random_edit, summarise
from relevance_core.data import Pair, load_pairs, split_of
from service.explain.decision import Edit
from tests.conftest import REPO
from tests.service.gateway_process import GatewayProcess, local_settings


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with GatewayProcess(local_settings(REPO / "model_repository", tmp_path_factory.mktemp("index"))) as process:
        yield process.url


@pytest.fixture(scope="module")
def fixture_pairs(vendored_pairs: Path) -> list[Pair]:
    """Twelve test-split pairs of a few queries, Good and Bad."""
    test = [p for p in load_pairs(vendored_pairs) if split_of(p.query) == "test"]
    queries = sorted({p.query for p in test})
    random.Random(3).shuffle(queries)
    chosen = set(queries[:6])
    return [p for p in test if p.query in chosen][:12]


def test_random_edits_have_the_size_of_the_explanations() -> None:
    rng = random.Random(0)
    title = "Simpson Strong-Tie 12-Gauge Angle Bracket"
    for _ in range(20):
        removed = random_edit(Edit("remove", ("Angle Bracket",)), title, ["x"], rng)
        assert removed.kind == "remove" and len(removed.values[0].split()) == 2 and removed.values[0] in title
        other = "BEHR Premium Deck Stain"
        added = random_edit(Edit("add", ("simpson", "angle bracket")), title, [other], rng)
        assert added.kind == "add" and len(added.values[0].split()) == 3 and added.values[0] in other
    assert moved("remove", 0.9, 0.84) and not moved("remove", 0.9, 0.86)
    assert moved("add", 0.2, 0.25) and not moved("add", 0.2, 0.24)


def test_the_evaluation_recomputes_from_its_rows(gateway: str, fixture_pairs: list[Pair]) -> None:
    client = Gateway(gateway, None, 30.0)
    try:
        rows = evaluate_writer(client, fixture_pairs, "rules", progress=False)
    finally:
        client.close()
    assert len(rows) == len(fixture_pairs) and all(r.error is None for r in rows)
    for row in rows:
        assert row.verdict == row.judgement == ("Good" if row.rescored >= 0.5 else "Bad")  # type: ignore[operator]
        assert row.rescored == pytest.approx(row.score, abs=1e-4) and row.parse_ok and row.located
        assert row.edit == ("remove" if row.verdict == "Good" else "add")
        assert row.faithful == moved(row.edit, row.score, row.edited_score)  # type: ignore[arg-type]
        assert row.random_faithful == moved(row.edit, row.score, row.random_score)  # type: ignore[arg-type]
    summary = summarise(rows)
    assert summary["faithfulness"] == pytest.approx(sum(r.faithful for r in rows) / len(rows))
    assert summary["agreement"] == 1.0 and summary["score_matches_served"] == 1.0 and summary["testable"] == 1.0
    counts = {v: summary["by_verdict"][v]["pairs"] for v in ("Good", "Bad")}
    assert counts["Good"] + counts["Bad"] == len(rows) and counts["Good"] > 0
    assert summary["latency_ms"]["p50"] > 0


def test_the_cli_writes_the_report_and_the_plot(gateway: str, fixture_pairs: list[Pair], tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("query\tproduct_title\trelevance\n" + "".join(
        f"{p.query}\t{p.product_title}\t{p.relevance}\n" for p in fixture_pairs[:6]))
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "relevance.cli", "teacher", "evaluate-explanations", "--mode",
                           "decision", "--pairs", str(pairs), "--gateway", gateway, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1",
                                                                                     "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["pairs"] == 6 and set(last["writers"]) == {"rules"}
    assert (out / "faithfulness.png").stat().st_size > 10_000
    report = json.loads((out / "report.json").read_text())
    assert report["model_version"] == "colbert:2" and "| rules |" in (out / "report.md").read_text()
    missing = subprocess.run([sys.executable, "-m", "relevance.cli", "teacher", "evaluate-explanations", "--mode",
                              "decision", "--pairs", str(pairs), "--out", str(out)], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "--gateway" in missing.stderr
