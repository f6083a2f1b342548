"""Request ids over real HTTP and gRPC: the client's X-Request-ID (or a new one) comes back on every response,
errors included, and on the log records made while the request was served."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from service.app import create_app
from service.grpc import relevance_pb2 as pb
from service.grpc import relevance_pb2_grpc as pb_grpc
from service.settings import Settings
from tests.ports import free_port, serving
from tests.service.conftest import RedisServer

KEY = "s3cret"
NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def gateway(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    settings = Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                        store_dir=tmp_path_factory.mktemp("index"), grpc_port=free_port(), api_keys=[KEY],
                        teacher_local=False)
    app = create_app(settings)
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}", app.state.grpc_port


def test_http_echoes_the_request_id_on_every_status(gateway: tuple[str, int]) -> None:
    url, _ = gateway
    auth = {"x-api-key": KEY}
    body = {"query": "angle", "items": [{"id": "1", "title": "Simpson Strong-Tie 12-Gauge Angle"}]}
    answers = {200: httpx.post(f"{url}/v1/score", json=body, headers={**auth, "X-Request-ID": "order-17"}),
               401: httpx.post(f"{url}/v1/score", json=body, headers={"X-Request-ID": "order-17"}),
               422: httpx.post(f"{url}/v1/score", json={"query": ""}, headers={**auth, "X-Request-ID": "order-17"}),
               404: httpx.get(f"{url}/nowhere", headers={"X-Request-ID": "order-17"}),
               413: httpx.post(f"{url}/v1/score", content=b"x" * (5 << 20),
                               headers={**auth, "X-Request-ID": "order-17", "content-type": "application/json"})}
    for status, answer in answers.items():
        assert answer.status_code == status
        assert answer.headers["x-request-id"] == "order-17", status
    generated = httpx.get(f"{url}/livez")
    assert NEW_ID.fullmatch(generated.headers["x-request-id"])
    assert httpx.get(f"{url}/livez").headers["x-request-id"] != generated.headers["x-request-id"]
    for unusable in ("two words", "x" * 129, ""):  # replaced, never echoed into a log line as given
        echoed = httpx.get(f"{url}/livez", headers={"X-Request-ID": unusable}).headers["x-request-id"]
        assert NEW_ID.fullmatch(echoed), unusable


def test_grpc_echoes_the_request_id_as_metadata(gateway: tuple[str, int]) -> None:
    _, port = gateway
    auth = ("authorization", f"Bearer {KEY}")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.RelevanceStub(channel)
        _, call = stub.Rerank.with_call(pb.RerankRequest(query="angle", documents=["Angle", "Faucet"]),
                                        metadata=(auth, ("x-request-id", "order-18")), timeout=10)
        assert ("x-request-id", "order-18") in call.initial_metadata()
        assert ("x-request-id", "order-18") in call.trailing_metadata()
        _, call = stub.Rerank.with_call(pb.RerankRequest(query="angle", documents=["Angle"]), metadata=(auth,),
                                        timeout=10)
        assert NEW_ID.fullmatch(dict(call.initial_metadata())["x-request-id"])
        with pytest.raises(grpc.RpcError) as refused:  # errors carry it too
            stub.Rerank(pb.RerankRequest(query="", documents=["Angle"]), metadata=(auth, ("x-request-id", "bad-19")),
                        timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("x-request-id", "bad-19") in refused.value.trailing_metadata()


def test_log_records_of_a_request_carry_its_id(tiny_model_repository: Path, caplog: pytest.LogCaptureFixture,
                                               start_redis: Callable[[], RedisServer]) -> None:
    server = start_redis()
    settings = Settings(model_repository=tiny_model_repository, store="redis",  # type: ignore[call-arg]
                        redis_url=server.url, namespace="request-ids", grpc_port=None, teacher_local=False)
    with serving(create_app(settings)) as port, caplog.at_level(logging.WARNING, logger="service"):
        server.process.kill()  # the store goes: the engine logs it while serving the request
        server.process.wait()
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/score", json={"query": "angle", "items": [{"id": "1"}]},
                            headers={"X-Request-ID": "order-20"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["n_errors"] == 1
    failed = [r for r in caplog.records if r.getMessage().startswith("store read failed")]
    assert failed and all(getattr(r, "request_id", None) == "order-20" for r in failed)
