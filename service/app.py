"""The gateway application: FastAPI app factory with its lifespan (model, store, engine, gRPC server), the
body-size limit, request metrics and error handlers. ``relevance serve`` runs it with uvicorn."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.router import ops, v1
from service.core.engine import ScoringEngine
from service.core.models import ColBERTModel
from service.explain import Explainer
from service.metrics import Metrics
from service.model_repository import resolve_model
from service.settings import Settings
from service.store import ItemStore, StoreError
from service.store.factory import open_store

log = logging.getLogger("service")


def load_model(settings: Settings) -> ColBERTModel:
    """The ColBERT version to serve, on the configured backend (ONNX Runtime in-process or Triton)."""
    version = resolve_model(settings.model_repository, model=settings.model_name, version=settings.model_version)
    if settings.backend == "triton":
        from service.backends.triton import TritonBackend

        backend: Any = TritonBackend(settings.triton_url, version, protocol=settings.triton_protocol,
                                     timeout_s=settings.triton_timeout_s)
    else:
        from service.backends.onnxruntime import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(version.onnx_path, threads=settings.onnx_threads)
    return ColBERTModel(version, backend)


class BodyLimitAndMetrics:
    """Pure ASGI middleware: refuses bodies over ``max_body_bytes`` with 413 (by Content-Length, or while
    streaming), and records request count and latency by route template, method and status."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.limit = settings.max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(send_wrapper)
        else:
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.limit:
                        raise _BodyTooLarge
                return message

            try:
                await self.app(scope, receive_limited, send_wrapper)
            except _BodyTooLarge:
                await self._too_large(send_wrapper)
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        labels = (path, scope.get("method", ""), str(status["code"]))
        self.metrics.requests.labels(*labels).inc()
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def create_app(settings: Settings | None = None, *, store: ItemStore | None = None) -> FastAPI:
    """The gateway. ``store`` overrides the configured one (tests)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        # MaxSim's small matrix products run fastest on one BLAS thread; more threads contend with the encoder
        limits = threadpool_limits(1, user_api="blas")
        model = load_model(settings)
        item_store = store if store is not None else open_store(settings, model.version.label, model.meta.dim)
        engine = ScoringEngine(model, item_store, settings, metrics)
        engine.start()
        metrics.model.info({"model": model.version.name, "version": str(model.version.version),
                            "precision": model.meta.precision, "backend": settings.backend,
                            "store": type(item_store).__name__})
        metrics.ready.set(1)
        app.state.engine = engine
        app.state.explainer = Explainer(
            settings.teacher_url, settings.teacher_model,
            api_key=settings.teacher_api_key.get_secret_value() if settings.teacher_api_key else None,
            timeout_s=settings.teacher_timeout_s, retries=settings.teacher_retries,
            normalisation=settings.teacher_normalisation)
        grpc_server = None
        if settings.grpc_port is not None:
            from service.grpc.server import start_grpc

            grpc_server = await start_grpc(engine, settings, metrics)
            app.state.grpc_port = grpc_server.port
        log.info("serving %s (%s, %s) with the %s store", model.version.label, model.meta.precision,
                 settings.backend, type(item_store).__name__)
        try:
            yield
        finally:
            metrics.ready.set(0)
            app.state.engine = None
            if grpc_server is not None:
                await grpc_server.stop()
            await app.state.explainer.aclose()
            await engine.stop()
            close_backend = getattr(model.backend, "close", None)
            if callable(close_backend):
                close_backend()
            if store is None:
                flush = getattr(item_store, "flush", None)
                if callable(flush):  # keep items written at run time (PUT /v1/items, write-back)
                    try:
                        flush()
                    except (StoreError, OSError):
                        log.exception("could not persist the store's run-time items")
                item_store.close()
            limits.restore_original_limits()

    app = FastAPI(title="relevance", version="0.1.0", lifespan=lifespan,
                  description="Explainable, LLM-distilled relevance scoring for e-commerce search: ColBERT-like "
                              "student scores (MaxSim over cached item token embeddings), Cohere-compatible "
                              "rerank, and ELLM-rele explanations.")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = None
    app.include_router(v1)
    app.include_router(ops)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # the last line of defence
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error; the request was not processed"}, status_code=500)

    app.add_middleware(BodyLimitAndMetrics, settings=settings, metrics=metrics)
    return app
