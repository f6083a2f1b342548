"""HTTP transport (FastAPI): routes translate JSON bodies to the API handlers (:mod:`service.handlers`) and back;
auth, limits and outcome mapping are the handlers'. :class:`~service.handlers.ApiError` becomes a response in one
place (``service.app``'s exception handler, through :func:`service.handlers.errors.http_status`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import files
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from service import request_ids
from service.api.protocol import (
    ExplainPageRequest,
    ExplainRequest,
    Problem,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankV2Request,
    RerankV2Response,
    RerankV2Result,
    ScoreRequest,
    ScoreResponse,
    UpsertRequest,
    UpsertResponse,
)
from service.core.engine import ItemInput
from service.explain import ExplainPage, ExplainResult
from service.handlers import Handlers, Ranked
from service.handlers.errors import error_body
from service.handlers.limits import invalid
from service.health import teacher_health
from service.metrics import exposition
from service.settings import Settings


def problem(description: str, error_type: str, message: str, *fields: tuple[list[str | int], str, str],
            ) -> dict[str, Any]:
    """An OpenAPI error response: the one error body (:class:`Problem`) with an example."""
    example = error_body(error_type, message, [{"loc": loc, "msg": msg, "type": kind} for loc, msg, kind in fields])
    return {"model": Problem, "description": description, "content": {"application/json": {"example": example}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem("The body is not JSON (or not UTF-8 text), or not the gzip stream its Content-Encoding says.",
                 "malformed",
                 "the body is not valid JSON: JSON decode error", (["body", 9], "JSON decode error", "json_invalid")),
    401: problem("Missing API key.", "unauthenticated", "missing API key"),
    403: problem("Unknown API key.", "permission_denied", "unknown API key"),
    408: problem("The request body did not arrive within the read timeout.", "read_timeout",
                 "request body not received within 10 s"),
    413: problem("Request body too large (after decompression, for a gzip body).", "too_large",
                 "request body larger than 4194304 bytes"),
    415: problem("A Content-Encoding other than gzip.", "unsupported_encoding",
                 "Content-Encoding br is not supported; send gzip or no encoding"),
    422: problem("A field is missing, of the wrong type, unknown or over a limit: fields names each one.",
                 "invalid_argument", "items[0].id: Field required",
                 (["body", "items", 0, "id"], "Field required", "missing")),
    429: problem("Overloaded: shed by admission control (too many requests in flight or queued) or the encoder "
                 "queue is full; retry after the Retry-After header.", "overloaded",
                 "overloaded (queue full); retry after 1 s"),
    503: problem("Not ready, or a dependency (model, store, teacher) is unavailable; retry after the Retry-After "
                 "header where one is sent.", "unavailable", "the model is not loaded yet"),
}
OTHER_MODEL: dict[int | str, dict[str, Any]] = {
    404: problem("model names a model this gateway does not serve.", "not_found",
                 "model: this gateway serves 'colbert' (colbert:1), not 'rerank-v3.5'",
                 (["body", "model"], "this gateway serves 'colbert' (colbert:1), not 'rerank-v3.5'", "not_found"))}


def get_handlers(request: Request) -> Handlers:
    return request.app.state.handlers


def require_api_key(request: Request, handlers: Annotated[Handlers, Depends(get_handlers)]) -> None:
    """With API keys configured: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; 401 when absent,
    403 when unknown."""
    handlers.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))


Api = Annotated[Handlers, Depends(get_handlers)]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS)
v2 = APIRouter(prefix="/v2", dependencies=[Depends(require_api_key)], responses=ERRORS)
unversioned = APIRouter(dependencies=[Depends(require_api_key)], responses=ERRORS)
"""``/rerank``: the Cohere v1 route without a version prefix, for the clients that post there."""
ops = APIRouter()


@v1.post("/score", response_model=ScoreResponse, response_model_exclude_none=True)
async def score(body: ScoreRequest, api: Api) -> Response:
    """Score items for a query: calibrated p(Good) per item, in request order. Items missing from the store are
    encoded from their ``title``; items with neither get an ``error`` instead of a score."""
    scored = await api.score(body.query, [ItemInput(str(it.id), it.title) for it in body.items],
                             evidence=body.evidence)
    payload = scored.to_json()
    for item, entry in zip(body.items, payload["scores"], strict=True):
        entry["id"] = item.id  # an id keeps its JSON type (the engine keys by its text)
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


@unversioned.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True,
                  responses=OTHER_MODEL, summary="Rerank (Cohere v1), the same as /v1/rerank")
@v1.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True, responses=OTHER_MODEL)
async def rerank(body: RerankRequest, api: Api) -> RerankResponse:
    """Cohere (v1) / Jina-compatible rerank of documents (product titles) for a query, best first."""
    texts = [_ranked_text(d, i, body.rank_fields) for i, d in enumerate(body.documents)]
    outcome = await api.rerank(body.query, texts, top_n=body.top_n, model=body.model,
                               unsupported=_set(body, "max_chunks_per_doc"))
    return RerankResponse(
        id=request_ids.current() or "", model=outcome.model_version,
        results=[RerankResult(index=i, relevance_score=s, document=_as_document(body.documents[i]) if
                              body.return_documents else None) for i, s in outcome.ranked],
        meta=_rerank_meta("1", outcome))


@v2.post("/rerank", response_model=RerankV2Response, responses=OTHER_MODEL)
async def rerank_v2(body: RerankV2Request, api: Api) -> RerankV2Response:
    """Cohere v2 rerank (what ``cohere.ClientV2().rerank`` posts): the same ranking, Cohere's v2 response."""
    outcome = await api.rerank(body.query, body.documents, top_n=body.top_n, model=body.model,
                               max_tokens_per_doc=body.max_tokens_per_doc,
                               unsupported=_set(body, "priority", "relevant_spans"))
    return RerankV2Response(id=request_ids.current() or "",
                            results=[RerankV2Result(index=i, relevance_score=s) for i, s in outcome.ranked],
                            meta=_rerank_meta("2", outcome))


