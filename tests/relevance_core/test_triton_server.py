"""The local Triton: the nvidia-pytriton wheel's real tritonserver started by `relevance triton serve` (or by
`relevance serve` with RELEVANCE_TRITON_LOCAL_REPOSITORY) on the tiny CPU repository; ready on /v2/health/ready,
and gone (with its Python-backend stubs) when its parent ends, whether by SIGTERM, SIGINT or SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from relevance.cli import app
from relevance_core.paths import REPO_ROOT
from relevance_core.triton_server import WHEEL, TritonInstallation, TritonServerError
from tests.service.gateway_process import GatewayProcess, local_settings


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _gone(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_triton_serve_is_ready_and_never_outlives_its_parent(tiny_cpu_repository: Path, tmp_path: Path,
                                                             sig: signal.Signals) -> None:
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        parent = subprocess.Popen([sys.executable, "-m", "relevance.cli", "triton", "serve", "--repository",
                                   str(tiny_cpu_repository)], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=sink,
                                  stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, f"relevance triton serve exited with {parent.wait()}:\n{log.read_text()[-4000:]}"
        endpoints = json.loads(line)
        assert httpx.get(f"http://{endpoints['http']}/v2/health/ready", timeout=5).status_code == 200
        server = endpoints["pid"]
        stubs = _children(server)
        assert len(stubs) >= 2  # one Python-backend stub per model instance (colbert 1, cross 2)
        os.kill(parent.pid, sig)  # the parent only: its child is in its own process group
        # the stop: SIGTERM to the server's group, SIGKILL after a 10 s grace; a loaded machine needs the margin
        assert parent.wait(timeout=60) == (-sig if sig == signal.SIGKILL else 0)
        assert _gone([server, *stubs], 30), f"left running after {sig.name}: " \
                                            f"{[p for p in (server, *stubs) if _alive(p)]}"
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()


def test_a_missing_wheel_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pytriton", None)  # what importlib finds where the wheel is not installed
    with pytest.raises(TritonServerError, match=rf"^tritonserver not found: install the {WHEEL} wheel"):
        TritonInstallation.find()
    result = CliRunner().invoke(app, ["triton", "serve", "--repository", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: tritonserver not found: install the {WHEEL} wheel")
    assert len(result.output.strip().splitlines()) == 1


def test_the_installed_wheel_is_complete() -> None:
    installation = TritonInstallation.find()
    done = subprocess.run([str(installation.binary), "--help"], env=installation.environment(), capture_output=True,
                          text=True, timeout=60)
    assert done.stderr.startswith("Usage: tritonserver") and "--model-repository" in done.stderr  # exit code 1


def test_relevance_serve_starts_its_own_triton_and_takes_it_down_with_it(tiny_cpu_repository: Path,
                                                                       tiny_model_repository: Path,
                                                                       tmp_path: Path) -> None:
    """One command: the gateway on a local Triton. /v1/score runs on it; SIGKILL of the gateway ends it."""
    settings = local_settings(tiny_model_repository, tmp_path, backend="triton",
                              triton_local_repository=tiny_cpu_repository, triton_timeout_s=10)
    gateway = GatewayProcess(settings).start()
    try:
        assert gateway.process is not None
        servers = [pid for pid in _children(gateway.process.pid)
                   if Path(f"/proc/{pid}/comm").read_text().strip() == "tritonserver"]
        assert len(servers) == 1
        stubs = _children(servers[0])
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10).json()
        assert ready["dependencies"]["encoder"]["status"] == "ok", ready
        response = httpx.post(f"{gateway.url}/v1/score", timeout=30, json={
            "query": "angle bracket", "items": [{"id": "1", "title": "Simpson Strong-Tie 12-Gauge Angle"}]})
        assert response.status_code == 200 and response.json()["n_errors"] == 0, response.text
        gateway.kill()
        assert _gone([*servers, *stubs], 30)
    finally:
        gateway.stop()
