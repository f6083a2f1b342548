"""The explain API's logic: asks ELLM-rele, served behind an OpenAI-compatible endpoint (vLLM, llama.cpp), for its
chain of thought on a (query, title) pair and returns it parsed, aspect by aspect, with the judgement and the
teacher's score (eq. 4).

The gateway maps `TeacherUnavailable` to 503 with ``Retry-After: retry_after_s`` (no header when it is None, as
when no teacher is configured) and `TeacherResponseError` to 502. Torch-free: only httpx, pydantic and
relevance_core's CoT grammar and teacher client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from relevance_core.cot import Judgement
from relevance_core.teacher.openai_client import TeacherClient, TeacherResponseError, TeacherResult, TeacherUnavailable
from relevance_core.teacher.score import Normalisation

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = ["AspectEvidence", "ExplainResult", "Explainer", "TeacherResponseError", "TeacherUnavailable"]


class AspectEvidence(BaseModel):
    """One aspect of the CoT: what the query asks for and what the item has, with character spans."""

    aspect: str
    query_value: str | None = Field(description="The query's requirement; None if the CoT states none.")
    query_span: tuple[int, int] | None = Field(description="[start, end) of query_value in the query.")
    item_value: str | None = Field(description="The item's value; None if the CoT does not check the item.")
    item_span: tuple[int, int] | None = Field(description="[start, end) of item_value in the title.")
    matches: bool | None = Field(description="Whether the item's value matches; None if not checked.")


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
    model: str
    latency_ms: float

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


class Explainer:
    """The gateway's handle on the teacher. With ``base_url`` None no teacher is configured and every `explain`
    raises `TeacherUnavailable` saying so. ``timeout_s`` bounds a whole call, ``retries`` included. ``gate``, when
    given, is called before each call and raises `TeacherUnavailable` while the teacher cannot answer (the local
    teacher process while it starts: `relevance_core.teacher.process.TeacherProcess.check`)."""

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
        gate: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self._gate = gate
        self._client = (
            TeacherClient(
                base_url,
                model,
                api_key=api_key,
                timeout_s=timeout_s,
                retries=retries,
                max_tokens=max_tokens,
                normalisation=normalisation,
            )
            if base_url
            else None
        )

    @classmethod
    def from_settings(cls, settings: Settings, gate: Callable[[], None] | None = None) -> Explainer:
        """The teacher the settings configure (``teacher_*``)."""
        return cls(settings.teacher_url, settings.teacher_model,
                   api_key=settings.teacher_api_key.get_secret_value() if settings.teacher_api_key else None,
                   timeout_s=settings.teacher_timeout_s, retries=settings.teacher_retries,
                   normalisation=settings.teacher_normalisation, gate=gate)

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def explain(self, query: str, title: str) -> ExplainResult:
        """The teacher's explanation; raises `TeacherUnavailable` (down, overloaded, too slow, not configured) or
        `TeacherResponseError` (it answered with an error or something that is not a completion)."""
        if self._client is None:
            raise TeacherUnavailable(
                "no teacher configured: explanations need ELLM-rele behind an OpenAI-compatible endpoint "
                "(give the Explainer its base URL, e.g. http://127.0.0.1:8080/v1)"
            )
        if self._gate is not None:
            self._gate()
        return ExplainResult.from_teacher(await self._client.judge(query, title))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