def _ranked_text(document: str | RerankDocument, index: int, rank_fields: list[str] | None) -> str:
    """What a v1 document is ranked on: a string as it is; an object's ``rank_fields`` (default ``text``), one
    field as its value, several as ``field: value`` lines in rank_fields order."""
    if isinstance(document, str):
        return document
    fields = rank_fields or ["text"]
    values = document.model_dump(exclude_none=True)
    for name in fields:
        if not isinstance(values.get(name), str):
            raise invalid(("documents", index, name), f"the document has no text field {name!r} to rank on",
                          "missing")
    if len(fields) == 1:
        return str(values[fields[0]])
    return "\n".join(f"{name}: {values[name]}" for name in fields)


def _as_document(document: str | RerankDocument) -> RerankDocument:
    """A result's document as sent (a string becomes ``{text}``, as Cohere returns it)."""
    return RerankDocument(text=document) if isinstance(document, str) else document


def _set(body: RerankRequest | RerankV2Request, *fields: str) -> list[str]:
    """The ``fields`` the request set (not null)."""
    return [name for name in fields if getattr(body, name) is not None]


def _rerank_meta(version: str, outcome: Ranked) -> dict[str, object]:
    return {"api_version": {"version": version}, "billed_units": {"search_units": 1},
            "model": outcome.model_version, "timings_ms": outcome.timings_ms}


@v1.post("/explain", response_model=ExplainResult,
         responses={404: problem("item_id names no item the gateway has a title for.", "not_found",
                                 "item_id: item '42' is not in the catalogue", (["body", "item_id"],
                                 "item '42' is not in the catalogue", "not_found")),
                    502: problem("The teacher answered with an error.", "upstream_error",
                                 "the teacher answered with HTTP 500")})
async def explain(body: ExplainRequest, api: Api) -> ExplainResult:
    """Why the system decided what it did for a (query, title) pair. ``mode`` decision (the default on the
    embedded teacher): the served student's verdict and score (the same as /v1/score) with a chain of thought
    written from its own evidence, the requirements it found met or unmet and, with ``counterfactual``, the edit
    the explanation implies and the score after it. ``mode`` teacher: the ELLM-rele teacher's own chain of thought
    and eq. 4 score beside the student's, and whether they disagree (503 with Retry-After when no teacher is
    configured or it is down; scoring is unaffected)."""
    return await api.explain(body.query, body.title, item_id=None if body.item_id is None else str(body.item_id),
                             mode=body.mode, writer=body.writer, counterfactual=body.counterfactual,
                             model=body.model)


