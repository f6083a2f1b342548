"""gRPC transport (grpc.aio) on the gateway's event loop: each RPC translates its message to the API handler
(:mod:`service.handlers`, shared with HTTP) and back, and :class:`~service.handlers.ApiError` to a status in one
place (:func:`service.handlers.errors.grpc_status`). Beside ``relevance.v1.Relevance`` the server runs the standard
health service (``grpc.health.v1.Health``, for Kubernetes' gRPC probes: SERVING while the gateway is ready) and
server reflection (grpcurl and friends discover the services)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service import request_ids
from service.core.engine import ItemInput
from service.explain import ExplainResult
from service.grpc import relevance_pb2 as pb
from service.grpc import relevance_pb2_grpc as pb_grpc
from service.handlers import ApiError, Handlers, Kind
from service.handlers.errors import grpc_status
from service.lifecycle import StartupError
from service.metrics import Metrics
from service.settings import Settings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Relevance"].full_name  # relevance.v1.Relevance
HEALTH_POLL_S = 2.0
T = TypeVar("T")


class RelevanceService(pb_grpc.RelevanceServicer):
    def __init__(self, handlers: Handlers, metrics: Metrics) -> None:
        self.handlers = handlers
        self.metrics = metrics

    async def _call(self, method: str, request: Message, context: grpc.aio.ServicerContext,
                    work: Callable[[], Awaitable[T]]) -> T:
        """Authenticate from the metadata, refuse a request over ``max_body_bytes``, run ``work``, map an ApiError
        to its status; count and time the call. The request id (``x-request-id`` metadata, else a new one) goes
        back as initial and trailing metadata."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            echo = ((request_ids.HEADER, request_ids.begin(metadata.get(request_ids.HEADER))),)
            await context.send_initial_metadata(echo)
            context.set_trailing_metadata(echo)
            try:
                self.handlers.authenticate(metadata.get("authorization"), metadata.get("x-api-key"))
                limit = self.handlers.settings.max_body_bytes
                if request.ByteSize() > limit:
                    raise ApiError(Kind.TOO_LARGE, f"request message larger than {limit} bytes")
                return await work()
            except ApiError as exc:
                code, details = grpc_status(exc)
                await context.abort(code, details)
                raise  # abort raises; this line is for the type checker
        finally:
            self.metrics.grpc_requests.labels(method, code.name).inc()
            self.metrics.grpc_latency.labels(method).observe(time.perf_counter() - started)

    async def Score(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        async def work() -> pb.ScoreResponse:
            items = [ItemInput(it.id, it.title if it.HasField("title") else None) for it in request.items]
            scored = await self.handlers.score(request.query, items, evidence=request.evidence)
            return pb.ScoreResponse(
                model_version=scored.model_version, n_scored=scored.n_scored, n_errors=scored.n_errors,
                timings_ms=scored.timings_ms,
                scores=[pb.ItemScore(id=s.id, score=s.score, label=s.label or "", source=s.source or "",
                                     error=s.error or "",
                                     evidence=[pb.Evidence(query_token=m.query_token, title_token=m.title_token,
                                                           similarity=m.similarity) for m in s.evidence or ()])
                        for s in scored.items])

        return await self._call("Score", request, context, work)

    async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        async def work() -> pb.RerankResponse:
            outcome = await self.handlers.rerank(
                request.query, list(request.documents), top_n=request.top_n if request.HasField("top_n") else None,
                model=_optional(request, "model"),
                max_tokens_per_doc=request.max_tokens_per_doc if request.HasField("max_tokens_per_doc") else None)
            return pb.RerankResponse(model_version=outcome.model_version, timings_ms=outcome.timings_ms,
                                     results=[pb.RerankResult(index=i, relevance_score=s) for i, s in outcome.ranked])

        return await self._call("Rerank", request, context, work)

    async def Explain(self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext) -> pb.ExplainResponse:
        async def work() -> pb.ExplainResponse:
            return explain_message(await self.handlers.explain(
                request.query, _optional(request, "title"), item_id=_optional(request, "item_id"),
                mode=_optional(request, "mode"), writer=_optional(request, "writer"),
                counterfactual=request.counterfactual, model=_optional(request, "model")))

        return await self._call("Explain", request, context, work)

    async def ExplainPage(self, request: pb.ExplainPageRequest, context: grpc.aio.ServicerContext,
                          ) -> pb.ExplainPageResponse:
        async def work() -> pb.ExplainPageResponse:
            items = [ItemInput(it.id, it.title if it.HasField("title") else None) for it in request.items]
            page = await self.handlers.explain.page(request.query, items, mode=_optional(request, "mode"),
                                                    writer=_optional(request, "writer"),
                                                    counterfactual=request.counterfactual)
            return pb.ExplainPageResponse(
                query=page.query, model_version=page.model_version, n_explained=page.n_explained,
                n_errors=page.n_errors, latency_ms=page.latency_ms,
                items=[pb.ExplainPageItem(id=e.id, result=None if e.result is None else explain_message(e.result),
                                          error=e.error) for e in page.items])

        return await self._call("ExplainPage", request, context, work)


def _optional(message: Message, field: str) -> str | None:
    """An optional string field of a request message: its value, or None when unset."""
    return getattr(message, field) if message.HasField(field) else None


def _span(span: tuple[int, int] | None) -> pb.Span | None:
    return None if span is None else pb.Span(start=span[0], end=span[1])


def explain_message(result: ExplainResult) -> pb.ExplainResponse:
    """The explain result as its message; ``result_json`` carries all of it, typed fields the stable core."""
    return pb.ExplainResponse(
        query=result.query, title=result.title, cot=result.cot, judgement=result.judgement, reason=result.reason,
        aspects=[pb.AspectEvidence(aspect=a.aspect, query_value=a.query_value, query_span=_span(a.query_span),
                                   item_value=a.item_value, item_span=_span(a.item_span),
                                   **({} if a.matches is None else {"matches": a.matches}))
                 for a in result.aspects],
        note=result.note, score=result.score, p_good=result.p_good, p_bad=result.p_bad,
        normalisation=result.normalisation or "", score_reason=result.score_reason, parse_ok=result.parse_ok,
        parse_errors=result.parse_errors, parse_warnings=result.parse_warnings, model=result.model,
        latency_ms=result.latency_ms, result_json=result.model_dump_json(), mode=result.mode, verdict=result.verdict,
        writer=result.writer, item_id=result.item_id)


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    port: int
    health_task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.health_task is not None:
            self.health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.health_task
        await self.server.stop(grace=2.0)


async def _follow_readiness(servicer: health.aio.HealthServicer, ready: Callable[[], bool],
                            changed: asyncio.Event) -> None:
    """Publish SERVING / NOT_SERVING for the whole server ("") and the Relevance service as readiness changes:
    every ``HEALTH_POLL_S``, and at once when ``changed`` is set (the drain)."""
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        status = serving if await asyncio.to_thread(ready) else not_serving
        for name in ("", SERVICE_NAME):
            await servicer.set(name, status)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), HEALTH_POLL_S)
        changed.clear()


