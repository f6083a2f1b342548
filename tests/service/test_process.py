"""The gateway as an operator runs it (`relevance serve` processes): its ports are its own, and it fails to start
with one line naming the setting."""

from __future__ import annotations

from pathlib import Path

import httpx

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
