"""`relevance teacher annotate --endpoint` and `relevance teacher label --endpoint` against a real
OpenAI-compatible server process: llama-cpp-python's, serving SmolLM2-135M-Instruct. The base model is no
annotator, so what is checked is the plumbing: sampling parameters accepted, every sample drawn and parsed,
provenance, resumable output, and the teacher-file rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relevance.cli import app
from relevance_core.data import load_pairs, write_pairs
from tests.mkd.teacher.servers import shared_llama_server

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def teacher_url(request: pytest.FixtureRequest) -> str:
    pytest.importorskip("llama_cpp")
    return shared_llama_server(request.config)


@pytest.fixture
def two_pairs(vendored_pairs: Path, tmp_path: Path) -> Path:
    path = tmp_path / "two.tsv"
    write_pairs(path, load_pairs(vendored_pairs)[:2])
    return path


def test_annotate_samples_each_endpoint_and_records_provenance(teacher_url: str, two_pairs: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "annotations.jsonl"
    args = ["teacher", "annotate", "--pairs", str(two_pairs), "--out", str(out), "--endpoint",
            f"{MODEL}={teacher_url}", "--n", "2", "--max-tokens", "48", "--concurrency", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["annotated"] == 2 and summary["failed_pairs"] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["query"] for r in rows} == {p.query for p in load_pairs(two_pairs)}
    for row in rows:
        assert 1 <= row["samples"] <= 2 and 0 <= row["parsed"] <= row["samples"]
        if row["cot"] is None:
            assert row["samples"] == 2  # every sample was drawn before giving up
        else:
            assert row["source"] == {"endpoint": teacher_url, "model": MODEL, "sample": row["samples"] - 1}
            label = "Good" if row["relevance"] > 2.0 else "Bad"
            assert row["judgement"] == label
    again = CliRunner().invoke(app, args)
    assert json.loads(again.stdout.strip().splitlines()[-1])["skipped_already_done"] == 2


def test_annotate_reports_an_endpoint_that_is_down(two_pairs: Path, tmp_path: Path) -> None:
    from tests.ports import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    result = CliRunner().invoke(app, ["teacher", "annotate", "--pairs", str(two_pairs), "--out",
                                      str(tmp_path / "a.jsonl"), "--endpoint", f"{MODEL}={url}", "--n", "1"])
    assert result.exit_code == 3 and "every endpoint failed" in result.output
    assert not (tmp_path / "a.jsonl").read_text().strip()  # nothing written: a rerun tries both pairs again


def test_label_through_the_endpoint_writes_teacher_rows(teacher_url: str, two_pairs: Path, tmp_path: Path) -> None:
    out = tmp_path / "teacher.jsonl"
    result = CliRunner().invoke(app, ["teacher", "label", "--pairs", str(two_pairs), "--out", str(out),
                                      "--endpoint", f"{MODEL}={teacher_url}", "--max-new-tokens", "48"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["labelled"] == 2 and summary["failed"] == 0
    for row in map(json.loads, out.read_text().splitlines()):
        assert row["model"] == MODEL and row["cot"]
        assert (row["score"] is None) == (row["score_reason"] is not None)


def test_a_malformed_endpoint_option_is_refused(two_pairs: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["teacher", "annotate", "--pairs", str(two_pairs), "--out",
                                      str(tmp_path / "a.jsonl"), "--endpoint", "http://host/v1"])
    assert result.exit_code == 2 and "expected MODEL=URL" in result.output
