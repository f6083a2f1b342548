"""ELLM-rele, the teacher: its prompts (`prompt`), its score (eq. 4, `score`) and a client for it served behind an
OpenAI-compatible API (`openai_client`). Nothing here imports torch: the gateway uses it for the explain API."""

from __future__ import annotations

from relevance_core.teacher.openai_client import (
    Endpoint,
    TeacherClient,
    TeacherError,
    TeacherResponseError,
    TeacherResult,
    TeacherUnavailable,
)
from relevance_core.teacher.prompt import (
    EXAMPLES,
    SYSTEM_PROMPT,
    ChatMessage,
    annotation_messages,
    chatml_prompt,
    teacher_messages,
)
from relevance_core.teacher.score import (
    JudgementReading,
    Normalisation,
    TeacherScore,
    TokenLogprob,
    TopLogprob,
    read_judgement,
    teacher_score,
)

__all__ = [
    "EXAMPLES",
    "SYSTEM_PROMPT",
    "ChatMessage",
    "Endpoint",
    "JudgementReading",
    "Normalisation",
    "TeacherClient",
    "TeacherError",
    "TeacherResponseError",
    "TeacherResult",
    "TeacherScore",
    "TeacherUnavailable",
    "TokenLogprob",
    "TopLogprob",
    "annotation_messages",
    "chatml_prompt",
    "read_judgement",
    "teacher_messages",
    "teacher_score",
]
