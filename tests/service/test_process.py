"""The gateway as an operator runs it (`relevance serve` processes): its ports are its own, it fails to start with
one line naming the setting, and on SIGTERM it drains (not ready, still serving) before it stops."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.grpc import relevance_pb2 as pb
from service.grpc import relevance_pb2_grpc as pb_grpc
from tests.conftest import REPO
from tests.service.gateway_process import GatewayProcess, local_settings


def _one_clear_failure(done_stderr: str, setting: str) -> None:
    assert "Traceback" not in done_stderr
    assert [line for line in done_stderr.splitlines() if setting in line], done_stderr


def test_a_taken_grpc_or_metrics_port_fails_start_up(tiny_model_repository: Path, tmp_path: Path) -> None:
    settings = local_settings(tiny_model_repository, tmp_path / "index")
    with GatewayProcess(settings) as first:
        # grpc's default SO_REUSEPORT would let a second server share the port; it must be refused instead
        second = GatewayProcess(settings, grpc_port=first.grpc_port).run()
        assert second.returncode == 3  # as for a taken HTTP port (uvicorn's start-up failure)
        _one_clear_failure(second.stderr, f"grpc_port: cannot listen on 127.0.0.1:{first.grpc_port}")
        third = GatewayProcess({**settings, "metrics_port": str(first.port)}).run()
        assert third.returncode == 3
        _one_clear_failure(third.stderr, f"metrics_port: cannot listen on 127.0.0.1:{first.port}")
        assert httpx.get(f"{first.url}/healthz").status_code == 200  # the first one serves on


def _health(channel: grpc.Channel) -> int:
    return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status)


def _until(condition: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_sigterm_drains_then_stops(tiny_model_repository: Path, tmp_path: Path) -> None:
    drain_s = 2.0
    score = {"query": "angle bracket", "items": [{"id": "1", "title": "Simpson Strong-Tie 12-Gauge Angle"}]}
    with GatewayProcess(local_settings(tiny_model_repository, tmp_path / "index", drain_s=drain_s)) as gateway, \
            grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        assert gateway.process is not None
        for probe in ("/livez", "/healthz", "/readyz", "/metrics"):  # HEAD for probes that only look at the status
            head = httpx.head(f"{gateway.url}{probe}")
            assert head.status_code == 200 and head.content == b"", probe
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        os.kill(gateway.process.pid, signal.SIGTERM)
        signalled = time.monotonic()
        assert _until(lambda: httpx.get(f"{gateway.url}/readyz").status_code == 503, 1.0)
        assert httpx.get(f"{gateway.url}/readyz").json()["status"] == "draining"
        assert "relevance_ready 0.0" in httpx.get(f"{gateway.url}/metrics").text
        assert _until(lambda: _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING, 1.0)
        # still serving everything while draining: liveness, HTTP and gRPC requests
        assert httpx.get(f"{gateway.url}/livez").json() == {"status": "ok"}
        assert httpx.post(f"{gateway.url}/v1/score", json=score).status_code == 200
        reply = pb_grpc.RelevanceStub(channel).Rerank(pb.RerankRequest(query="angle", documents=["Angle", "Faucet"]),
                                                      timeout=5)
        assert len(reply.results) == 2
        assert time.monotonic() - signalled < drain_s
        gateway.process.wait(timeout=drain_s + 15)  # then a graceful stop
        assert time.monotonic() - signalled >= drain_s
        assert gateway.process.returncode in (0, -signal.SIGTERM)


def test_a_model_that_cannot_load_fails_start_up_naming_the_setting(tiny_model_repository: Path,
                                                                    tmp_path: Path) -> None:
    settings = local_settings(tiny_model_repository, tmp_path / "index")
    missing_version = GatewayProcess({**settings, "model_version": "99"}).run()
    assert missing_version.returncode == 3
    _one_clear_failure(missing_version.stderr, "model_version: ")
    assert "no version 99; versions present: [1]" in missing_version.stderr
    missing_repository = GatewayProcess({**settings, "model_repository": str(tmp_path / "nonexistent")}).run()
    assert missing_repository.returncode == 3
    _one_clear_failure(missing_repository.stderr, "model_repository: model repository")


def test_version_and_the_documented_serve_options() -> None:
    from typer.testing import CliRunner

    from relevance.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0 and shown.stdout.strip() == f"relevance {version('relevance')}"
    # the synopsis in the README and docs/gateway.md names every option of `relevance serve`, and no other
    options = set(re.findall(r"--[a-z][\w-]+", runner.invoke(app, ["serve", "--help"]).stdout)) - {"--help"}
    assert "--model-version" in options
    for doc in (REPO / "README.md", REPO / "docs" / "gateway.md"):
        (synopsis,) = re.findall(r"^relevance serve (.*)$", doc.read_text(), re.M)
        assert set(re.findall(r"--[\w-]+", synopsis)) == options, doc.name
