"""The explain API's logic: asks ELLM-rele, served behind an OpenAI-compatible endpoint (vLLM, llama.cpp), for its
chain of thought on a (query, title) pair and returns it parsed, aspect by aspect, with the judgement and the
teacher's score (eq. 4).

The gateway maps `TeacherUnavailable` to 503 with ``Retry-After: retry_after_s`` (no header when it is None, as
when no teacher is configured) and `TeacherResponseError` to 502. Torch-free: only httpx, pydantic and
relevance_core's CoT grammar and teacher client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from relevance_core.cot import Judgement, judgement_of
from relevance_core.teacher.openai_client import TeacherClient, TeacherResponseError, TeacherResult, TeacherUnavailable
from relevance_core.teacher.score import Normalisation
from service.core.batching import Overloaded
from service.core.engine import ItemInput

if TYPE_CHECKING:
    from service.core.engine import ScoringEngine
    from service.settings import Settings

__all__ = ["AspectEvidence", "ExplainResult", "Explainer", "StudentView", "TeacherResponseError", "TeacherUnavailable",
           "UnknownTeacher"]


class AspectEvidence(BaseModel):
    """One aspect of the CoT: what the query asks for and what the item has, with character spans."""

    aspect: str
    query_value: str | None = Field(description="The query's requirement; None if the CoT states none.")
    query_span: tuple[int, int] | None = Field(description="[start, end) of query_value in the query.")
    item_value: str | None = Field(description="The item's value; None if the CoT does not check the item.")
    item_span: tuple[int, int] | None = Field(description="[start, end) of item_value in the title.")
    matches: bool | None = Field(description="Whether the item's value matches; None if not checked.")


class TokenEvidence(BaseModel):
    query_token: str
    title_token: str
    similarity: float = Field(description="Cosine of the two token embeddings (the MaxSim term).")


class StudentView(BaseModel):
    """The served student's view of the pair: its score and its token evidence (MaxSim alignment)."""

    model_version: str
    score: float = Field(description="Calibrated probability that the item is relevant (Good).")
    label: Literal["Good", "Bad"] = Field(description="Good when score >= the gateway's good_threshold.")
    evidence: list[TokenEvidence] = Field(description="Per query token, the title token it matched best.")


class ExplainResult(BaseModel):
    """The teacher's explanation of a (query, title) pair."""

    query: str
    title: str
    cot: str = Field(description="The teacher's chain of thought as it wrote it.")
    judgement: Judgement | None = Field(description="Good or Bad as written in the CoT; None if it has none.")
    reason: str | None = Field(description='The reason of a Bad judgement, e.g. "brand mismatch".')
    aspects: list[AspectEvidence]
    note: str | None = Field(description="Free text of the CoT before the judgement.")
    score: float | None = Field(description="The teacher's relevance score (eq. 4); None if it could not be read.")
    p_good: float | None
    p_bad: float | None
    normalisation: Normalisation
    score_reason: str | None = Field(description="Why there is no score.")
    parse_ok: bool = Field(description="Whether the CoT followed the grammar.")
    parse_errors: list[str]
    parse_warnings: list[str]
    model: str = Field(description="The teacher model that explained.")
    latency_ms: float
    student: StudentView | None = Field(None, description="The served student's score and evidence for the pair; "
                                                          "None when it could not score it (see student_error).")
    student_error: str | None = None
    disagreement: bool | None = Field(None, description="Teacher and student disagree: the teacher's judgement "
                                                        "(or its score at 0.5 when it wrote none) differs from the "
                                                        "student's label. None when either is missing.")

    @classmethod
    def from_teacher(cls, result: TeacherResult) -> ExplainResult:
        explanation = result.parsed.explanation
        return cls(
            query=result.query,
            title=result.title,
            cot=result.cot,
            judgement=result.judgement,
            reason=explanation.reason if explanation else None,
            aspects=_aspects(result),
            note=explanation.note if explanation else None,
            score=result.score,
            p_good=result.p_good,
            p_bad=result.p_bad,
            normalisation=result.normalisation,
            score_reason=result.score_reason,
            parse_ok=result.parsed.ok,
            parse_errors=result.parsed.errors,
            parse_warnings=result.parsed.warnings,
            model=result.model,
            latency_ms=result.latency_ms,
        )


def _aspects(result: TeacherResult) -> list[AspectEvidence]:
    """Pair each query requirement with the first unpaired item value of the same aspect, in the query's order;
    item values for aspects the query does not mention follow."""
    explanation = result.parsed.explanation
    if explanation is None:
        return []
    items = list(explanation.item_values)
    aspects = []
    for requirement in explanation.query_requirements:
        item = next((v for v in items if v.aspect == requirement.aspect), None)
        if item is not None:
            items.remove(item)
        aspects.append(
            AspectEvidence(
                aspect=requirement.aspect,
                query_value=requirement.value,
                query_span=requirement.span,
                item_value=item.value if item else None,
                item_span=item.span if item else None,
                matches=item.matches if item else None,
            )
        )
    aspects.extend(
        AspectEvidence(
            aspect=v.aspect, query_value=None, query_span=None, item_value=v.value, item_span=v.span, matches=v.matches
        )
        for v in items
    )
    return aspects


