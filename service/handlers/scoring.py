"""The scoring APIs, one handler each, shared by HTTP and gRPC: ``score`` (items by id or title), ``rerank``
(documents, best first; Cohere v1/v2 and Jina shapes are the HTTP transport's business) and ``upsert`` (items into
the store). Each owns its limits and the outcome → response mapping; the transports only translate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from relevance_core.cot import judgement_of
from service.backends import BackendUnavailable
from service.core.batching import Overloaded
from service.core.engine import ItemInput, Match, ScoringEngine
from service.handlers.errors import ApiError, Kind
from service.handlers.limits import check_count, check_item, check_query, check_text, invalid
from service.settings import Settings
from service.store import StoreError

if TYPE_CHECKING:
    from service.shadow import ShadowSampler

EngineRef = Callable[[], ScoringEngine | None]
"""The engine serving now (it changes when the active version switches)."""


def current_engine(engine: EngineRef) -> ScoringEngine:
    found = engine()
    if found is None:
        raise ApiError(Kind.UNAVAILABLE, "the model is not loaded yet", retry_after_s=1)
    return found


def overloaded(exc: Overloaded) -> ApiError:
    return ApiError(Kind.OVERLOADED, str(exc), retry_after_s=1)


def encoder_unavailable(exc: BackendUnavailable) -> ApiError:
    return ApiError(Kind.UNAVAILABLE, f"encoder unavailable: {exc}", retry_after_s=1)


@dataclass(frozen=True)
class Ranked:
    """A rerank's outcome: (document index, score) best first, cut to ``top_n``."""

    model_version: str
    ranked: list[tuple[int, float]]
    timings_ms: dict[str, float]


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One item of a score: ``score`` and ``label`` (Good/Bad at the threshold) when scored, else ``error``;
    ``source``: where its embeddings came from; ``evidence`` when asked for."""

    id: str
    score: float | None
    label: Literal["Good", "Bad"] | None
    source: Literal["store", "title"] | None
    error: str | None
    evidence: list[Match] | None

    def to_json(self) -> dict[str, Any]:
        """``ItemScore``'s fields, those set only."""
        entry: dict[str, Any] = {"id": self.id}
        if self.score is not None:
            entry["score"] = self.score
            entry["label"] = self.label
        if self.source is not None:
            entry["source"] = self.source
        if self.error is not None:
            entry["error"] = self.error
        if self.evidence is not None:
            entry["evidence"] = [{"query_token": m.query_token, "title_token": m.title_token,
                                  "similarity": m.similarity} for m in self.evidence]
        return entry


@dataclass(frozen=True)
class Scored:
    """A score's outcome, items in request order."""

    model_version: str
    items: list[ScoredItem]
    timings_ms: dict[str, float]

    @property
    def n_scored(self) -> int:
        return sum(1 for item in self.items if item.score is not None)

    @property
    def n_errors(self) -> int:
        return len(self.items) - self.n_scored

    def to_json(self) -> dict[str, Any]:
        """``ScoreResponse`` as plain data. Built by hand: re-validating 100 items per request through the
        response model costs more than the scoring."""
        return {"model_version": self.model_version, "scores": [item.to_json() for item in self.items],
                "n_scored": self.n_scored, "n_errors": self.n_errors, "timings_ms": self.timings_ms}


class ScoreHandler:
    """``score``: calibrated p(Good) per item in request order, Good/Bad at ``good_threshold``, per-item errors.
    ``shadow``: the shadow teacher's sampler, offered each scored request (it never waits; `service.shadow`)."""

    def __init__(self, settings: Settings, engine: EngineRef,
                 shadow: Callable[[], ShadowSampler | None] = lambda: None) -> None:
        self.settings = settings
        self.engine = engine
        self.shadow = shadow

    def validate(self, query: str, items: Sequence[ItemInput]) -> None:
        check_query(query, self.settings)
        check_count(len(items), self.settings, "items")
        for i, item in enumerate(items):
            check_item(item.id, item.title, i, self.settings)

    async def __call__(self, query: str, items: Sequence[ItemInput], *, evidence: bool = False) -> Scored:
        self.validate(query, items)
        engine = current_engine(self.engine)
        try:
            outcome = await engine.score(query, list(items), evidence=evidence)
        except Overloaded as exc:
            raise overloaded(exc) from None
        except BackendUnavailable as exc:
            raise encoder_unavailable(exc) from None
        shadow = self.shadow()
        if shadow is not None:
            shadow.offer(query, [(item.id, item.title) for item in items], [r.score for r in outcome.items])
        threshold = self.settings.good_threshold
        return Scored(engine.model_version, [
            ScoredItem(r.id, r.score, None if r.score is None else judgement_of(r.score, threshold), r.source,
                       r.error, r.evidence) for r in outcome.items], outcome.timings_ms)