@v1.post("/explain/page", response_model=ExplainPage)
async def explain_page(body: ExplainPageRequest, api: Api) -> ExplainPage:
    """Decision explanations of a result page (up to ``explain_page_max_items`` items of one query), scored in
    one batch, in request order; an item that cannot be explained carries an ``error``."""
    return await api.explain.page(body.query, [ItemInput(str(it.id), it.title) for it in body.items],
                                  mode=body.mode, writer=body.writer, counterfactual=body.counterfactual)


@v1.put("/items", response_model=UpsertResponse)
async def upsert_items(body: UpsertRequest, api: Api) -> UpsertResponse:
    """Encode titles and insert or replace the items in the embedding store (this model version's keys)."""
    version, n = await api.upsert([ItemInput(str(it.id), it.title) for it in body.items])
    return UpsertResponse(model_version=version, upserted=n)


def get_and_head(path: str, **route: Any) -> Callable[[Endpoint], Endpoint]:
    """Register an ops endpoint for GET (in the OpenAPI schema) and HEAD (the same status and headers without
    the body, for probes and monitors that only look at the status)."""
    def register(endpoint: Endpoint) -> Endpoint:
        ops.head(path, include_in_schema=False, **route)(endpoint)
        return ops.get(path, **route)(endpoint)

    return register


@get_and_head("/livez", response_model=dict[str, str])
@get_and_head("/healthz", response_model=dict[str, str])
async def livez() -> dict[str, str]:
    """Liveness: the process answers (200 as long as it runs, also while draining; ``/healthz`` is the same)."""
    return {"status": "ok"}


# The analyst page (service/static/explain.html): read once at import; it holds no data, so no API key (the
# /v1/explain calls it makes carry the key the analyst enters).
ANALYST_PAGE = files("service").joinpath("static", "explain.html").read_text(encoding="utf-8")


@ops.get("/explain", response_class=HTMLResponse, include_in_schema=False)
async def analyst_page() -> HTMLResponse:
    """The analyst page: type a query and a title, see the student's verdict explained (spans, CoT, requirements,
    counterfactual) and, optionally, the teacher's second opinion."""
    return HTMLResponse(ANALYST_PAGE, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@get_and_head("/readyz",
              responses={503: {"description": "Model or store not ready, or the served version has no index, or "
                                               "the gateway is draining (stopping)."}})
async def readyz(request: Request, response: Response) -> dict[str, Any]:
    """Readiness: the model is loaded, the encoder backend and the store answer and the served version is indexed
    (when a version was activated) and the gateway is not draining; ``dependencies`` gives each one's status. The
    teacher, when configured, is listed too but does not decide readiness (scoring does not need it).
    ``relevance_ready`` and the gRPC health service report the same."""
    serving = getattr(request.app.state, "serving", None)
    ready, body = serving.readiness() if serving is not None else (False, dict[str, Any](status="loading"))
    settings: Settings = request.app.state.settings
    key = settings.teacher_api_key.get_secret_value() if settings.teacher_api_key else None
    teacher = await teacher_health(settings.teacher_url, key)
    if teacher is not None:
        body.setdefault("dependencies", {})["teacher"] = teacher.to_dict()
    if not ready:
        response.status_code = 503
    return body


def metrics_access(request: Request, handlers: Api) -> None:
    """/metrics on the HTTP port: 404 when the metrics have their own port, else the API key when keys are set
    (unless ``metrics_require_key`` is off)."""
    settings = handlers.settings
    if settings.metrics_port is not None:
        raise HTTPException(404, f"metrics are served on port {settings.metrics_port}")
    if settings.metrics_require_key:
        require_api_key(request, handlers)


@get_and_head("/metrics", response_class=PlainTextResponse, dependencies=[Depends(metrics_access)],
              responses={**{k: ERRORS[k] for k in (401, 403)},
                         404: problem("The metrics are served on their own port (metrics_port).", "not_found",
                                      "metrics are served on port 8002")})
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    body, content_type = exposition(request.app.state.metrics.registry)
    return Response(body, media_type=content_type)
