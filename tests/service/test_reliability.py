"""The quick fault scenarios, against real processes: hostile inputs over real HTTP (keep-alive included), a
gateway process killed with SIGKILL after acknowledged writes, admission control and clients that leave, slow
clients against `relevance serve`, metrics access and readiness, Redis restarted empty under running gateways.
The load scenarios (overload at 2x, switch under load, ...) are in tests/faults (`make test-faults`)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings
from tests.ports import free_port, serving
from tests.service.conftest import RedisServer
from tests.service.gateway_process import GatewayProcess, closed_within, local_settings

TITLES = ["Simpson Strong-Tie 12-Gauge Angle", "Everbilt 2 in. Zinc-Plated Corner Brace",
          "BEHR Premium Textured DeckOver 1-gal. Wood and Concrete Coating",
          "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Stainless"]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a /metrics exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture(scope="module")
def gateway(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = create_app(Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                              store_dir=tmp_path_factory.mktemp("index"), grpc_port=None,
                              max_body_bytes=64 * 1024))
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


# --- hostile input: 4xx naming the field, never a 500, and the connection stays usable ------------------------

HOSTILE = [
    ("/v1/score", '{"query":"drill \\ud800","items":[{"id":"1"}]}', ["body", "query"]),
    ("/v1/score", '{"query":"drill","items":[{"id":"\\udfff"}]}', ["body", "items", 0, "id"]),
    ("/v1/score", '{"query":"drill","items":[{"id":"1","title":"a \\ud83d b"}]}', ["body", "items", 0, "title"]),
    ("/v1/score", '{"query":"drill","items":[{"id":"1"}],"q\\ud800":1}', ["body"]),  # a key cannot be named
    ("/v1/score", '{"query":"drill","items":[{"id":"1"}],"evidence":"yes"}', ["body", "evidence"]),
    ("/v1/score", '{"query":"drill","items":[{"id":true}]}', ["body", "items", 0, "id"]),
    ("/v1/score", '{"query":NaN,"items":[{"id":"1"}]}', ["body", "query"]),
    ("/v1/score", '{"query":"drill","items":[{"id":1e999}]}', ["body", "items", 0, "id"]),
    ("/v1/rerank", '{"query":"drill","documents":["a"],"top_n":NaN}', ["body", "top_n"]),
    ("/v1/rerank", '{"query":"drill","documents":["a"],"top_n":Infinity}', ["body", "top_n"]),
    ("/v1/rerank", '{"query":"drill","documents":["a"],"top_n":-Infinity}', ["body", "top_n"]),
    ("/v1/rerank", '{"query":"drill","documents":["a"],"top_n":1e999}', ["body", "top_n"]),
    ("/v1/rerank", '{"query":"drill","documents":["a"],"top_n":"2"}', ["body", "top_n"]),
    ("/v1/rerank", '{"query":"drill","documents":["\\ud800"]}', ["body", "documents", 0]),
    ("/v1/items", '{"items":[{"id":"x","title":"\\udc00"}]}', ["body", "items", 0, "title"]),
    ("/v1/explain", '{"query":"\\ud800","title":"t"}', ["body", "query"]),
]


@pytest.mark.parametrize(("path", "body", "field"), HOSTILE, ids=[f"{p}:{b[:40]}" for p, b, _ in HOSTILE])
def test_hostile_input_is_a_422_naming_the_field_and_the_connection_survives(gateway: str, path: str, body: str,
                                                                             field: list[object]) -> None:
    with httpx.Client(base_url=gateway, timeout=10) as client:
        method = "PUT" if path == "/v1/items" else "POST"
        response = client.request(method, path, content=body.encode(), headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        errors = response.json()["error"]["fields"]
        assert any(error["loc"][: len(field)] == field for error in errors), errors
        # the fields' own paths: no validator or union member tags such as "function-after[_unicode(), str]"
        assert not [part for error in errors for part in error["loc"] if isinstance(part, str) and "[" in part]
        assert all("input" not in error for error in errors)  # the input is never echoed back
        again = client.post("/v1/score", json={"query": "drill", "items": [{"id": "1", "title": TITLES[0]}]})
        assert again.status_code == 200  # same keep-alive connection, not reset


def test_ids_keep_their_json_type(gateway: str) -> None:
    body = {"query": "angle", "items": [{"id": 7, "title": TITLES[0]}, {"id": "7", "title": TITLES[0]}]}
    scores = httpx.post(f"{gateway}/v1/score", json=body, timeout=10).json()["scores"]
    assert [s["id"] for s in scores] == [7, "7"]


def test_an_oversize_chunked_body_is_a_413(gateway: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query":"q","items":[{"id":"1","title":"'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}]}'

    response = httpx.post(f"{gateway}/v1/score", content=chunks(), headers={"content-type": "application/json"},
                          timeout=10)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]


def test_every_answered_status_is_in_the_openapi_schema(gateway: str) -> None:
    responses = {(path, method.upper()): set(operation["responses"])
                 for path, ops in httpx.get(f"{gateway}/openapi.json").json()["paths"].items()
                 for method, operation in ops.items()}
    for status in ("400", "408", "413", "422", "429", "503"):
        for operation in (("/v1/score", "POST"), ("/v1/rerank", "POST"), ("/v1/items", "PUT")):
            assert status in responses[operation], (operation, status)
    assert "503" in responses[("/readyz", "GET")]
    assert {"401", "403", "404"} <= responses[("/metrics", "GET")]



def test_the_schema_states_the_configured_limits_and_examples(gateway: str) -> None:
    schemas = httpx.get(f"{gateway}/openapi.json").json()["components"]["schemas"]
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    score = schemas["ScoreRequest"]
    assert score["properties"]["query"]["maxLength"] == defaults["max_query_chars"]
    assert score["properties"]["items"]["maxItems"] == defaults["max_items"]
    assert score["examples"] and schemas["RerankV2Request"]["examples"]
    string_id = next(b for b in schemas["ScoreItem"]["properties"]["id"]["anyOf"] if b["type"] == "string")
    assert string_id["maxLength"] == defaults["max_id_chars"]
    assert schemas["RerankV2Request"]["properties"]["documents"]["items"]["maxLength"] == defaults["max_title_chars"]
    assert schemas["ExplainPageRequest"]["properties"]["items"]["maxItems"] == defaults["explain_page_max_items"]
    # what the schema says is what the gateway enforces
    over = httpx.post(f"{gateway}/v1/score", json={"query": "q" * (defaults["max_query_chars"] + 1),
                                                   "items": [{"id": "1"}]})
    assert over.status_code == 422 and over.json()["error"]["fields"][0]["loc"] == ["body", "query"]


# --- durability: acknowledged writes survive SIGKILL ------------------------------------------------------------

def test_acknowledged_puts_survive_sigkill(tiny_model_repository: Path, tmp_path: Path) -> None:
    settings = local_settings(tiny_model_repository, tmp_path / "index", store_sync="full")
    ids = [f"sku-{k}" for k in range(100)]
    with GatewayProcess(settings) as first:
        for begin in range(0, len(ids), 10):
            items = [{"id": i, "title": f"{TITLES[k % 4]} {i}"} for k, i in enumerate(ids[begin : begin + 10])]
            response = httpx.put(f"{first.url}/v1/items", json={"items": items}, timeout=30)
            assert response.status_code == 200 and response.json()["upserted"] == 10
        first.kill()  # no shutdown code runs: nothing is flushed
    with GatewayProcess(settings) as second:
        body = {"query": "angle", "items": [{"id": i} for i in ids]}
        scores = httpx.post(f"{second.url}/v1/score", json=body, timeout=30).json()["scores"]
    assert [s.get("source") for s in scores] == ["store"] * len(ids)


# --- admission control and clients that leave -------------------------------------------------------------------

def test_overload_is_shed_with_429_and_retry_after(tiny_model_repository: Path, tmp_path: Path) -> None:
    """One request at a time, one waiting: a burst of slow requests (every title encoded) gets fast 429s with
    Retry-After for the excess, 200s for the rest, never a 5xx; the gauges return to 0."""
    app = create_app(Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                              store_dir=tmp_path, grpc_port=None, max_concurrent_requests=1, max_queued_requests=1,
                              max_queue_wait_ms=2000, title_cache_mib=0, query_cache_mib=0))

    async def burst(url: str) -> list[tuple[int, float, str | None]]:
        async with httpx.AsyncClient(timeout=30) as client:
            async def one(k: int) -> tuple[int, float, str | None]:
                items = [{"id": f"{k}-{j}", "title": f"{TITLES[j % 4]} {k} {j}"} for j in range(200)]
                started = time.perf_counter()
                response = await client.post(f"{url}/v1/score", json={"query": f"angle {k}", "items": items})
                return response.status_code, time.perf_counter() - started, response.headers.get("retry-after")

            return list(await asyncio.gather(*(one(k) for k in range(12))))

    with serving(app) as port:
        url = f"http://127.0.0.1:{port}"
        results = asyncio.run(burst(url))
        text = httpx.get(f"{url}/metrics").text
    statuses = [status for status, _, _ in results]
    assert set(statuses) == {200, 429}, statuses
    assert statuses.count(200) >= 2 and statuses.count(429) >= 6
    assert all(retry == "1" for status, _, retry in results if status == 429)
    slowest_ok = max(t for status, t, _ in results if status == 200)
    assert max(t for status, t, _ in results if status == 429) < slowest_ok  # refused at once, not after the work
    assert metric(text, "relevance_shed_total", reason="queue_full") == statuses.count(429)
    assert metric(text, "relevance_requests_in_flight") == 0 and metric(text, "relevance_requests_queued") == 0
    assert metric(text, "relevance_http_requests_total", route="/v1/score", status="429") == statuses.count(429)


RUNNER_ITEMS = 8000


def test_work_stops_for_clients_that_left(tiny_model_repository: Path, tmp_path: Path) -> None:
    """Clients that give up (timeout) while queued are dropped from the queue, and a running request whose client
    left is cancelled: the encoder does not do their work. The runner is admitted first and leaves only after the
    four queued clients have been counted, so each stage is counted exactly (leaving all at once races the queue's
    hand-over against the disconnect notices)."""
    app = create_app(Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                              store_dir=tmp_path, grpc_port=None, max_concurrent_requests=1, max_queued_requests=8,
                              max_queue_wait_ms=10_000, title_cache_mib=0, query_cache_mib=0, max_items=RUNNER_ITEMS,
                              max_body_bytes=16 * 2**20))

    def counted(url: str, name: str, want: float, **labels: str) -> str:
        deadline = time.monotonic() + 20
        while True:
            text = httpx.get(f"{url}/metrics").text
            if metric(text, name, **labels) == want or time.monotonic() > deadline:
                return text
            time.sleep(0.02)

    async def post(url: str, k: int, timeout: float | None, repeat: int = 1, n: int = 1000) -> None:
        items = [{"id": f"{k}-{j}", "title": f"{TITLES[j % 4]} {k} {j} " * repeat} for j in range(n)]
        async with httpx.AsyncClient(timeout=timeout) as client:
            with contextlib.suppress(httpx.TimeoutException):
                await client.post(f"{url}/v1/score", json={"query": f"angle {k}", "items": items})

    async def leave(url: str) -> str:
        # long titles, many of them: the runner must still be running when the queued clients have been counted,
        # however loaded the machine (each stage scales alike)
        runner = asyncio.create_task(post(url, 0, None, repeat=8, n=RUNNER_ITEMS))
        await asyncio.to_thread(counted, url, "relevance_requests_in_flight", 1)
        await asyncio.gather(*(post(url, k, 0.05) for k in range(1, 5)))
        await asyncio.to_thread(counted, url, "relevance_abandoned_total", 4, stage="queued")
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        return await asyncio.to_thread(counted, url, "relevance_abandoned_total", 1, stage="running")

    with serving(app) as port:
        url = f"http://127.0.0.1:{port}"
        text = asyncio.run(leave(url))
        assert metric(text, "relevance_abandoned_total", stage="queued") == 4, text
        assert metric(text, "relevance_abandoned_total", stage="running") == 1, text
        assert metric(text, "relevance_requests_in_flight") == 0
        assert metric(text, "relevance_http_requests_total", route="/v1/score", status="200") == 0
        ok = httpx.post(f"{url}/v1/score", json={"query": "angle", "items": [{"id": "1", "title": TITLES[0]}]})
        assert ok.status_code == 200


# --- slow clients and the connection bound (the real `relevance serve`) ----------------------------------------

def test_slow_clients_are_cut_off_and_connections_are_bounded(tiny_model_repository: Path, tmp_path: Path) -> None:
    settings = local_settings(tiny_model_repository, tmp_path / "index", request_read_timeout_s=1.0,
                              max_connections=20)
    with GatewayProcess(settings) as gateway:
        half_body = socket.create_connection(("127.0.0.1", gateway.port))
        half_body.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{\"query\": ")
        time.sleep(0.2)  # its headers are in before the connection bound is reached
        half_headers = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(30)]
        for sock in half_headers:
            sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        silent = socket.create_connection(("127.0.0.1", gateway.port))
        started = time.monotonic()
        # the bound: 32 connections held, more than it allows: new requests get 503 at once
        extra = [httpx.post(f"{gateway.url}/v1/score", json={"query": "q", "items": [{"id": "1", "title": "t"}]},
                            timeout=5) for _ in range(12)]
        assert 503 in [r.status_code for r in extra]
        outcomes = [closed_within(sock, 5.0) for sock in [*half_headers, silent]]
        body_closed, body_answer = closed_within(half_body, 5.0)
        elapsed = time.monotonic() - started
        for sock in [*half_headers, half_body, silent]:
            sock.close()
        assert all(closed for closed, _ in outcomes) and elapsed < 5.0
        assert body_closed and body_answer.startswith(b"HTTP/1.1 408")
        ok = httpx.post(f"{gateway.url}/v1/score", json={"query": "q", "items": [{"id": "1", "title": "t"}]},
                        timeout=10)
        assert ok.status_code == 200


# --- metrics access and readiness -------------------------------------------------------------------------------

def test_metrics_behind_the_key_or_on_their_own_port(tiny_model_repository: Path, tmp_path: Path) -> None:
    base = {"model_repository": tiny_model_repository, "store": "local", "store_dir": tmp_path, "grpc_port": None,
            "api_keys": ["s3cret"]}
    with serving(create_app(Settings(**base))) as port:  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metrics", headers={"x-api-key": "wrong"}).status_code == 403
        on_http = httpx.get(f"{url}/metrics", headers={"x-api-key": "s3cret"})
        assert "relevance_ready" in on_http.text
    metrics_port = free_port()
    with serving(create_app(Settings(**base, metrics_port=metrics_port))) as port:  # type: ignore[arg-type]
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"x-api-key": "s3cret"}).status_code == 404
        own = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert own.status_code == 200 and metric(own.text, "relevance_ready") == 1
        assert own.headers["content-type"] == on_http.headers["content-type"]
        head = httpx.head(f"http://127.0.0.1:{metrics_port}/metrics")
        assert head.status_code == 200 and head.content == b""
        for elsewhere in ("/", "/v1/score", "/metricsx", "/healthz"):  # the metrics port serves /metrics only
            assert httpx.get(f"http://127.0.0.1:{metrics_port}{elsewhere}").status_code == 404


def test_ready_gauge_agrees_with_readyz_when_redis_goes(tiny_model_repository: Path,
                                                        start_redis: Callable[[], RedisServer]) -> None:
    server = start_redis()
    settings = Settings(model_repository=tiny_model_repository, store="redis",  # type: ignore[call-arg]
                        redis_url=server.url, namespace="ready", grpc_port=None)
    with serving(create_app(settings)) as port:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/readyz").status_code == 200
        assert metric(httpx.get(f"{url}/metrics").text, "relevance_ready") == 1
        server.process.kill()
        server.process.wait()
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503
        assert metric(httpx.get(f"{url}/metrics", timeout=10).text, "relevance_ready") == 0
        server.restart_empty()
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        assert metric(httpx.get(f"{url}/metrics", timeout=10).text, "relevance_ready") == 1


# --- Redis metadata ---------------------------------------------------------------------------------------------

def test_redis_restarted_empty_under_running_gateways(tiny_model_repository: Path,
                                                      start_redis: Callable[[], RedisServer]) -> None:
    """Gateway A writes after Redis restarted empty; gateway B, started later, finds those items; an item id
    that looks like the store's metadata is an ordinary item and spoils no request."""
    server = start_redis()
    settings = Settings(model_repository=tiny_model_repository, store="redis",  # type: ignore[call-arg]
                        redis_url=server.url, namespace="restart", grpc_port=None)
    items = [{"id": "__codec__", "title": TITLES[0]}, {"id": "__ids__", "title": TITLES[1]},
             {"id": "p2", "title": TITLES[2]}]
    with serving(create_app(settings)) as port_a:
        a = f"http://127.0.0.1:{port_a}"
        assert httpx.put(f"{a}/v1/items", json={"items": items[:1]}, timeout=10).status_code == 200
        server.restart_empty()
        response = httpx.put(f"{a}/v1/items", json={"items": items}, timeout=10)
        assert response.status_code == 200, response.text
        with serving(create_app(settings)) as port_b:
            body = {"query": "angle", "items": [{"id": i["id"]} for i in items] + [{"id": "unknown"}]}
            scores = httpx.post(f"http://127.0.0.1:{port_b}/v1/score", json=body, timeout=10).json()["scores"]
    assert [s.get("source") for s in scores] == ["store", "store", "store", None]
    assert "unknown item" in scores[3]["error"]


