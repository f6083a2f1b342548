"""The side-by-side comparison's parts that run without the servers it measures: the ratios against the goals,
the report (table, Markdown, JSON, plots), the preparation's checkpoint lookup, the machine record, the server
lifecycle (a real subprocess server) and the closed-loop benchmark's request bodies."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from loadtest.bench import _bodies
from loadtest.compare import CompareSettings, ratios
from loadtest.compare_report import HEADERS, markdown, table_rows, write_report
from loadtest.machine import machine_info
from loadtest.openloop import LoadTestError, Workload
from loadtest.prepare import describe_checkpoint, find_cross_checkpoint
from loadtest.servers import ServerSpec, running


def _step(pairs: float | None, p99: float | None) -> dict[str, Any]:
    steps = [{"offered_pairs_per_s": 100.0, "p99_ms": 20.0}, {"offered_pairs_per_s": 200.0, "p99_ms": p99}]
    return {"saturation_rps": 2.0, "saturation_pairs_per_s": pairs, "saturation_p99_ms": p99, "steps": steps,
            "half": {"offered_pairs_per_s": 100.0, "p99_ms": 15.0}, "p99_at_half_saturation_ms": 15.0}


def _results() -> dict[str, dict[str, Any]]:
    return {"colbert-cached": {"label": "ColBERT gateway, cached items", "step": _step(6000.0, 90.0),
                               "probe_median_ms": 10.0, "p99_bound_ms": 500.0,
                               "fixed": {"p50_ms": 5.0, "p99_ms": 9.0, "errors": 0, "scheduled": 30}},
            "cross": {"label": "cross-encoder (ONNX, our stack)", "step": _step(100.0, 400.0),
                      "fixed": {"p50_ms": 50.0, "p99_ms": 300.0, "errors": 1, "scheduled": 30}},
            "infinity": {"label": "infinity-emb", "step": _step(1000.0, 50.0)}}


def test_ratios_against_the_goals() -> None:
    out = ratios(_results())
    assert out["cross"] == {"colbert_cached_over": 60.0, "colbert_p99_no_worse": True, "goal": 50.0,
                            "goal_met": True}
    # 6x the peer's pairs/s (goal 10x) and a worse p99 there: not met on either count
    assert out["infinity"]["colbert_cached_over"] == 6.0
    assert out["infinity"]["colbert_p99_no_worse"] is False
    assert out["infinity"]["goal_met"] is False
    assert ratios({"cross": _results()["cross"]}) == {}  # no ColBERT-cached result, nothing to compare with


def _summary() -> dict[str, Any]:
    results = _results()
    return {"command": "relevance loadtest compare", "settings": asdict(CompareSettings()),
            "machine": {"nproc": 2, "cpu_model": "cpu", "memory_gib": 8.0, "loadavg_1_5_15": [2.0, 1.0, 1.0]},
            "machine_shared": True, "common_fixed_rps": 1.0, "targets": results, "ratios": ratios(results),
            "cross_checkpoint": {"path": "work/cross/best", "steps": 3},
            "hf_export": {"pooler": "an identity pooler", "parity_max_abs_logit_diff": 1e-6,
                          "model_max_length": 48},
            "versions": {"onnxruntime": "1"}}


def test_report_table_and_markdown() -> None:
    summary = _summary()
    rows = table_rows(summary)
    assert [len(r) for r in rows] == [len(HEADERS)] * 3
    assert rows[0][-1] == "1x" and rows[1][-1] == "60.0x" and rows[2][-1] == "6.0x"
    assert rows[2][7] == "-"  # no fixed-rate run for that target
    text = markdown(summary, rows)
    assert "**The machine was shared**" in text
    assert "vs cross: 60.0x the pairs/s at saturation (goal ≥ 50x)" in text
    assert "goal met: True" in text and "goal met: False" in text
    assert "30 requests" in text


def test_write_report(tmp_path: Path) -> None:
    summary = _summary()
    write_report(summary, tmp_path, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    assert json.loads((tmp_path / "compare.json").read_text())["ratios"]["cross"]["goal_met"] is True
    assert (tmp_path / "compare.md").read_text().startswith("# Load test")
    for plot in ("compare_pairs_per_s.png", "compare_p99_vs_load.png"):
        assert (tmp_path / plot).stat().st_size > 1000


def test_find_and_describe_cross_checkpoint(tmp_path: Path) -> None:
    colbert, cross = tmp_path / "colbert" / "best", tmp_path / "cross" / "best"
    for directory, family in ((colbert, "colbert"), (cross, "cross")):
        directory.mkdir(parents=True)
        (directory / "student.json").write_text(json.dumps({"family": family}))
    assert find_cross_checkpoint(cross) == cross
    with pytest.raises(LoadTestError) as error:
        find_cross_checkpoint(colbert)
    assert error.value.option == "--cross-checkpoint"
    (cross.parent / "training.json").write_text(json.dumps({"epochs": [{"steps": 7}], "config": {"teacher": None},
                                                            "best": {"valid": 0.7}}))
    assert describe_checkpoint(cross) == {"path": str(cross), "steps": 7, "teacher": None, "best": 0.7}
    assert describe_checkpoint(colbert) == {"path": str(colbert)}


def test_machine_info() -> None:
    info = machine_info()
    assert info["nproc"] >= 1 and len(info["loadavg_1_5_15"]) == 3
    assert set(info) >= {"cpu_model", "memory_gib", "python", "platform"}


def test_running_starts_waits_and_stops_a_server(tmp_path: Path) -> None:
    import httpx

    spec = ServerSpec("static", [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
                      ready_path="/", startup_timeout_s=60)
    console = Console(file=open("/dev/null", "w"))  # noqa: SIM115
    with running(spec, tmp_path / "logs", console) as url:
        assert httpx.get(url + "/").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/", timeout=2)
    assert (tmp_path / "logs" / "static.log").is_file()
    dying = ServerSpec("dying", [sys.executable, "-c", "raise SystemExit(3)"], startup_timeout_s=30)
    with pytest.raises(RuntimeError, match="exited with code 3"), running(dying, tmp_path / "logs", console):
        pass


def test_bench_bodies_follow_the_workload() -> None:
    workload = Workload([f"q{i}" for i in range(5)], [(str(i), f"title {i}") for i in range(10)])
    cached = _bodies(workload, "cached", 2, 3, offset=4)
    assert cached[0] == {"query": "q4", "items": [{"id": uid} for uid, _ in workload.request(4, 3)[1]]}
    uncached = _bodies(workload, "uncached", 1, 3, offset=0)[0]
    assert [i["id"] for i in uncached["items"]] == ["bench-0-0", "bench-0-1", "bench-0-2"]
    assert [i["title"] for i in uncached["items"]] == ["title 0", "title 1", "title 2"]
