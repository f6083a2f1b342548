"""The gateway as a real process (`relevance serve`, uvicorn with the project's server settings) on free ports,
for the tests that kill it, hold connections open against it or need its own server configuration."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from relevance_core.processes import stop_process
from tests.conftest import REPO
from tests.ports import free_port


@dataclass
class GatewayProcess:
    """A `relevance serve` child process; ``url`` while it runs. ``settings`` are RELEVANCE_* values."""

    settings: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    grpc_port: int = 0

    def __post_init__(self) -> None:
        self.grpc_port = self.grpc_port or free_port((self.port,))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "relevance.cli", "serve", "--port", str(self.port), "--log-level", "warning"]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "RELEVANCE_TEACHER_LOCAL": "false",
                "RELEVANCE_GRPC_PORT": str(self.grpc_port),
                **{f"RELEVANCE_{k.upper()}": v for k, v in self.settings.items()}}

    def run(self, timeout_s: float = 90.0) -> subprocess.CompletedProcess[str]:
        """Run to the end (a gateway that must fail to start): exit code and output."""
        return subprocess.run(self.command, env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def start(self, timeout_s: float = 90.0) -> GatewayProcess:
        """Start and wait until /healthz answers (the lifespan finished: model and store loaded)."""
        self.process = subprocess.Popen(self.command, env=self.env, cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with code {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the gateway did not answer /healthz within {timeout_s} s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 30)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_settings(repository: Path, store_dir: Path, **extra: object) -> dict[str, str]:
    """RELEVANCE_* values of a gateway on the local store."""
    return {"model_repository": str(repository), "store": "local", "store_dir": str(store_dir),
            **{k: str(v) for k, v in extra.items()}}


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(the server closed the connection within ``seconds``, what it sent before closing)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
        return True, received
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        return True, received
