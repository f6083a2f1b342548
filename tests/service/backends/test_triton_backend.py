"""``service.backends.triton.TritonBackend`` and the gateway with backend=triton against the real Triton: the
nvidia-pytriton wheel's ``tritonserver`` (:mod:`relevance_core.triton_server`) serving the CPU variant of the tiny
exported students (``tiny_cpu_repository``: Python backend, ONNX Runtime) on free ports, over gRPC and HTTP. No
mocks: real sockets, real tritonclient, the gateway app with its lifespan."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from fastapi.testclient import TestClient

from relevance_core.triton_server import TritonProcess
from service.app import create_app
from service.backends.triton import TritonBackend, TritonUnavailableError
from service.core.runtime import ColBERTModel, CrossEncoderModel, load_runtime_model
from service.settings import Settings
from tests.ports import free_port

MODEL = "colbert"
READY_TIMEOUT_S = 60.0
Protocol = Literal["grpc", "http"]
PROTOCOLS: tuple[Protocol, ...] = ("grpc", "http")
REFUSED = r"(?i)connection refused"

QUERIES = ["angle bracket", "deck paint tugboat grey", "1/2 in. copper pipe fitting 90 degree elbow", "x"]
ITEMS = [
    {"id": "100001", "title": "Simpson Strong-Tie 12-Gauge Angle"},
    {"id": "100002", "title": "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating"},
    {"id": "100003", "title": "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Stainless (Valve Not Included)"},
    {"id": "new-1", "title": "Everbilt 2 in. Zinc-Plated Corner Brace"},
]


def start_triton(repository: Path, log: Path, **ports: int) -> TritonProcess:
    """tritonserver on ``repository``, ready; its output in ``log`` (shown if it does not become ready)."""
    with log.open("ab") as sink:
        server = TritonProcess(repository, log=sink, **ports)
    try:
        server.wait_ready(READY_TIMEOUT_S)
    except Exception:
        server.stop()
        pytest.fail(f"tritonserver was not ready:\n{log.read_text(errors='replace')[-6000:]}", pytrace=False)
    return server


def url(server: TritonProcess, protocol: Protocol) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.fixture(scope="module")
def triton(tiny_cpu_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    server = start_triton(tiny_cpu_repository, tmp_path_factory.mktemp("triton") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runtime(tiny_model_repository: Path) -> ColBERTModel:
    model = load_runtime_model(tiny_model_repository, model=MODEL)
    assert isinstance(model, ColBERTModel)
    return model


@pytest.fixture(params=PROTOCOLS)
def triton_backend(request: pytest.FixtureRequest, triton: TritonProcess,
                   runtime: ColBERTModel) -> Iterator[TritonBackend]:
    backend = TritonBackend(url(triton, request.param), runtime.version, protocol=request.param, timeout_s=10.0)
    yield backend
    backend.close()


@pytest.mark.parametrize("side", ["query", "item"])
def test_triton_returns_the_in_process_embeddings(triton_backend: TritonBackend, runtime: ColBERTModel,
                                                  side: Literal["query", "item"]) -> None:
    """Input and output names read from Triton's model metadata at start-up are the graph's; the embeddings of a
    real padded batch equal the in-process ones."""
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


def test_concurrent_requests_batched_by_triton_are_split_back(triton_backend: TritonBackend,
                                                              runtime: ColBERTModel) -> None:
    """Many one-row requests at once: Triton's dynamic batcher hands model.py several of a shape together; each
    caller gets its own rows back."""
    feeds = [runtime.tokenizer.encode_side([f"{word} bracket"], "query").feed(triton_backend.input_names)
             for word in ("angle", "corner", "shelf", "wall", "deck", "post", "joist", "hanger") * 3]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(triton_backend.run, feeds))
    for feed, embeddings in zip(feeds, got, strict=True):
        np.testing.assert_allclose(embeddings, runtime.backend.run(feed), atol=1e-5, rtol=0)


def test_the_cross_encoder_output_keeps_its_reshape(triton: TritonProcess, tiny_model_repository: Path) -> None:
    """The cross-encoder's per-row scalar (dims [1] reshaped to []) comes back as the graph's logits."""
    cross = load_runtime_model(tiny_model_repository, model="cross")
    assert isinstance(cross, CrossEncoderModel)
    backend = TritonBackend(triton.grpc_url, cross.version, timeout_s=10.0)
    try:
        feed = cross.tokenizer.encode_pairs(QUERIES, [item["title"] for item in ITEMS]).feed(backend.input_names)
        np.testing.assert_allclose(backend.run(feed).reshape(-1), cross.backend.run(feed).reshape(-1), atol=1e-5,
                                   rtol=0)
    finally:
        backend.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unknown_model_or_version_is_a_start_up_error_naming_both(triton: TritonProcess, runtime: ColBERTModel,
                                                                     protocol: Protocol) -> None:
    for wrong in (dataclasses.replace(runtime.version, version=2), dataclasses.replace(runtime.version, name="nope")):
        with pytest.raises(TritonUnavailableError) as raised:
            TritonBackend(url(triton, protocol), wrong, protocol=protocol, timeout_s=10.0)
        message = str(raised.value)
        assert f"Triton at {url(triton, protocol)} ({protocol})" in message
        assert f"model {wrong.name!r} version {wrong.version}" in message


def _score(client: TestClient, query: str) -> dict[str, Any]:
    response = client.post("/v1/score", json={"query": query, "items": ITEMS})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _settings(repository: Path, store_dir: Path, **triton: Any) -> Settings:
    backend = {"backend": "triton", **triton} if triton else {"backend": "onnxruntime"}
    return Settings(model_repository=repository, store="local", grpc_port=None, store_dir=store_dir, **backend)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gateway_on_triton_scores_like_the_in_process_gateway(triton: TritonProcess, tiny_model_repository: Path,
                                                              tmp_path: Path, protocol: Protocol) -> None:
    """The gateway with backend=triton: /v1/score of items given with titles equals the in-process gateway."""
    on_triton = _settings(tiny_model_repository, tmp_path / "triton", triton_protocol=protocol,
                          triton_url=url(triton, protocol), triton_timeout_s=10.0)
    local = _settings(tiny_model_repository, tmp_path / "local")
    with TestClient(create_app(on_triton)) as remote, TestClient(create_app(local)) as in_process:
        assert isinstance(remote.app.state.engine.model.backend, TritonBackend)  # type: ignore[attr-defined]
        for query in QUERIES[:3]:
            got, want = _score(remote, query), _score(in_process, query)
            assert got["model_version"] == want["model_version"] == f"{MODEL}:1"
            assert [s["id"] for s in got["scores"]] == [item["id"] for item in ITEMS]
            assert {s["source"] for s in got["scores"]} == {"title"} and got["n_errors"] == 0
            np.testing.assert_allclose([s["score"] for s in got["scores"]], [s["score"] for s in want["scores"]],
                                       atol=1e-5, rtol=0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_triton_killed_while_serving_gives_503_and_the_gateway_recovers(
        tiny_cpu_repository: Path, tiny_model_repository: Path, tmp_path: Path, protocol: Protocol) -> None:
    """Triton killed (SIGKILL) under a running gateway: requests that need the encoder answer 503 with the reason,
    /readyz fails naming Triton; Triton back on the same ports: the gateway serves again by itself."""
    ports = {"http_port": free_port(), "grpc_port": free_port()}
    server = start_triton(tiny_cpu_repository, tmp_path / "triton.log", **ports)
    settings = _settings(tiny_model_repository, tmp_path / "store", triton_protocol=protocol,
                         triton_url=url(server, protocol), triton_timeout_s=5.0)
    try:
        with TestClient(create_app(settings)) as client:
            _score(client, QUERIES[0])
            assert client.get("/readyz").status_code == 200
            server.process.kill()
            server.stop()
            response = client.post("/v1/score", json={"query": QUERIES[1], "items": ITEMS})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["message"].startswith(
                f"encoder unavailable: Triton at {url(server, protocol)} ({protocol}), model 'colbert' version 1: ")
            assert response.headers["retry-after"] == "1"
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "triton" in ready.text.lower(), ready.text
            server = start_triton(tiny_cpu_repository, tmp_path / "triton.log", **ports)
            deadline = time.monotonic() + 30
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the gateway did not become ready again"
                time.sleep(0.5)
            _score(client, QUERIES[1])
            assert server.shm_regions()  # the Python backend's regions, named for this server
    finally:
        server.stop()
    assert not server.shm_regions()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_triton_fails_construction_and_gateway_start_up(runtime: ColBERTModel,
                                                                    tiny_model_repository: Path, tmp_path: Path,
                                                                    protocol: Protocol) -> None:
    """Nothing listening: ``TritonBackend(...)`` raises at once (its constructor fetches the model metadata), naming
    the URL, model and version, so the gateway with backend=triton fails at start-up (its lifespan raises) instead
    of serving 5xx later."""
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TritonUnavailableError, match=REFUSED) as raised:
        TritonBackend(address, runtime.version, protocol=protocol, timeout_s=2.0)
    assert f"Triton at {address} ({protocol}): no metadata for model 'colbert' version 1" in str(raised.value)
    assert time.monotonic() - started < 10.0
    app = create_app(_settings(tiny_model_repository, tmp_path, triton_url=address, triton_protocol=protocol))
    with pytest.raises(TritonUnavailableError, match=REFUSED), TestClient(app):
        pass
    assert app.state.engine is None
