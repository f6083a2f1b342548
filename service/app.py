"""The gateway application: FastAPI app factory with its lifespan (model, store, engine, gRPC server, the version
switch), the HTTP front (body limit, admission control, request metrics: :mod:`service.middleware`) and error
handlers that cannot fail. ``relevance serve`` runs it with uvicorn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from service import request_ids
from service.api.docs_pages import add_docs_pages
from service.api.openapi import openapi_with_limits
from service.api.router import ops, unversioned, v1, v2
from service.catalogue import Catalogue
from service.explain import Explainer, Teachers
from service.handlers import ApiError, Handlers, Kind
from service.handlers.errors import error_body, field_path, http_status
from service.lifecycle import Serving, StartupError
from service.metrics import Metrics, MetricsServer
from service.middleware import GatewayMiddleware
from service.settings import Settings
from service.shadow import ShadowSampler
from service.store import ItemStore

log = logging.getLogger("service")


def create_app(settings: Settings | None = None, *, store: ItemStore | None = None,
               teacher_gate: Callable[[], None] | None = None) -> FastAPI:
    """The gateway. ``store`` overrides the configured one (tests). ``teacher_gate`` raises `TeacherUnavailable`
    while the teacher cannot answer yet (the local teacher process starting; see `service.explain.Teachers`)."""
    settings = settings or Settings()
    metrics = Metrics()
    request_ids.install_log_records()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Start everything in order; whatever started is stopped in reverse, also when a later step fails."""
        from threadpoolctl import threadpool_limits

        async with AsyncExitStack() as stack:
            # MaxSim's small matrix products run fastest on one BLAS thread; more threads contend with the encoder
            stack.callback(threadpool_limits(1, user_api="blas").restore_original_limits)
            serving = Serving(settings, metrics, store,
                              on_switch=lambda engine: setattr(app.state, "engine", engine))
            stack.push_async_callback(serving.stop)
            engine = await serving.start()
            app.state.serving = serving
            teachers = Teachers.from_settings(settings, gate=teacher_gate)
            stack.push_async_callback(teachers.aclose)
            catalogue = await asyncio.to_thread(Catalogue.from_settings, settings)
            app.state.explainer = Explainer(settings, teachers, catalogue)
            shadow = app.state.shadow = ShadowSampler.from_settings(settings, teachers, catalogue, metrics)
            if shadow is not None:
                shadow.start()
                stack.push_async_callback(shadow.stop)
            if settings.grpc_port is not None:
                from service.grpc.server import start_grpc

                grpc_server = await start_grpc(handlers, settings, metrics, ready=lambda: serving.readiness()[0],
                                               changed=serving.readiness_changed)
                stack.push_async_callback(grpc_server.stop)
                app.state.grpc_port = grpc_server.port
            if settings.metrics_port is not None:
                try:
                    metrics_server = MetricsServer(metrics.registry, settings.host, settings.metrics_port)
                except OSError as exc:
                    raise StartupError(f"metrics_port: cannot listen on {settings.host}:{settings.metrics_port}: "
                                       f"{exc.strerror or exc}") from None
                stack.callback(metrics_server.close)
                app.state.metrics_port = metrics_server.port
            metrics.ready.set_function(lambda: float(serving.readiness()[0]))
            stack.callback(metrics.ready.set_function, lambda: 0.0)
            log.info("serving %s (%s, %s) with the %s store", engine.model_version, engine.model.meta.precision,
                     settings.backend, type(engine.store).__name__)
            yield

    app = FastAPI(title="relevance", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Explainable, LLM-distilled relevance scoring for e-commerce search: ColBERT-like "
                              "student scores (MaxSim over cached item token embeddings), Cohere-compatible "
                              "rerank, and explanations of the served decision (or the ELLM-rele teacher's own "
                              "judgement).")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = None
    app.state.explainer = None
    app.state.shadow = None
    handlers = Handlers.build(settings, metrics, engine=lambda: app.state.engine,
                              explainer=lambda: app.state.explainer, shadow=lambda: app.state.shadow)
    app.state.handlers = handlers
    app.include_router(v1)
    app.include_router(v2)
    app.include_router(unversioned)
    app.include_router(ops)
    add_docs_pages(app)
    app.openapi = openapi_with_limits(app, settings)  # type: ignore[method-assign]  # FastAPI's documented hook

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        """Every handler error, mapped once for HTTP."""
        status, body, headers = http_status(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming the fields (400 for a body that is not JSON); the input is not echoed (it may not even be
        encodable: a lone surrogate, NaN)."""
        fields = field_errors(exc.errors())
        if any(f["type"] == "json_invalid" for f in fields):
            return JSONResponse(error_body(Kind.MALFORMED.value, f"the body is not valid JSON: {fields[0]['msg']}",
                                           fields), status_code=400)
        message = "; ".join(f"{field_path(f['loc'][1:]) or 'body'}: {f['msg']}" for f in fields)
        return JSONResponse(error_body(Kind.INVALID_ARGUMENT.value, message, fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Statuses no handler raised (an unknown route: 404, a method it does not take: 405), in the same body."""
        error_type = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return JSONResponse(error_body(error_type, str(exc.detail)), status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # the last line of defence
        log.exception("unhandled error on %s", request.url.path)
        # answered outside the gateway middleware (Starlette's outermost layer): echo the request id here
        return JSONResponse(error_body("internal", "internal error; the request was not processed"),
                            status_code=500, headers={request_ids.HEADER: request_ids.current() or ""})

    # the last added runs first: CORS answers preflights before anything else, gzip compresses every answer
    app.add_middleware(GatewayMiddleware, settings=settings, metrics=metrics)
    if settings.gzip_min_bytes is not None:
        app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "HEAD", "POST", "PUT"],
                           allow_headers=["authorization", "content-type", "content-encoding", "x-api-key",
                                          request_ids.HEADER],
                           expose_headers=[request_ids.HEADER, "retry-after"])
    return app


# pydantic names the member of a union that failed in ``loc`` ("function-after[_unicode(), str]", "int",
# "RerankDocument"): not a field a client sent, so left out of the paths the API reports
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "list", "dict", "none"})


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's errors as the API's ``fields``: ``loc`` only of the fields a client sent (an unknown field's
    name kept as sent), ``msg``, ``type``, all as text that encodes as UTF-8."""
    fields = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if e.get("type") != "extra_forbidden":
            loc = [p for p in loc if isinstance(p, int) or not (p in _TYPE_TAGS or p[:1].isupper() or
                                                                "[" in p or "-" in p)]
        fields.append({"loc": [p if isinstance(p, int) else _printable(p) for p in loc],
                       "msg": _printable(e.get("msg", "")), "type": _printable(e.get("type", ""))})
    return fields


def _printable(value: object) -> str:
    """``value`` as text that encodes as UTF-8 (lone surrogates become ``\\udXXX`` escapes)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")