class UnknownTeacher(ValueError):
    """The request names a teacher model that is not configured."""


class Explainer:
    """The gateway's handle on its teachers: the default one (``model`` at ``base_url``; None: not configured, and
    every default `explain` raises `TeacherUnavailable` saying so) and ``others`` (model name → base URL) that a
    request picks by name. ``timeout_s`` bounds a whole call, ``retries`` included. ``gate``, when given, is
    called before each call to the default teacher and raises `TeacherUnavailable` while it cannot answer (the
    local teacher process while it starts: `relevance_core.teacher.process.TeacherProcess.check`)."""

    def __init__(
        self,
        base_url: str | None,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 2,
        *,
        max_tokens: int = 256,
        normalisation: Normalisation = "softmax",
        grounded: bool = False,
        gate: Callable[[], None] | None = None,
        others: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self._gate = gate

        def client(url: str, name: str) -> TeacherClient:
            return TeacherClient(url, name, api_key=api_key, timeout_s=timeout_s, retries=retries,
                                 max_tokens=max_tokens, normalisation=normalisation, grounded=grounded)

        self._clients = {name: client(url, name) for name, url in (others or {}).items()}
        if base_url:
            self._clients[model] = client(base_url, model)

    @classmethod
    def from_settings(cls, settings: Settings, gate: Callable[[], None] | None = None) -> Explainer:
        """The teachers the settings configure (``teacher_*``)."""
        return cls(settings.teacher_url, settings.teacher_model,
                   api_key=settings.teacher_api_key.get_secret_value() if settings.teacher_api_key else None,
                   timeout_s=settings.teacher_timeout_s, retries=settings.teacher_retries,
                   normalisation=settings.teacher_normalisation, grounded=settings.teacher_grounded, gate=gate,
                   others=settings.teacher_models)

    @property
    def configured(self) -> bool:
        return self.model in self._clients

    @property
    def models(self) -> list[str]:
        """The teacher models a request may name."""
        return sorted(self._clients)

    async def judge(self, query: str, title: str, model: str | None = None) -> TeacherResult:
        """The judgement of teacher ``model`` (default: the default teacher); raises `UnknownTeacher`,
        `TeacherUnavailable` (down, overloaded, too slow, not configured) or `TeacherResponseError`."""
        name = model or self.model
        client = self._clients.get(name)
        if client is None:
            if model is not None:
                raise UnknownTeacher(f"no teacher model {model!r} is configured; configured: "
                                     f"{', '.join(self.models) or 'none'}")
            raise TeacherUnavailable(
                "no teacher configured: explanations need ELLM-rele behind an OpenAI-compatible endpoint "
                "(give the Explainer its base URL, e.g. http://127.0.0.1:8080/v1)"
            )
        if self._gate is not None and name == self.model:
            self._gate()
        return await client.judge(query, title)

    async def explain(self, query: str, title: str, *, model: str | None = None,
                      student: ScoringEngine | None = None, good_threshold: float = 0.5) -> ExplainResult:
        """The teacher's explanation, with the served ``student``'s score and token evidence for the same pair
        (computed meanwhile, from the title) and whether the two disagree. Raises as `judge` does; a student that
        cannot score leaves ``student`` None and says why in ``student_error``."""
        scoring = asyncio.ensure_future(_student_view(student, query, title, good_threshold)) if student else None
        try:
            teacher = await self.judge(query, title, model)
        except BaseException:
            if scoring is not None:
                scoring.cancel()
            raise
        result = ExplainResult.from_teacher(teacher)
        if scoring is not None:
            view, error = await scoring
            result.student, result.student_error = view, error
            said = teacher.verdict
            result.disagreement = None if view is None or said is None else said != view.label
        return result

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


async def _student_view(engine: ScoringEngine, query: str, title: str, good_threshold: float,
                        ) -> tuple[StudentView | None, str | None]:
    """(the student's view of the pair, None) or (None, why it has none)."""
    try:
        outcome = await engine.score(query, [ItemInput("explain", title)], evidence=True, use_store=False)
    except Overloaded as error:
        return None, f"the student is overloaded: {error}"
    item = outcome.items[0]
    if item.score is None:
        return None, item.error or "the student gave no score"
    evidence = [TokenEvidence(query_token=m.query_token, title_token=m.title_token, similarity=m.similarity)
                for m in item.evidence or []]
    return StudentView(model_version=engine.model_version, score=item.score,
                       label=judgement_of(item.score, good_threshold), evidence=evidence), None
