"""ELLM-rele, the teacher: its prompts (`prompt`) and its score (eq. 4, `score`). Nothing here imports torch."""

from __future__ import annotations

from mkd.teacher.prompt import (
    EXAMPLES,
    SYSTEM_PROMPT,
    ChatMessage,
    annotation_messages,
    chatml_prompt,
    teacher_messages,
)
from mkd.teacher.score import (
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
    "JudgementReading",
    "Normalisation",
    "TeacherScore",
    "TokenLogprob",
    "TopLogprob",
    "annotation_messages",
    "chatml_prompt",
    "read_judgement",
    "teacher_messages",
    "teacher_score",
]
