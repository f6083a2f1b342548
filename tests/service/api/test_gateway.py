"""The gateway end to end over HTTP and gRPC (FastAPI TestClient with its lifespan, a real grpc.aio server),
with the tiny exported ColBERT, ONNX Runtime in-process and the real local store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.runtime import ColBERTModel, load_runtime_model
from service.grpc import relevance_pb2 as pb
from service.grpc import relevance_pb2_grpc as pb_grpc
from service.settings import Settings
from service.store.codec import TokenCodec
from service.store.local import LocalItemStore
from service.store.redis import RedisItemStore
from tests.ports import free_port
from tests.service.conftest import RedisServer

STORED = {
    "100001": "Simpson Strong-Tie 12-Gauge Angle",
    "100002": "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating",
    "100003": "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Stainless (Valve Not Included)",
}
QUERY = "angle bracket"

@pytest.fixture(scope="module")
def runtime(tiny_model_repository: Path) -> ColBERTModel:
    model = load_runtime_model(tiny_model_repository)
    assert isinstance(model, ColBERTModel)
    return model


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory, runtime: ColBERTModel) -> Path:
    """A float32 local index of STORED, written and activated the way the indexer does."""
    root = tmp_path_factory.mktemp("index")
    store = LocalItemStore(root, runtime.version.label, TokenCodec.float32(runtime.meta.dim))
    store.put_many(dict(zip(STORED, runtime.item_tokens(list(STORED.values())), strict=True)))
    store.flush()
    store.activate()
    store.close()
    return root


def _settings(repo: Path, store_dir: Path, **extra: object) -> Settings:
    values: dict[str, object] = {"model_repository": repo, "store": "local", "store_dir": store_dir,
                                 "grpc_port": free_port(), **extra}
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(tiny_model_repository: Path, store_dir: Path) -> Iterator[TestClient]:
    app = create_app(_settings(tiny_model_repository, store_dir, max_items=50, max_query_chars=64,
                               max_body_bytes=64 * 1024))
    with TestClient(app) as test_client:
        yield test_client


def test_scores_equal_the_offline_scores_in_request_order(client: TestClient, runtime: ColBERTModel) -> None:
    items = [{"id": "100003"}, {"id": "new-1", "title": "Everbilt 2 in. Zinc-Plated Corner Brace"},
             {"id": "100001", "title": "ignored: the stored embeddings win"}, {"id": "nobody"}]
    response = client.post("/v1/score", json={"query": QUERY, "items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "colbert:1" and body["n_scored"] == 3 and body["n_errors"] == 1
    assert [s["id"] for s in body["scores"]] == ["100003", "new-1", "100001", "nobody"]
    assert [s.get("source") for s in body["scores"]] == ["store", "title", "store", None]
    assert "no title" in body["scores"][3]["error"] and "score" not in body["scores"][3]
    titles = [STORED["100003"], "Everbilt 2 in. Zinc-Plated Corner Brace", STORED["100001"]]
    want = runtime.score_pairs([QUERY] * 3, titles)
    got = np.array([s["score"] for s in body["scores"][:3]])
    np.testing.assert_allclose(got, want, atol=1e-5)  # float32 store: equal to evaluate's scores
    for s in body["scores"][:3]:
        assert s["label"] == ("Good" if s["score"] >= 0.5 else "Bad")
    assert {"fetch", "query", "maxsim", "total"} <= set(body["timings_ms"])


def test_evidence_names_the_best_matching_title_token(client: TestClient) -> None:
    response = client.post("/v1/score", json={"query": QUERY, "items": [{"id": "100001"}], "evidence": True})
    evidence = response.json()["scores"][0]["evidence"]
    assert [e["query_token"] for e in evidence] == ["angle", "bracket"]
    title_tokens = set(client.app.state.engine.model.tokenizer.tokens(  # type: ignore[attr-defined]
        client.app.state.engine.model.tokenizer.side_rows([STORED["100001"]], "item")[0]))  # type: ignore[attr-defined]
    assert all(e["title_token"] in title_tokens and -1.0 <= e["similarity"] <= 1.0 for e in evidence)


@pytest.mark.parametrize(("body", "field"), [
    ({"query": "", "items": [{"id": "1"}]}, ["body", "query"]),
    ({"query": "   ", "items": [{"id": "1"}]}, ["body", "query"]),
    ({"query": "q" * 65, "items": [{"id": "1"}]}, ["body", "query"]),
    ({"query": "q", "items": []}, ["body", "items"]),
    ({"query": "q", "items": [{"id": str(i)} for i in range(51)]}, ["body", "items"]),
    ({"query": "q", "items": "100001"}, ["body", "items"]),
    ({"query": "q", "items": [{"title": "no id"}]}, ["body", "items", 0, "id"]),
    ({"query": "q", "items": [{"id": "1", "title": 5}]}, ["body", "items", 0, "title"]),
    ({"query": "q", "items": [{"id": "1"}], "evidance": True}, ["body", "evidance"]),
    ({"query": 3, "items": [{"id": "1"}]}, ["body", "query"]),
])
def test_bad_input_is_a_422_naming_the_field(client: TestClient, body: dict[str, object], field: list[object]) -> None:
    response = client.post("/v1/score", json=body)
    assert response.status_code == 422, response.text
    assert field in [error["loc"] for error in response.json()["error"]["fields"]]


def test_malformed_and_oversized_bodies(client: TestClient) -> None:
    response = client.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "malformed"
    huge = json.dumps({"query": "q", "items": [{"id": "1", "title": "x" * 100_000}]})
    response = client.post("/v1/score", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]


def test_rerank_is_cohere_compatible(client: TestClient, runtime: ColBERTModel) -> None:
    documents = [STORED["100002"], {"text": STORED["100001"]}, STORED["100003"]]
    response = client.post("/v1/rerank", json={"query": QUERY, "documents": documents, "top_n": 2,
                                               "return_documents": True, "model": "colbert"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    texts = [STORED["100002"], STORED["100001"], STORED["100003"]]
    want = runtime.score_pairs([QUERY] * 3, texts)
    order = np.argsort(-want)[:2]
    assert [r["index"] for r in results] == order.tolist()
    np.testing.assert_allclose([r["relevance_score"] for r in results], want[order], atol=1e-5)
    assert results[0]["document"]["text"] == texts[order[0]]


def test_put_items_then_score_by_id(client: TestClient) -> None:
    response = client.put("/v1/items", json={"items": [{"id": 42, "title": "Hampton Bay 3-Light Chandelier"}]})
    assert response.status_code == 200 and response.json() == {"model_version": "colbert:1", "upserted": 1}
    scored = client.post("/v1/score", json={"query": "chandelier", "items": [{"id": 42}]}).json()["scores"][0]
    assert scored["id"] == 42 and scored["source"] == "store"
    assert client.put("/v1/items", json={"items": [{"id": "x", "title": ""}]}).status_code == 422


def test_health_readiness_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == "colbert:1"
    client.post("/v1/score", json={"query": QUERY, "items": [{"id": "100001"}]})
    text = client.get("/metrics").text
    for name in ("relevance_http_requests_total", "relevance_http_request_duration_seconds_bucket",
                 "relevance_stage_duration_seconds_bucket", "relevance_encoder_batch_size_bucket",
                 "relevance_encoder_queue_depth", "relevance_query_cache_requests_total",
                 "relevance_items_scored_total", "relevance_model_info"):
        assert name in text, name
    assert 'route="/v1/score"' in text
    assert client.get("/docs").status_code == 200 and "/v1/score" in client.get("/openapi.json").json()["paths"]


def test_grpc_scores_match_http(client: TestClient) -> None:
    port = client.app.state.grpc_port  # type: ignore[attr-defined]
    items = [{"id": "100001"}, {"id": "new", "title": "Everbilt Corner Brace"}, {"id": "nobody"}]
    http = client.post("/v1/score", json={"query": QUERY, "items": items}).json()["scores"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.RelevanceStub(channel)
        request = pb.ScoreRequest(query=QUERY, items=[pb.Item(id="100001"),
                                                      pb.Item(id="new", title="Everbilt Corner Brace"),
                                                      pb.Item(id="nobody")], evidence=True)
        reply = stub.Score(request, timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Score(pb.ScoreRequest(query=" ", items=[pb.Item(id="1")]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "query" in caught.value.details()
    assert reply.model_version == "colbert:1" and reply.n_scored == 2 and reply.n_errors == 1
    np.testing.assert_allclose([s.score for s in reply.scores[:2]], [s["score"] for s in http[:2]], atol=1e-6)
    assert not reply.scores[2].HasField("score") and reply.scores[2].error
    assert len(reply.scores[0].evidence) == 2


def test_api_keys(tiny_model_repository: Path, store_dir: Path) -> None:
    app = create_app(_settings(tiny_model_repository, store_dir, api_keys=["s3cret"], grpc_port=None))
    body = {"query": QUERY, "items": [{"id": "100001"}]}
    with TestClient(app) as client:
        assert client.post("/v1/score", json=body).status_code == 401
        assert client.post("/v1/score", json=body, headers={"X-API-Key": "wrong"}).status_code == 403
        assert client.post("/v1/score", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # probes stay open


def test_explain_without_a_teacher_is_a_clear_503_and_scoring_goes_on(client: TestClient) -> None:
    response = client.post("/v1/explain", json={"query": QUERY, "title": STORED["100001"], "mode": "teacher"})
    assert response.status_code == 503 and "no teacher configured" in response.json()["error"]["message"]
    assert int(response.headers["retry-after"]) >= 1
    assert client.post("/v1/explain", json={"query": QUERY, "title": " "}).status_code == 422
    unknown = client.post("/v1/explain", json={"query": QUERY, "title": "t", "model": "qwen2-7b", "mode": "teacher"})
    (field,) = unknown.json()["error"]["fields"]
    assert unknown.status_code == 422 and field["loc"] == ["body", "model"]
    assert "'qwen2-7b'" in field["msg"] and "none" in field["msg"]
    assert client.post("/v1/score", json={"query": QUERY, "items": [{"id": "100001"}]}).status_code == 200
    assert 'relevance_explain_requests_total{mode="teacher",outcome="unavailable"}' in client.get("/metrics").text


def test_redis_store_gives_the_same_scores(tiny_model_repository: Path, runtime: ColBERTModel,
                                           redis_server: RedisServer) -> None:
    """The gateway on a real Redis store (float32 codec) scores like the offline runtime, cached or not."""
    store = RedisItemStore(redis_server.url, "gateway-test", runtime.version.label,
                           TokenCodec.float32(runtime.meta.dim))
    store.put_many(dict(zip(STORED, runtime.item_tokens(list(STORED.values())), strict=True)))
    store.close()
    settings = _settings(tiny_model_repository, Path("unused"), store="redis", redis_url=redis_server.url,
                         namespace="gateway-test", grpc_port=None, write_back=True)
    items = [{"id": "100002"}, {"id": "fresh", "title": "Everbilt 2 in. Zinc-Plated Corner Brace"}]
    with TestClient(create_app(settings)) as client:
        first = client.post("/v1/score", json={"query": QUERY, "items": items}).json()["scores"]
        assert [s["source"] for s in first] == ["store", "title"]
        deadline = time.monotonic() + 5  # the write-back runs after the first response
        while True:
            again = client.post("/v1/score", json={"query": QUERY, "items": [{"id": "fresh"}]}).json()["scores"]
            if "score" in again[0] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    want = runtime.score_pairs([QUERY] * 2, [STORED["100002"], "Everbilt 2 in. Zinc-Plated Corner Brace"])
    np.testing.assert_allclose([s["score"] for s in first], want, atol=1e-5)
    assert again[0]["source"] == "store"  # written back by the first request
    np.testing.assert_allclose(again[0]["score"], want[1], atol=1e-5)
