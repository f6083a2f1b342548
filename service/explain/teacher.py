"""The gateway's handle on its teachers (ELLM-rele behind OpenAI-compatible endpoints: vLLM, llama.cpp): the
default one and the others a request may name, each with its timeouts and retries, and the teacher's judgement as
an explain result (mode teacher: its own chain of thought, judgement and eq. 4 score).

The gateway maps `TeacherUnavailable` to 503 with ``Retry-After: retry_after_s`` (no header when it is None, as
when no teacher is configured) and `TeacherResponseError` to 502. Torch-free: httpx, pydantic and relevance_core's
CoT grammar and teacher client only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from relevance_core.teacher.openai_client import TeacherClient, TeacherResponseError, TeacherResult, TeacherUnavailable
from relevance_core.teacher.score import Normalisation
from service.explain.result import ExplainResult, aspects_of

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = ["TeacherResponseError", "TeacherUnavailable", "Teachers", "UnknownTeacher", "teacher_result"]


def teacher_result(result: TeacherResult) -> ExplainResult:
    """The teacher's judgement as an explain result (mode teacher; the student's view is added by the caller)."""
    explanation = result.parsed.explanation
    return ExplainResult(
        mode="teacher",
        query=result.query,
        title=result.title,
        verdict=result.judgement,
        writer="teacher",
        cot=result.cot,
        judgement=result.judgement,
        reason=explanation.reason if explanation else None,
        aspects=aspects_of(explanation),
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


class UnknownTeacher(ValueError):
    """The request names a teacher model that is not configured."""


class Teachers:
    """The gateway's handle on its teachers: the default one (``model`` at ``base_url``; None: not configured, and
    every default `judge` raises `TeacherUnavailable` saying so) and ``others`` (model name → base URL) that a
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
    def from_settings(cls, settings: Settings, gate: Callable[[], None] | None = None) -> Teachers:
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

    async def judge(self, query: str, title: str, model: str | None = None, *, grammar: str | None = None,
                    ) -> TeacherResult:
        """The judgement of teacher ``model`` (default: the default teacher), decoded under ``grammar`` when one
        is given (the decision writer's); raises `UnknownTeacher`, `TeacherUnavailable` (down, overloaded, too
        slow, not configured) or `TeacherResponseError`."""
        name = model or self.model
        client = self._clients.get(name)
        if client is None:
            if model is not None:
                raise UnknownTeacher(f"no teacher model {model!r} is configured; configured: "
                                     f"{', '.join(self.models) or 'none'}")
            raise TeacherUnavailable(
                "no teacher configured: this explanation needs ELLM-rele behind an OpenAI-compatible endpoint "
                "(set RELEVANCE_TEACHER_URL, e.g. http://127.0.0.1:8080/v1, or leave it unset with "
                "RELEVANCE_TEACHER_LOCAL=true for the shipped local teacher); mode=decision with writer=rules "
                "needs no teacher"
            )
        if self._gate is not None and name == self.model:
            self._gate()
        return await client.judge(query, title, grammar=grammar)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

