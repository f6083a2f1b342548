"""HTTP routes (FastAPI). Logic lives in the engine; here: limits, auth, mapping to and from the schemas."""

from __future__ import annotations

import hmac
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.protocol import (
    ExplainRequest,
    Problem,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    ScoreRequest,
    ScoreResponse,
    UpsertRequest,
    UpsertResponse,
)
from service.core.batching import Overloaded
from service.core.engine import ItemInput, ScoringEngine
from service.explain import Explainer, ExplainResult, TeacherResponseError, TeacherUnavailable
from service.health import teacher_health
from service.settings import Settings
from service.store import StoreError

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body could not be read as JSON text (e.g. not UTF-8)."},
    401: {"model": Problem, "description": "Missing API key."},
    403: {"model": Problem, "description": "Unknown API key."},
    408: {"model": Problem, "description": "The request body did not arrive within the read timeout."},
    413: {"model": Problem, "description": "Request body too large."},
    429: {"model": Problem, "description": "Shed by admission control (too many requests in flight or queued); "
                                           "retry after the Retry-After header."},
    503: {"model": Problem, "description": "Overloaded or not ready; retry after the Retry-After header."},
}


NO_TEACHER_RETRY_S = 300  # no teacher configured: retrying soon will not help


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> ScoringEngine:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(503, "the model is not loaded yet", headers={"Retry-After": "1"})
    return engine


def require_api_key(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """With API keys configured: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; 401 when absent,
    403 when unknown (compared in constant time)."""
    if not settings.api_keys:
        return
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not key:
        raise HTTPException(401, "missing API key (Authorization: Bearer <key> or X-API-Key)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in settings.api_keys):
        raise HTTPException(403, "unknown API key")


def too_large(field: list[str | int], message: str, kind: str = "too_long") -> HTTPException:
    """A 422 in FastAPI's validation format, naming the field."""
    return HTTPException(422, [{"type": kind, "loc": ["body", *field], "msg": message}])


def check_text(value: str, field: list[str | int], limit: int) -> None:
    if len(value) > limit:
        raise too_large(field, f"at most {limit} characters, got {len(value)}")


def check_items(n: int, settings: Settings, field: str) -> None:
    if n > settings.max_items:
        raise too_large([field], f"at most {settings.max_items} items per request, got {n}")


Engine = Annotated[ScoringEngine, Depends(get_engine)]
Config = Annotated[Settings, Depends(get_settings)]
v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS)
ops = APIRouter()


def overloaded(exc: Overloaded) -> HTTPException:
    return HTTPException(503, str(exc), headers={"Retry-After": "1"})


@v1.post("/score", response_model=ScoreResponse, response_model_exclude_none=True)
async def score(body: ScoreRequest, engine: Engine, settings: Config) -> Response:
    """Score items for a query: calibrated p(Good) per item, in request order. Items missing from the store are
    encoded from their ``title``; items with neither get an ``error`` instead of a score."""
    check_text(body.query, ["query"], settings.max_query_chars)
    check_items(len(body.items), settings, "items")
    for i, item in enumerate(body.items):
        check_text(str(item.id), ["items", i, "id"], settings.max_id_chars)
        if item.title is not None:
            check_text(item.title, ["items", i, "title"], settings.max_title_chars)
    try:
        outcome = await engine.score(body.query, [ItemInput(str(it.id), it.title) for it in body.items],
                                     evidence=body.evidence)
    except Overloaded as exc:
        raise overloaded(exc) from None
    # the body is built here rather than through the response model: re-validating 100 items per request costs
    # more than the scoring (the OpenAPI schema still documents ScoreResponse)
    threshold = settings.good_threshold
    scores: list[dict[str, Any]] = []
    for item, result in zip(body.items, outcome.items, strict=True):
        entry: dict[str, Any] = {"id": item.id}
        if result.score is not None:
            entry["score"] = result.score
            entry["label"] = "Good" if result.score >= threshold else "Bad"
        if result.source is not None:
            entry["source"] = result.source
        if result.error is not None:
            entry["error"] = result.error
        if result.evidence is not None:
            entry["evidence"] = [{"query_token": m.query_token, "title_token": m.title_token,
                                  "similarity": m.similarity} for m in result.evidence]
        scores.append(entry)
    n_scored = sum(1 for s in scores if "score" in s)
    payload = {"model_version": engine.model_version, "scores": scores, "n_scored": n_scored,
               "n_errors": len(scores) - n_scored, "timings_ms": outcome.timings_ms}
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


@v1.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True)
async def rerank(body: RerankRequest, engine: Engine, settings: Config) -> RerankResponse:
    """Cohere/Jina-compatible rerank of documents (product titles) for a query, best first."""
    check_text(body.query, ["query"], settings.max_query_chars)
    check_items(len(body.documents), settings, "documents")
    texts = [d.text if isinstance(d, RerankDocument) else d for d in body.documents]
    for i, text in enumerate(texts):
        check_text(text, ["documents", i], settings.max_title_chars)
    try:
        outcome = await engine.score(body.query, [ItemInput(f"#{i}", t) for i, t in enumerate(texts)],
                                     evidence=False, use_store=False)
    except Overloaded as exc:
        raise overloaded(exc) from None
    ranked = sorted(((i, r.score or 0.0) for i, r in enumerate(outcome.items)), key=lambda x: -x[1])
    ranked = ranked[: body.top_n] if body.top_n else ranked
    return RerankResponse(
        model=engine.model_version,
        results=[RerankResult(index=i, relevance_score=s,
                              document=RerankDocument(text=texts[i]) if body.return_documents else None)
                 for i, s in ranked],
        meta={"timings_ms": outcome.timings_ms})


