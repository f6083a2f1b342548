"""The generator against real servers on loopback ports: the open-loop property against a server that stalls,
the concurrency bound (late and dropped sends), and the CLI end to end against the real gateway (cached items,
items from titles, its /v1/rerank) and the cross-encoder fixture server, with the JSON and PNG outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from loadtest.openloop import Target, Workload, load_workload, run_open_loop, summarise
from relevance.cli import app
from tests.loadtest.conftest import CATALOGUE, ServerThread, StallServer
from tests.ports import free_port

runner = CliRunner()


def last_json(output: str) -> dict[str, object]:
    return json.loads(output.strip().splitlines()[-1])


def test_a_stalling_server_does_not_slow_the_schedule(stall_server: tuple[ServerThread, StallServer],
                                                       workload_files: tuple[Path, Path]) -> None:
    """20 requests in 0.5 s to a server that serves 10/s: all are sent on schedule (a closed loop would have
    sent about 5), and their latency from the intended send time grows by the queue the server builds."""
    server, app = stall_server
    pairs, catalogue = workload_files
    workload = load_workload([pairs], catalogue)
    record = run_open_loop(Target(server.url, "rerank"), workload, rate=40.0, duration=0.5, items=3,
                           concurrency=100, timeout_s=20.0)
    assert len(record.outcome) == 20 and all(o == "200" for o in record.outcome)
    assert not record.late.any()
    sent = record.intended + record.send_lag
    # every request left within the run, plus slack for a busy machine; one client in a closed loop would need
    # at least 20 x 0.1 = 2 s to send them
    assert sent.max() < 1.5
    assert len(app.arrivals) == 20 and max(app.arrivals) - min(app.arrivals) < 1.5
    # served one at a time, 0.1 s each: request k ends >= 0.1·(k+1) after the first was due
    assert np.all(record.latency + record.intended >= 0.1 * (np.arange(20) + 1) - 0.05)
    assert record.latency[-1] > 1.2 and record.latency[-1] > 2 * record.latency[0]  # the queue is not hidden
    summary = summarise(record)
    assert summary["achieved_rps"] < 0.5 * summary["offered_rps"]  # the server's capacity, not the offer


def test_the_concurrency_bound_counts_late_and_dropped_sends(stall_server: tuple[ServerThread, StallServer],
                                                             workload_files: tuple[Path, Path]) -> None:
    server, app = stall_server
    pairs, catalogue = workload_files
    record = run_open_loop(Target(server.url, "rerank"), load_workload([pairs], catalogue), rate=40.0,
                           duration=0.5, items=2, concurrency=2, timeout_s=0.5)
    summary = summarise(record)
    assert summary["late_sends"] > 0 and summary["dropped"] > 0
    assert summary["errors"] == summary["dropped"] + summary["timeouts"]
    assert len(app.arrivals) <= summary["sent"] < summary["scheduled"]


def test_a_200_whose_items_all_failed_is_a_failure(gateway: ServerThread) -> None:
    """Ids the store does not hold and no titles: the gateway answers 200 with an error per item; the load test
    counts those answers as failures, and a 200 with scores as a success."""
    unknown = Workload(["angle bracket"], [(f"nobody-{k}", "unused") for k in range(4)])
    record = run_open_loop(Target(gateway.url), unknown, rate=20.0, duration=0.5, items=4, concurrency=4)
    summary = summarise(record)
    assert summary["statuses"] == {} and summary["items_failed"] == summary["scheduled"] == 10
    assert summary["ok"] == 0 and summary["error_rate"] == 1.0
    known = Workload(["angle bracket"], list(CATALOGUE.items()))
    summary = summarise(run_open_loop(Target(gateway.url), known, rate=20.0, duration=0.5, items=4, concurrency=4))
    assert summary["ok"] == summary["scheduled"] and summary["items_failed"] == 0


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["loadtest", *args])
    return result.exit_code, result.output


def test_fixed_rate_against_the_gateway_writes_json_and_plots(gateway: ServerThread, workload_files: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    pairs, catalogue = workload_files
    out = tmp_path / "fixed"
    code, output = _cli("--url", gateway.url, "--rate", "20", "--duration", "1", "--items", str(len(CATALOGUE)),
                        "--queries", str(pairs), "--catalog", str(catalogue), "--warmup", "2", "--arrival",
                        "poisson", "--out", str(out))
    assert code == 0, output
    result = last_json(output)
    run = result["run"]
    assert result["mode"] == "cached" and run["ok"] == run["scheduled"] > 0 and run["statuses"] == {
        "200": run["scheduled"]}
    assert run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"] <= run["p99_9_ms"]
    assert run["achieved_pairs_per_s"] == pytest.approx(run["achieved_rps"] * len(CATALOGUE), rel=1e-3)
    for name in ("loadtest.json", "latency_over_time.png", "latency_cdf.png"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "loadtest.json").read_text())["run"]["ok"] == run["ok"]


def test_step_mode_against_the_gateway_titles(gateway: ServerThread, workload_files: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    pairs, catalogue = workload_files
    out = tmp_path / "steps"
    code, output = _cli("--url", gateway.url, "--mode", "titles", "--items", "4", "--step-start", "5",
                        "--step-factor", "2", "--max-steps", "2", "--duration", "0.5", "--max-p99-ms", "60000",
                        "--queries", str(pairs), "--catalog", str(catalogue), "--warmup", "0", "--out", str(out))
    assert code == 0, output
    step = last_json(output)["step"]
    assert [s["offered_rps"] for s in step["steps"]] == [5.0, 10.0]
    assert step["saturation_rps"] == 10.0 and step["half"]["offered_rps"] == 5.0
    assert all(s["ok"] == s["scheduled"] for s in step["steps"])
    for name in ("loadtest.json", "latency_over_time.png", "latency_cdf.png", "steps.png"):
        assert (out / name).stat().st_size > 0


def test_rerank_targets_the_gateway_and_the_cross_encoder(gateway: ServerThread, tiny_cross_repository: Path,
                                                          workload_files: tuple[Path, Path]) -> None:
    from loadtest.cross_server import create_cross_app

    pairs, catalogue = workload_files
    common = ["--rate", "10", "--duration", "0.5", "--items", "5", "--endpoint", "rerank", "--queries", str(pairs),
              "--catalog", str(catalogue), "--warmup", "1"]
    code, output = _cli("--url", gateway.url, *common)
    assert code == 0, output
    assert last_json(output)["run"]["statuses"] == {"200": 5}
    with ServerThread(create_cross_app(tiny_cross_repository, threads=1)) as cross:
        code, output = _cli("--url", cross.url, "--path", "/rerank", "--model", "cross", *common)
    assert code == 0, output
    result = last_json(output)
    assert result["target"].endswith("/rerank") and result["run"]["statuses"] == {"200": 5}


@pytest.mark.parametrize(("args", "option"), [
    (["--rate", "0"], "--rate"),
    (["--rate", "-3"], "--rate"),
    ([], "--rate"),
    (["--rate", "1", "--step-start", "1", "--step-factor", "2"], "--rate"),
    (["--step-start", "1", "--step-factor", "1"], "--step-factor"),
    (["--step-start", "1"], "--step-factor"),
    (["--rate", "1", "--duration", "0"], "--duration"),
    (["--rate", "1", "--concurrency", "0"], "--concurrency"),
    (["--rate", "1", "--items", "0"], "--items"),
])
def test_bad_arguments_exit_2_naming_the_option(args: list[str], option: str) -> None:
    code, output = _cli("--url", "http://127.0.0.1:9", *args)
    assert code == 2, output
    assert option in output


def test_an_unreachable_url_exits_2_naming_url() -> None:
    code, output = _cli("--url", f"http://127.0.0.1:{free_port()}", "--rate", "1")
    assert code == 2, output
    assert "--url" in output and "cannot connect" in output
    code, output = _cli("--url", "ftp://127.0.0.1:21", "--rate", "1")
    assert code == 2 and "--url" in output
    code, output = _cli("--rate", "1")
    assert code == 2 and "--url" in output
