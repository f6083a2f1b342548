"""The two transports over the one handler layer: Cohere's official v2 SDK client against /v2/rerank, gRPC's
Rerank and Explain RPCs agreeing with HTTP, the standard gRPC health service and server reflection, API keys and
limits mapped the same way on both (a real uvicorn server, a real grpc.aio server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cohere
import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.app import create_app
from service.core.runtime import ColBERTModel, load_runtime_model
from service.explain import AspectEvidence, ExplainResult
from service.grpc import relevance_pb2 as pb
from service.grpc import relevance_pb2_grpc as pb_grpc
from service.grpc.server import explain_message
from service.handlers import ApiError, Kind
from service.handlers.errors import grpc_status, http_status
from service.settings import Settings
from tests.ports import free_port, serving

QUERY = "angle bracket"
DOCUMENTS = ["BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating",
             "Simpson Strong-Tie 12-Gauge Angle", "Delta Vero 1-Handle Shower Only Faucet Trim Kit"]
KEY = "s3cret"


@pytest.fixture(scope="module")
def gateway(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(HTTP base URL, gRPC port) of a gateway with an API key and no teacher."""
    settings = Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                        store_dir=tmp_path_factory.mktemp("index"), grpc_port=free_port(), api_keys=[KEY],
                        teacher_local=False, max_items=5)
    app = create_app(settings)
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}", app.state.grpc_port


def _metadata(key: str = KEY) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def test_cohere_v2_sdk_client_reranks(gateway: tuple[str, int], tiny_model_repository: Path) -> None:
    url, _ = gateway
    runtime = load_runtime_model(tiny_model_repository)
    assert isinstance(runtime, ColBERTModel)
    want = runtime.score_pairs([QUERY] * len(DOCUMENTS), DOCUMENTS)
    client = cohere.ClientV2(api_key=KEY, base_url=url)
    response = client.rerank(model="colbert", query=QUERY, documents=DOCUMENTS, top_n=2)
    order = np.argsort(-want)[:2]
    assert [r.index for r in response.results] == order.tolist()
    np.testing.assert_allclose([r.relevance_score for r in response.results], want[order], atol=1e-5)
    v1 = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS, "top_n": 2},
                    headers={"x-api-key": KEY}).json()["results"]
    assert [(r["index"], r["relevance_score"]) for r in v1] == [(r.index, r.relevance_score) for r in response.results]
    with pytest.raises(cohere.core.ApiError) as denied:
        cohere.ClientV2(api_key="wrong", base_url=url).rerank(model="colbert", query=QUERY, documents=DOCUMENTS)
    assert denied.value.status_code == 403


