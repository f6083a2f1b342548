"""One handler per API (score, rerank, upsert, explain), shared by the HTTP and gRPC transports: API-key auth,
limits and the outcome → response mapping live here once; :mod:`service.api.router` and
:mod:`service.grpc.server` only translate requests and :class:`~service.handlers.errors.ApiError` (vLLM's
``serving_*`` objects behind a thin router; docs/architecture.md, "Request path")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.explain import Explainer
from service.handlers.auth import authenticate
from service.handlers.errors import ApiError, Kind
from service.handlers.explain import ExplainHandler
from service.handlers.scoring import EngineRef, Ranked, RerankHandler, ScoreHandler, UpsertHandler
from service.metrics import Metrics
from service.settings import Settings
from service.shadow import ShadowSampler

__all__ = ["ApiError", "Handlers", "Kind", "Ranked"]


@dataclass(frozen=True)
class Handlers:
    """The gateway's APIs, bound to its settings, metrics, the engine serving now and the teacher handle."""

    settings: Settings
    score: ScoreHandler
    rerank: RerankHandler
    upsert: UpsertHandler
    explain: ExplainHandler

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics, engine: EngineRef,
              explainer: Callable[[], Explainer | None],
              shadow: Callable[[], ShadowSampler | None] = lambda: None) -> Handlers:
        """``shadow``: the shadow teacher's sampler (`service.shadow`), offered every scored request."""
        return cls(settings, ScoreHandler(settings, engine, shadow), RerankHandler(settings, engine),
                   UpsertHandler(settings, engine), ExplainHandler(settings, metrics, explainer, engine))

    def authenticate(self, authorization: str | None, x_api_key: str | None) -> None:
        authenticate(self.settings, authorization, x_api_key)
