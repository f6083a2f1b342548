"""The ONNX layout (``onnxruntime_onnx``, the shipped ``model_repository/``) as an Open Inference Protocol server
reports it: its ``config.pbtxt`` tensors are the graph's. The nvidia-pytriton wheel's Triton has no ONNX Runtime
backend, so a KServe model server hosting the graph (``tests/service/kserve_server.py``) stands in for a GPU / NGC
Triton here; the CPU variant on the real Triton is tested in test_triton_backend.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from export.triton import read_config
from relevance_core.paths import REPO_ROOT
from relevance_core.processes import stop_process
from service.core.runtime import ColBERTModel, load_runtime_model
from tests.ports import free_port

SERVER_MODULE = "tests.service.kserve_server"
MODEL = "colbert"
READY_TIMEOUT_S = 60.0
Protocol = Literal["grpc", "http"]
PROTOCOLS: tuple[Protocol, ...] = ("grpc", "http")


@dataclass
class KServeServer:
    """``python -m tests.service.kserve_server`` as a child process; its stdout and stderr go to ``log``."""

    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path

    def url(self, protocol: Protocol) -> str:
        return f"127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.http_port}"

    def output(self, last: int = 6000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-last:] if self.log.exists() else ""

    @classmethod
    def start(cls, repository: Path, log: Path, timeout_s: float = READY_TIMEOUT_S) -> KServeServer:
        http_port = free_port()
        grpc_port = free_port((http_port,))
        command = [sys.executable, "-m", SERVER_MODULE, "--repository", str(repository), "--model", MODEL,
                   "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        with log.open("wb") as sink:  # a file, not a pipe: a chatty server never blocks on a full pipe
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                                       stderr=subprocess.STDOUT)
        server = cls(process, http_port, grpc_port, log)
        server.wait_ready(timeout_s)
        return server

    def wait_ready(self, timeout_s: float) -> None:
        """Until ``/v2/health/ready`` answers 200 and the gRPC ServerReady is true; a clear failure otherwise."""
        deadline = time.monotonic() + timeout_s
        grpc_client = grpcclient.InferenceServerClient(self.url("grpc"))
        try:
            while True:
                if self.process.poll() is not None:
                    pytest.fail(f"the KServe server exited with {self.process.returncode} before it was ready:\n"
                                f"{self.output()}", pytrace=False)
                if self._http_ready() and self._grpc_ready(grpc_client):
                    return
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"the KServe server (HTTP {self.http_port}, gRPC {self.grpc_port}) was not ready in "
                                f"{timeout_s:.0f} s:\n{self.output()}", pytrace=False)
                time.sleep(0.2)
        finally:
            grpc_client.close()

    def _http_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url('http')}/v2/health/ready", timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _grpc_ready(client: Any) -> bool:
        try:
            return bool(client.is_server_ready(client_timeout=1.0))
        except InferenceServerException:
            return False

    def stop(self) -> None:
        stop_process(self.process, 15)


@pytest.fixture(scope="module")
def runtime(tiny_model_repository: Path) -> ColBERTModel:
    model = load_runtime_model(tiny_model_repository, model=MODEL)
    assert isinstance(model, ColBERTModel)
    return model


@pytest.fixture(scope="module")
def kserve_server(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeServer]:
    server = KServeServer.start(tiny_model_repository, tmp_path_factory.mktemp("kserve") / "server.log")
    yield server
    server.stop()


_V2_DATATYPES = {mc.TYPE_INT64: "INT64", mc.TYPE_FP32: "FP32", mc.TYPE_FP16: "FP16", mc.TYPE_INT32: "INT32"}


def test_onnx_layout_config_agrees_with_the_served_graph(kserve_server: KServeServer,
                                                              runtime: ColBERTModel) -> None:
    """config.pbtxt still parses as Triton's ModelConfig, and its tensors (batch axis prepended) are what the
    server reports for the ONNX graph: names, v2 datatypes and shapes."""
    config = read_config(runtime.version.config_path)
    assert config.name == MODEL and config.platform == "onnxruntime_onnx" and config.max_batch_size > 0
    client = grpcclient.InferenceServerClient(kserve_server.url("grpc"))
    try:
        metadata = client.get_model_metadata(MODEL, str(runtime.version.version), as_json=True, client_timeout=10.0)
    finally:
        client.close()

    def declared(tensors: Any) -> list[tuple[str, str, list[int]]]:
        return [(t.name, _V2_DATATYPES[t.data_type], [-1, *t.dims]) for t in tensors]

    def served(tensors: list[dict[str, Any]]) -> list[tuple[str, str, list[int]]]:
        return [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in tensors]

    assert declared(config.input) == served(metadata["inputs"]) == [
        ("input_ids", "INT64", [-1, -1]), ("attention_mask", "INT64", [-1, -1])]
    assert declared(config.output) == served(metadata["outputs"]) == [
        ("embeddings", "FP32", [-1, -1, runtime.meta.dim])]