def test_grpc_rerank_explain_and_errors(gateway: tuple[str, int]) -> None:
    url, port = gateway
    http = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS},
                      headers={"x-api-key": KEY}).json()["results"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.RelevanceStub(channel)
        reply = stub.Rerank(pb.RerankRequest(query=QUERY, documents=DOCUMENTS, top_n=3), metadata=_metadata(),
                            timeout=10)
        assert reply.model_version == "colbert:1"
        assert [r.index for r in reply.results] == [r["index"] for r in http]
        np.testing.assert_allclose([r.relevance_score for r in reply.results],
                                   [r["relevance_score"] for r in http], atol=1e-9)
        calls = {
            "no key": (lambda: stub.Rerank(pb.RerankRequest(query=QUERY, documents=DOCUMENTS), timeout=10),
                       grpc.StatusCode.UNAUTHENTICATED, "missing API key"),
            "wrong key": (lambda: stub.Score(pb.ScoreRequest(query=QUERY, items=[pb.Item(id="1")]),
                                             metadata=_metadata("nope"), timeout=10),
                          grpc.StatusCode.PERMISSION_DENIED, "unknown API key"),
            "too many": (lambda: stub.Rerank(pb.RerankRequest(query=QUERY, documents=["t"] * 6),
                                             metadata=_metadata(), timeout=10),
                         grpc.StatusCode.INVALID_ARGUMENT, "documents: at most 5 items per request, got 6"),
            "empty id": (lambda: stub.Score(pb.ScoreRequest(query=QUERY, items=[pb.Item(id="a"), pb.Item(id="")]),
                                            metadata=_metadata(), timeout=10),
                         grpc.StatusCode.INVALID_ARGUMENT, "items[1].id: must not be empty"),
            "no teacher": (lambda: stub.Explain(pb.ExplainRequest(query=QUERY, title=DOCUMENTS[1], mode="teacher"),
                                                metadata=_metadata(), timeout=10),
                           grpc.StatusCode.UNAVAILABLE, "no teacher configured"),
            "unknown teacher": (lambda: stub.Explain(pb.ExplainRequest(query=QUERY, title=DOCUMENTS[1], model="nope",
                                                                       mode="teacher"),
                                                     metadata=_metadata(), timeout=10),
                                grpc.StatusCode.INVALID_ARGUMENT, "model:"),
            "unknown mode": (lambda: stub.Explain(pb.ExplainRequest(query=QUERY, title=DOCUMENTS[1], mode="oracle"),
                                                  metadata=_metadata(), timeout=10),
                             grpc.StatusCode.INVALID_ARGUMENT, "mode: must be one of decision, teacher"),
            "no title": (lambda: stub.Explain(pb.ExplainRequest(query=QUERY), metadata=_metadata(), timeout=10),
                         grpc.StatusCode.INVALID_ARGUMENT, "title:"),
            "unknown item": (lambda: stub.Explain(pb.ExplainRequest(query=QUERY, item_id="nope"),
                                                  metadata=_metadata(), timeout=10),
                             grpc.StatusCode.NOT_FOUND, "item_id: item 'nope'"),
            "page writer": (lambda: stub.ExplainPage(pb.ExplainPageRequest(query=QUERY, items=[pb.Item(id="a",
                                                     title="t")], writer="llm"), metadata=_metadata(), timeout=10),
                            grpc.StatusCode.INVALID_ARGUMENT, "writer:"),
        }
        for name, (call, code, text) in calls.items():
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == code, name
            assert text in caught.value.details(), name
    over_http = httpx.post(f"{url}/v1/explain", json={"query": QUERY, "title": DOCUMENTS[1], "mode": "teacher"},
                           headers={"x-api-key": KEY})
    assert over_http.status_code == 503 and "no teacher configured" in over_http.json()["error"]["message"]


def test_grpc_explains_the_decision_as_http_does(gateway: tuple[str, int]) -> None:
    """Decision mode needs no teacher: both transports give the same verdict, score and CoT, and a page keeps the
    request's order with per-item errors."""
    url, port = gateway
    body = {"query": QUERY, "title": DOCUMENTS[1], "counterfactual": True}
    http = httpx.post(f"{url}/v1/explain", json=body, headers={"x-api-key": KEY}).json()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.RelevanceStub(channel)
        reply = stub.Explain(pb.ExplainRequest(query=QUERY, title=DOCUMENTS[1], counterfactual=True),
                             metadata=_metadata(), timeout=10)
        page = stub.ExplainPage(pb.ExplainPageRequest(query=QUERY, items=[
            pb.Item(id="b", title=DOCUMENTS[2]), pb.Item(id="unknown"), pb.Item(id="a", title=DOCUMENTS[1])]),
            metadata=_metadata(), timeout=10)
    assert (reply.mode, reply.verdict, reply.writer, reply.cot) == ("decision", http["verdict"], "rules", http["cot"])
    assert reply.score == pytest.approx(http["score"], abs=1e-9)
    assert json.loads(reply.result_json)["counterfactual"] is not None
    assert [(i.id, i.HasField("result"), i.HasField("error")) for i in page.items] == [
        ("b", True, False), ("unknown", False, True), ("a", True, False)]
    assert page.items[2].result.cot == http["cot"] and (page.n_explained, page.n_errors) == (2, 1)


def test_grpc_health_and_reflection(gateway: tuple[str, int]) -> None:
    _, port = gateway
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "relevance.v1.Relevance"):  # no API key: probes stay open
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                    timeout=10))
        names = {s.name for s in replies[0].list_services_response.service}
        assert names >= {"relevance.v1.Relevance", "grpc.health.v1.Health",
                         "grpc.reflection.v1alpha.ServerReflection"}


