"""``service.backends.triton.TritonBackend`` against a real Open Inference Protocol (KServe v2) server: KServe's
Python model server hosting the tiny exported ColBERT with ONNX Runtime (``tests/service/kserve_server.py``),
started as a subprocess on free ports. Triton speaks the same REST and gRPC protocol; Triton itself cannot be
installed here. No mocks: real sockets, real tritonclient, the gateway app with its lifespan."""

from __future__ import annotations

import dataclasses
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

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from fastapi.testclient import TestClient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from export.triton import read_config
from relevance_core.paths import REPO_ROOT
from relevance_core.processes import stop_process
from service.app import create_app
from service.backends.triton import TritonBackend
from service.core.runtime import ColBERTModel, load_runtime_model
from service.settings import Settings
from tests.ports import free_port

SERVER_MODULE = "tests.service.kserve_server"
MODEL = "colbert"
READY_TIMEOUT_S = 60.0
Protocol = Literal["grpc", "http"]
PROTOCOLS: tuple[Protocol, ...] = ("grpc", "http")
# what TritonBackend(...) raises when the server cannot give the model metadata: tritonclient's error (gRPC, or an
# HTTP error status) or the socket's (HTTP, connection refused)
STARTUP_ERRORS = (InferenceServerException, OSError)
REFUSED = r"(?i)connection refused"

QUERIES = ["angle bracket", "deck paint tugboat grey", "1/2 in. copper pipe fitting 90 degree elbow", "x"]
ITEMS = [
    {"id": "100001", "title": "Simpson Strong-Tie 12-Gauge Angle"},
    {"id": "100002", "title": "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating"},
    {"id": "100003", "title": "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Stainless (Valve Not Included)"},
    {"id": "new-1", "title": "Everbilt 2 in. Zinc-Plated Corner Brace"},
]

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
def kserve_server(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeServer]:
    server = KServeServer.start(tiny_model_repository, tmp_path_factory.mktemp("kserve") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runtime(tiny_model_repository: Path) -> ColBERTModel:
    model = load_runtime_model(tiny_model_repository, model=MODEL)
    assert isinstance(model, ColBERTModel)
    return model


@pytest.fixture(params=PROTOCOLS)
def triton_backend(request: pytest.FixtureRequest, kserve_server: KServeServer,
                   runtime: ColBERTModel) -> Iterator[TritonBackend]:
    backend = TritonBackend(kserve_server.url(request.param), runtime.version, protocol=request.param, timeout_s=10.0)
    yield backend
    backend.close()


@pytest.mark.parametrize("side", ["query", "item"])
def test_triton_backend_returns_the_in_process_embeddings(triton_backend: TritonBackend, runtime: ColBERTModel,
                                                          side: Literal["query", "item"]) -> None:
    """(a) Same names from the server's metadata as the graph's, same embeddings for a real padded batch."""
    assert triton_backend.input_names == runtime.backend.input_names == ("input_ids", "attention_mask")
    assert triton_backend.output_name == "embeddings"
    health = triton_backend.health()
    assert health.ok and health.detail.endswith("colbert/1 ready")
    texts = QUERIES if side == "query" else [item["title"] for item in ITEMS]
    encoded = runtime.tokenizer.encode_side(texts, side)
    assert not encoded.attention_mask.all()  # rows of different lengths: the batch carries padding
    feed = encoded.feed(triton_backend.input_names)
    want = runtime.backend.run(feed)
    got = triton_backend.run(feed)
    assert got.dtype == np.float32 and got.shape == want.shape == (len(texts), encoded.input_ids.shape[1],
                                                                   runtime.meta.dim)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_http_versioned_paths_pin_the_version(kserve_server: KServeServer, runtime: ColBERTModel) -> None:
    """The HTTP client asks for /v2/models/colbert/versions/<v>: a version the server does not have is refused
    at construction. (kserve's gRPC servicer ignores the version field, so this is checked over HTTP only.)"""
    other = dataclasses.replace(runtime.version, version=runtime.version.version + 1)
    with pytest.raises(STARTUP_ERRORS, match="version 2 is not found"):
        TritonBackend(kserve_server.url("http"), other, protocol="http")


def _score(client: TestClient, query: str) -> dict[str, Any]:
    response = client.post("/v1/score", json={"query": query, "items": ITEMS})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_gateway_on_triton_scores_like_the_in_process_gateway(kserve_server: KServeServer,
                                                              tiny_model_repository: Path, tmp_path: Path,
                                                              protocol: Protocol) -> None:
    """(b) The gateway with backend=triton: /v1/score of items given with titles equals the in-process gateway."""
    common: dict[str, Any] = {"model_repository": tiny_model_repository, "store": "local", "grpc_port": None}
    triton = Settings(**common, store_dir=tmp_path / "triton", backend="triton", triton_protocol=protocol,
                      triton_url=kserve_server.url(protocol), triton_timeout_s=10.0)
    local = Settings(**common, store_dir=tmp_path / "local", backend="onnxruntime")
    with TestClient(create_app(triton)) as on_triton, TestClient(create_app(local)) as in_process:
        assert isinstance(on_triton.app.state.engine.model.backend, TritonBackend)  # type: ignore[attr-defined]
        for query in QUERIES[:3]:
            got, want = _score(on_triton, query), _score(in_process, query)
            assert got["model_version"] == want["model_version"] == f"{MODEL}:1"
            assert [s["id"] for s in got["scores"]] == [item["id"] for item in ITEMS]
            assert {s["source"] for s in got["scores"]} == {"title"} and got["n_errors"] == 0
            np.testing.assert_allclose([s["score"] for s in got["scores"]], [s["score"] for s in want["scores"]],
                                       atol=1e-5, rtol=0)


_V2_DATATYPES = {mc.TYPE_INT64: "INT64", mc.TYPE_FP32: "FP32", mc.TYPE_FP16: "FP16", mc.TYPE_INT32: "INT32"}


def test_config_pbtxt_parses_and_agrees_with_the_served_graph(kserve_server: KServeServer,
                                                              runtime: ColBERTModel) -> None:
    """(c) config.pbtxt still parses as Triton's ModelConfig, and its tensors (batch axis prepended) are what the
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


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_server_fails_construction_and_gateway_start_up(runtime: ColBERTModel,
                                                                    tiny_model_repository: Path, tmp_path: Path,
                                                                    protocol: Protocol) -> None:
    """(d) Nothing listening: ``TritonBackend(...)`` raises at once (its constructor fetches the model metadata),
    so the gateway with backend=triton fails at start-up (its lifespan raises) instead of serving 5xx later.
    gRPC raises tritonclient's InferenceServerException (UNAVAILABLE, connection refused); HTTP lets the
    socket's ConnectionRefusedError through."""
    url = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(STARTUP_ERRORS, match=REFUSED):
        TritonBackend(url, runtime.version, protocol=protocol, timeout_s=2.0)
    assert time.monotonic() - started < 10.0
    settings = Settings(model_repository=tiny_model_repository, backend="triton", triton_url=url,
                        triton_protocol=protocol, store="local", store_dir=tmp_path, grpc_port=None)
    app = create_app(settings)
    with pytest.raises(STARTUP_ERRORS, match=REFUSED), TestClient(app):
        pass
    assert app.state.engine is None