def test_score_answers_are_strict_json(gateway: str) -> None:
    """Scores are finite numbers: the body parses with a JSON parser that refuses NaN and Infinity."""
    response = httpx.post(f"{gateway}/v1/score", json={"query": "angle", "items": [{"id": "1", "title": TITLES[0]}]})

    def refuse(constant: str) -> float:
        raise ValueError(constant)

    assert json.loads(response.text, parse_constant=refuse)["n_scored"] == 1


# --- one error body for every status ---------------------------------------------------------------------------

def test_every_error_status_has_one_body_shape(gateway: str) -> None:
    score = {"query": "angle", "items": [{"id": "1", "title": TITLES[0]}]}
    json_type = {"content-type": "application/json"}
    answers = {
        400: httpx.post(f"{gateway}/v1/score", content=b'{"query": ', headers=json_type),
        404: httpx.get(f"{gateway}/v1/nowhere"),
        405: httpx.get(f"{gateway}/v1/score"),
        413: httpx.post(f"{gateway}/v1/score", content=gzip.compress(b" " * (128 * 1024)),
                        headers={**json_type, "content-encoding": "gzip"}),  # small, but too large decompressed
        415: httpx.post(f"{gateway}/v1/score", content=b"{}", headers={**json_type, "content-encoding": "br"}),
        422: httpx.post(f"{gateway}/v1/rerank", json={"query": "angle", "documents": ["ok", 5]}),
    }
    types = {400: "malformed", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
             415: "unsupported_encoding", 422: "invalid_argument"}
    for status, answer in answers.items():
        assert answer.status_code == status, (status, answer.text)
        (error,) = answer.json().values()
        assert set(error) <= {"type", "message", "fields"} and error["type"] == types[status], (status, error)
        assert isinstance(error["message"], str) and error["message"], status
    fields = answers[422].json()["error"]["fields"]
    assert {tuple(f["loc"]) for f in fields} == {("body", "documents", 1)}  # no union member tags
    assert answers[422].json()["error"]["message"].startswith("documents[1]: ")
    assert answers[400].json()["error"]["fields"][0]["type"] == "json_invalid"
    # a gzip body within the limit is read as the plain one
    plain = httpx.post(f"{gateway}/v1/score", json=score).json()["scores"]
    packed = httpx.post(f"{gateway}/v1/score", content=gzip.compress(json.dumps(score).encode()),
                        headers={**json_type, "content-encoding": "gzip"})
    assert packed.status_code == 200 and packed.json()["scores"] == plain
    broken = httpx.post(f"{gateway}/v1/score", content=b"not gzip", headers={**json_type, "content-encoding": "gzip"})
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "malformed"