def test_one_error_type_mapped_once_per_transport() -> None:
    invalid = ApiError(Kind.INVALID_ARGUMENT, "at most 5 characters, got 6", field=("items", 3, "title"))
    assert invalid.field_path == "items[3].title"
    assert http_status(invalid) == (422, {"error": {
        "type": "invalid_argument", "message": "items[3].title: at most 5 characters, got 6",
        "fields": [{"loc": ["body", "items", 3, "title"], "msg": "at most 5 characters, got 6", "type": "too_long"}]}},
        {})
    assert grpc_status(invalid) == (grpc.StatusCode.INVALID_ARGUMENT, "items[3].title: at most 5 characters, got 6")
    busy = ApiError(Kind.OVERLOADED, "queue full", retry_after_s=0.2)
    assert http_status(busy) == (429, {"error": {"type": "overloaded", "message": "queue full"}}, {"Retry-After": "1"})
    assert grpc_status(busy)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert http_status(ApiError(Kind.UNAUTHENTICATED, "missing"))[2] == {"WWW-Authenticate": "Bearer"}
    assert http_status(ApiError(Kind.UPSTREAM_ERROR, "teacher said 500"))[0] == 502
    # every kind has one status per transport; the body-limit refusals close the connection
    assert {kind: http_status(ApiError(kind, "x"))[0] for kind in Kind} == {
        Kind.UNAUTHENTICATED: 401, Kind.PERMISSION_DENIED: 403, Kind.INVALID_ARGUMENT: 422, Kind.NOT_FOUND: 404,
        Kind.OVERLOADED: 429, Kind.TOO_LARGE: 413, Kind.READ_TIMEOUT: 408, Kind.UNSUPPORTED_ENCODING: 415,
        Kind.MALFORMED: 400, Kind.UNAVAILABLE: 503, Kind.UPSTREAM_ERROR: 502}
    assert all(grpc_status(ApiError(kind, "x"))[0] != grpc.StatusCode.OK for kind in Kind)
    assert http_status(ApiError(Kind.TOO_LARGE, "big", close_connection=True))[2] == {"Connection": "close"}


def test_explain_message_carries_the_result() -> None:
    result = ExplainResult(
        mode="teacher", verdict="Good", writer="teacher", query=QUERY, title=DOCUMENTS[1],
        cot="Thinking: ... Final judgment: Good", judgement="Good", reason=None,
        aspects=[AspectEvidence(aspect="product", query_value="angle bracket", query_span=(0, 13),
                                item_value="Angle", item_span=(28, 33), matches=True),
                 AspectEvidence(aspect="brand", query_value=None, query_span=None, item_value="Simpson",
                                item_span=(0, 7), matches=None)],
        note=None, score=0.9, p_good=0.95, p_bad=0.05, normalisation="softmax", score_reason=None, parse_ok=True,
        parse_errors=[], parse_warnings=["w"], model="ellm-rele", latency_ms=12.5)
    message = explain_message(result)
    assert message.judgement == "Good" and not message.HasField("reason") and message.score == 0.9
    assert message.aspects[0].query_span == pb.Span(start=0, end=13) and message.aspects[0].matches
    assert not message.aspects[1].HasField("query_value") and not message.aspects[1].HasField("matches")
    assert ExplainResult.model_validate_json(message.result_json) == result


# --- rerank conformance: every field honoured or refused, alike over HTTP and gRPC ------------------------------

def test_cohere_v1_sdk_ranks_on_rank_fields(gateway: tuple[str, int], tiny_model_repository: Path) -> None:
    url, _ = gateway
    runtime = load_runtime_model(tiny_model_repository)
    assert isinstance(runtime, ColBERTModel)
    documents = [{"title": title, "brand": "Acme"} for title in DOCUMENTS]
    client = cohere.Client(api_key=KEY, base_url=url)
    response = client.rerank(model="colbert", query=QUERY, documents=documents, rank_fields=["title"],
                             return_documents=True)
    want = runtime.score_pairs([QUERY] * len(DOCUMENTS), DOCUMENTS)  # ranked on the title alone
    assert [r.index for r in response.results] == np.argsort(-want).tolist()
    np.testing.assert_allclose([r.relevance_score for r in response.results], np.sort(want)[::-1], atol=1e-5)
    assert response.results[0].document is not None  # the document comes back as sent, every field
    assert response.id and response.meta is not None and response.meta.api_version is not None
    two = runtime.score_pairs([QUERY], [f"brand: Acme\ntitle: {DOCUMENTS[1]}"])
    both = client.rerank(model="colbert", query=QUERY, documents=documents[1:2], rank_fields=["brand", "title"])
    np.testing.assert_allclose(both.results[0].relevance_score, two[0], atol=1e-5)
    unversioned = httpx.post(f"{url}/rerank", json={"query": QUERY, "documents": DOCUMENTS},
                             headers={"x-api-key": KEY}).json()
    assert [r["index"] for r in unversioned["results"]] == np.argsort(-want).tolist()
    missing = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": documents, "rank_fields": ["text"]},
                         headers={"x-api-key": KEY})
    assert missing.status_code == 422
    assert missing.json()["error"]["fields"][0]["loc"] == ["body", "documents", 0, "text"]