@v1.post("/explain", response_model=ExplainResult,
         responses={502: {"model": Problem, "description": "The teacher answered with an error."}})
async def explain(body: ExplainRequest, request: Request, settings: Config) -> ExplainResult:
    """The ELLM-rele teacher's chain of thought for a (query, title) pair: aspects with match/mismatch, the
    judgement and the teacher's score (eq. 4). 503 with Retry-After when no teacher is configured or it is down;
    scoring is unaffected."""
    check_text(body.query, ["query"], settings.max_query_chars)
    check_text(body.title, ["title"], settings.max_title_chars)
    explainer: Explainer = request.app.state.explainer
    metrics = request.app.state.metrics
    started = time.perf_counter()
    try:
        result = await explainer.explain(body.query, body.title)
    except TeacherUnavailable as exc:
        metrics.explain.labels("unavailable").inc()
        retry = exc.retry_after_s if exc.retry_after_s is not None else NO_TEACHER_RETRY_S
        raise HTTPException(503, str(exc), headers={"Retry-After": str(max(1, round(retry)))}) from None
    except TeacherResponseError as exc:
        metrics.explain.labels("teacher_error").inc()
        raise HTTPException(502, f"the teacher answered with an error: {exc}") from None
    finally:
        metrics.explain_latency.observe(time.perf_counter() - started)
    metrics.explain.labels("ok").inc()
    return result


@v1.put("/items", response_model=UpsertResponse)
async def upsert_items(body: UpsertRequest, engine: Engine, settings: Config) -> UpsertResponse:
    """Encode titles and insert or replace the items in the embedding store (this model version's keys)."""
    check_items(len(body.items), settings, "items")
    for i, item in enumerate(body.items):
        check_text(str(item.id), ["items", i, "id"], settings.max_id_chars)
        check_text(item.title, ["items", i, "title"], settings.max_title_chars)
    try:
        n = await engine.upsert([ItemInput(str(it.id), it.title) for it in body.items])
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable: {exc}", headers={"Retry-After": "5"}) from None
    return UpsertResponse(model_version=engine.model_version, upserted=n)


@ops.get("/healthz", response_model=dict[str, str])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@ops.get("/readyz", responses={503: {"description": "Model or store not ready, or the served version has no "
                                                   "index."}})
async def readyz(request: Request, response: Response) -> dict[str, Any]:
    """Readiness: the model is loaded, the encoder backend and the store answer and the served version is indexed
    (when a version was activated); ``dependencies`` gives each one's status. The teacher, when configured, is
    listed too but does not decide readiness (scoring does not need it). ``relevance_ready`` reports the same."""
    serving = getattr(request.app.state, "serving", None)
    ready, body = serving.readiness() if serving is not None else (False, {"status": "loading"})
    settings: Settings = request.app.state.settings
    key = settings.teacher_api_key.get_secret_value() if settings.teacher_api_key else None
    teacher = await teacher_health(settings.teacher_url, key)
    if teacher is not None:
        body.setdefault("dependencies", {})["teacher"] = teacher.to_dict()
    if not ready:
        response.status_code = 503
    return body


def metrics_access(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """/metrics on the HTTP port: 404 when the metrics have their own port, else the API key when keys are set
    (unless ``metrics_require_key`` is off)."""
    if settings.metrics_port is not None:
        raise HTTPException(404, f"metrics are served on port {settings.metrics_port}")
    if settings.metrics_require_key:
        require_api_key(request, settings)


@ops.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(metrics_access)],
         responses={k: ERRORS[k] for k in (401, 403)} | {404: {"model": Problem, "description": "The metrics are "
                                                              "served on their own port (metrics_port)."}})
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