class RerankHandler:
    """``rerank``: documents (product titles) scored for the query, encoded from their text, best first.

    ``model``, when given, must name the served model (``colbert``) or its served version (``colbert:1``): a
    client asking for another model gets NOT_FOUND naming ``model``, not another model's scores.
    ``max_tokens_per_doc`` truncates each document to that many of the model's tokens before scoring (as Cohere's
    v2 does; the model reads at most its title length anyway). ``unsupported`` names request fields the client
    set that the gateway cannot honour (Cohere's ``max_chunks_per_doc``, ``priority``, ``relevant_spans``): they
    are refused rather than ignored."""

    def __init__(self, settings: Settings, engine: EngineRef) -> None:
        self.settings = settings
        self.engine = engine

    async def __call__(self, query: str, documents: Sequence[str], *, top_n: int | None = None,
                       model: str | None = None, max_tokens_per_doc: int | None = None,
                       unsupported: Sequence[str] = ()) -> Ranked:
        if unsupported:
            raise invalid((unsupported[0],), f"not supported by this gateway; leave out {', '.join(unsupported)}",
                          "unsupported")
        check_query(query, self.settings)
        check_count(len(documents), self.settings, "documents")
        for i, text in enumerate(documents):
            if not text.strip():
                raise invalid(("documents", i), "must not be empty or whitespace only", "value_error")
            check_text(text, ("documents", i), self.settings.max_title_chars)
        if top_n is not None and top_n < 1:
            raise invalid(("top_n",), "must be >= 1", "greater_than_equal")
        if max_tokens_per_doc is not None and max_tokens_per_doc < 1:
            raise invalid(("max_tokens_per_doc",), "must be >= 1", "greater_than_equal")
        engine = current_engine(self.engine)
        if model is not None and model not in (self.settings.model_name, engine.model_version):
            raise ApiError(Kind.NOT_FOUND, f"this gateway serves {self.settings.model_name!r} "
                           f"({engine.model_version}), not {model!r}", field=("model",))
        if max_tokens_per_doc is not None:
            documents = [engine.model.tokenizer.truncate(text, max_tokens_per_doc) for text in documents]
        try:
            outcome = await engine.score(query, [ItemInput(f"#{i}", t) for i, t in enumerate(documents)],
                                         evidence=False, use_store=False)
        except Overloaded as exc:
            raise overloaded(exc) from None
        except BackendUnavailable as exc:
            raise encoder_unavailable(exc) from None
        ranked = sorted(((i, r.score or 0.0) for i, r in enumerate(outcome.items)), key=lambda x: -x[1])
        return Ranked(engine.model_version, ranked[:top_n] if top_n else ranked, outcome.timings_ms)


class UpsertHandler:
    """``upsert``: encode titles and insert or replace the items under this model version's keys."""

    def __init__(self, settings: Settings, engine: EngineRef) -> None:
        self.settings = settings
        self.engine = engine

    async def __call__(self, items: Sequence[ItemInput]) -> tuple[str, int]:
        """(model version, items upserted)."""
        check_count(len(items), self.settings, "items")
        for i, item in enumerate(items):
            check_item(item.id, item.title, i, self.settings)
        engine = current_engine(self.engine)
        try:
            return engine.model_version, await engine.upsert(list(items))
        except BackendUnavailable as exc:
            raise encoder_unavailable(exc) from None
        except StoreError as exc:
            raise ApiError(Kind.UNAVAILABLE, f"store unavailable: {exc}", retry_after_s=5) from None