def _check_free(host: str, port: int) -> None:
    """StartupError naming ``grpc_port`` when another process listens on ``host:port`` (a plain bind, so that the
    failure is one line of ours, not grpc's C-core log)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        raise StartupError(f"grpc_port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def start_grpc(handlers: Handlers, settings: Settings, metrics: Metrics,
                     ready: Callable[[], bool] | None = None, changed: asyncio.Event | None = None) -> GrpcServer:
    """The gRPC server on ``settings.grpc_port``; admission control as for HTTP: calls beyond the concurrent and
    queued bounds are refused with RESOURCE_EXHAUSTED. ``ready`` (the gateway's readiness) drives the health
    service, re-read at once when ``changed`` is set; without it the server reports SERVING."""
    address = f"{settings.host}:{settings.grpc_port or 0}"
    if settings.grpc_port:
        _check_free(settings.host, settings.grpc_port)
    # grpc sets SO_REUSEPORT by default: a second gateway would share the port and take half its calls
    # grpc refuses messages over its receive limit before any handler runs (uncounted): the limit is left at twice
    # max_body_bytes, and _call refuses, and counts, what lies between
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2 * settings.max_body_bytes),
                                      ("grpc.so_reuseport", 0)],
                             maximum_concurrent_rpcs=settings.max_concurrent_requests + settings.max_queued_requests)
    pb_grpc.add_RelevanceServicer_to_server(RelevanceService(handlers, metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # taken between the check and here
        raise StartupError(f"grpc_port: cannot listen on {address}: {exc}") from None
    await server.start()
    task = None
    if ready is None:
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    else:
        follow = _follow_readiness(health_servicer, ready, changed or asyncio.Event())
        task = asyncio.get_running_loop().create_task(follow, name="grpc-health")
    return GrpcServer(server, port, task)