def test_cohere_v2_max_tokens_per_doc_truncates_alike_over_grpc(gateway: tuple[str, int],
                                                                tiny_model_repository: Path) -> None:
    url, port = gateway
    runtime = load_runtime_model(tiny_model_repository)
    assert isinstance(runtime, ColBERTModel)
    truncated = [runtime.tokenizer.truncate(d, 2) for d in DOCUMENTS]
    assert truncated[0] != DOCUMENTS[0] and all(d.startswith(t) for d, t in zip(DOCUMENTS, truncated, strict=True))
    want = runtime.score_pairs([QUERY] * len(DOCUMENTS), truncated)
    response = cohere.ClientV2(api_key=KEY, base_url=url).rerank(model="colbert:1", query=QUERY,
                                                                 documents=DOCUMENTS, max_tokens_per_doc=2)
    assert [r.index for r in response.results] == np.argsort(-want).tolist()
    np.testing.assert_allclose([r.relevance_score for r in response.results], np.sort(want)[::-1], atol=1e-5)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = pb_grpc.RelevanceStub(channel).Rerank(
            pb.RerankRequest(query=QUERY, documents=DOCUMENTS, max_tokens_per_doc=2, model="colbert"),
            metadata=_metadata(), timeout=10)
    assert [(r.index, r.relevance_score) for r in reply.results] == [(r.index, r.relevance_score)
                                                                      for r in response.results]


def test_rerank_fields_it_cannot_honour_are_refused_by_name(gateway: tuple[str, int]) -> None:
    url, port = gateway
    v2 = cohere.ClientV2(api_key=KEY, base_url=url)
    with pytest.raises(cohere.core.ApiError) as other_model:
        v2.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS)
    assert other_model.value.status_code == 404 and "rerank-v3.5" in str(other_model.value.body)
    with pytest.raises(cohere.core.ApiError) as priority:
        v2.rerank(model="colbert", query=QUERY, documents=DOCUMENTS, priority=1)
    assert priority.value.status_code == 422 and "priority" in str(priority.value.body)
    with pytest.raises(cohere.core.ApiError) as chunks:
        cohere.Client(api_key=KEY, base_url=url).rerank(query=QUERY, documents=DOCUMENTS, max_chunks_per_doc=2)
    assert chunks.value.status_code == 422 and "max_chunks_per_doc" in str(chunks.value.body)
    for path in ("/v1/rerank", "/v2/rerank"):
        unknown = httpx.post(f"{url}{path}", json={"query": QUERY, "documents": DOCUMENTS, "top_k": 2},
                             headers={"x-api-key": KEY})
        assert unknown.status_code == 422
        assert [(e["type"], e["loc"]) for e in unknown.json()["error"]["fields"]] == [("extra_forbidden",
                                                                                  ["body", "top_k"])]
    # an empty document: the same refusal over both transports
    http = httpx.post(f"{url}/v2/rerank", json={"query": QUERY, "documents": ["a", " "]}, headers={"x-api-key": KEY})
    assert http.status_code == 422
    (error,) = http.json()["error"]["fields"]
    assert error["loc"] == ["body", "documents", 1]
    assert http.json()["error"]["message"] == f"documents[1]: {error['msg']}"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.RelevanceStub(channel)
        with pytest.raises(grpc.RpcError) as empty:
            stub.Rerank(pb.RerankRequest(query=QUERY, documents=["a", " "]), metadata=_metadata(), timeout=10)
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert empty.value.details() == f"documents[1]: {error['msg']}"
        with pytest.raises(grpc.RpcError) as other:
            stub.Rerank(pb.RerankRequest(query=QUERY, documents=["a"], model="rerank-v3.5"), metadata=_metadata(),
                        timeout=10)
        assert other.value.code() == grpc.StatusCode.NOT_FOUND and other.value.details().startswith("model:")


def test_a_grpc_request_refused_for_size_is_counted(gateway: tuple[str, int]) -> None:
    url, port = gateway
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.RelevanceStub(channel).Rerank(pb.RerankRequest(query=QUERY, documents=["x" * (5 << 20)]),
                                              metadata=_metadata(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    text = httpx.get(f"{url}/metrics", headers={"x-api-key": KEY}).text
    assert 'relevance_grpc_requests_total{code="RESOURCE_EXHAUSTED",method="Rerank"}' in text
