"""The gRPC Score service (grpc.aio) on the gateway's event loop, sharing the HTTP path's engine and limits."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from service.core.batching import Overloaded
from service.core.engine import ItemInput, ScoringEngine
from service.grpc import relevance_pb2 as pb
from service.grpc import relevance_pb2_grpc as pb_grpc
from service.metrics import Metrics
from service.settings import Settings


class RelevanceService(pb_grpc.RelevanceServicer):
    def __init__(self, engine: Callable[[], ScoringEngine | None], settings: Settings, metrics: Metrics) -> None:
        self.engine = engine  # the engine serving now (it changes when the active version switches)
        self.settings = settings
        self.metrics = metrics

    def _denied(self, context: grpc.aio.ServicerContext) -> tuple[grpc.StatusCode, str] | None:
        """API keys as for HTTP, from the ``authorization: Bearer <key>`` or ``x-api-key`` metadata."""
        if not self.settings.api_keys:
            return None
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        header = metadata.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else metadata.get("x-api-key", "")
        if not key:
            return grpc.StatusCode.UNAUTHENTICATED, "missing API key (authorization: Bearer <key> or x-api-key)"
        if not any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in self.settings.api_keys):
            return grpc.StatusCode.PERMISSION_DENIED, "unknown API key"
        return None

    def _invalid(self, request: pb.ScoreRequest) -> str | None:
        """The first limit a request breaks, naming the field (INVALID_ARGUMENT), or None."""
        s = self.settings
        if not request.query.strip():
            return "query: must not be empty or whitespace only"
        if len(request.query) > s.max_query_chars:
            return f"query: at most {s.max_query_chars} characters, got {len(request.query)}"
        if not request.items:
            return "items: at least one item is required"
        if len(request.items) > s.max_items:
            return f"items: at most {s.max_items} items per request, got {len(request.items)}"
        for i, item in enumerate(request.items):
            if not item.id:
                return f"items[{i}].id: must not be empty"
            if len(item.id) > s.max_id_chars:
                return f"items[{i}].id: at most {s.max_id_chars} characters"
            if item.HasField("title") and len(item.title) > s.max_title_chars:
                return f"items[{i}].title: at most {s.max_title_chars} characters"
        return None

    async def Score(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            denied = self._denied(context)
            if denied is not None:
                code, message = denied
                await context.abort(code, message)
            problem = self._invalid(request)
            if problem is not None:
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, problem)
            items = [ItemInput(it.id, it.title if it.HasField("title") else None) for it in request.items]
            engine = self.engine()
            if engine is None:
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "the model is not loaded")
            assert engine is not None
            try:
                outcome = await engine.score(request.query, items, evidence=request.evidence)
            except Overloaded as exc:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                await context.abort(code, str(exc))
            response = pb.ScoreResponse(model_version=engine.model_version, timings_ms=outcome.timings_ms)
            threshold = self.settings.good_threshold
            for result in outcome.items:
                scored = response.scores.add(id=result.id, source=result.source or "", error=result.error or "")
                if result.score is not None:
                    scored.score = result.score
                    scored.label = "Good" if result.score >= threshold else "Bad"
                for match in result.evidence or []:
                    scored.evidence.add(query_token=match.query_token, title_token=match.title_token,
                                        similarity=match.similarity)
            response.n_scored = sum(1 for r in outcome.items if r.score is not None)
            response.n_errors = len(outcome.items) - response.n_scored
            return response
        finally:
            self.metrics.grpc_requests.labels("Score", code.name).inc()
            self.metrics.grpc_latency.labels("Score").observe(time.perf_counter() - started)


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    port: int

    async def stop(self) -> None:
        await self.server.stop(grace=2.0)


async def start_grpc(engine: Callable[[], ScoringEngine | None], settings: Settings, metrics: Metrics,
                     ) -> GrpcServer:
    """The gRPC server on ``settings.grpc_port``; admission control as for HTTP: calls beyond the concurrent and
    queued bounds are refused with RESOURCE_EXHAUSTED."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", settings.max_body_bytes)],
                             maximum_concurrent_rpcs=settings.max_concurrent_requests + settings.max_queued_requests)
    pb_grpc.add_RelevanceServicer_to_server(RelevanceService(engine, settings, metrics), server)
    port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port or 0}")
    await server.start()
    return GrpcServer(server, port)
