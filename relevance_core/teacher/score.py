"""The teacher's relevance score (paper §3.3.1, eq. 4) and how p(Good), p(Bad) are read from the token
log-probabilities at the judgement position, the first word after "Final judgment:" (docs/architecture.md, "The CoT
grammar").

Eq. 4 as printed applies a softmax to the two *probabilities*: s = e^pG / (e^pG + e^pB) = sigmoid(pG - pB), which
lies in [0.27, 0.73]. ``normalisation="softmax"`` implements it as written; ``"renormalise"`` is the plain
pG / (pG + pB) in [0, 1]. Both are kept as a setting so that they can be measured against each other.

Probabilities are read from the top log-probabilities an OpenAI-compatible server returns (``top_logprobs``, at
most 20): a judgement word that is not among them counts as probability 0. When neither is (or both are ~0), the
output was not at a judgement and there is no score: ``score`` is None and ``reason`` says why, rather than a
meaningless 0.5.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from relevance_core.cot import Judgement

Normalisation = Literal["softmax", "renormalise"]

DEFAULT_MIN_MASS = 1e-3
"""Below this p(Good) + p(Bad) the judgement position holds neither word and no score is given."""


class TeacherScore(BaseModel):
    """Eq. 4 applied to p(Good), p(Bad); ``score`` is None (with a ``reason``) when there is nothing to score."""

    score: float | None = Field(ge=0.0, le=1.0, description="Relevance score s_T, the teacher's p(Good).")
    p_good: float
    p_bad: float
    normalisation: Normalisation
    reason: str | None = None


def teacher_score(
    p_good: float,
    p_bad: float,
    normalisation: Normalisation = "softmax",
    min_mass: float = DEFAULT_MIN_MASS,
) -> TeacherScore:
    """Eq. 4: the teacher's score from the probabilities of the Good and Bad judgement tokens."""
    for name, p in (("p_good", p_good), ("p_bad", p_bad)):
        if not 0.0 <= p <= 1.0 + 1e-6:
            raise ValueError(f"{name} must be a probability, got {p}")
    if p_good + p_bad < min_mass:
        reason = f"neither Good nor Bad is a likely judgement token (p_good + p_bad = {p_good + p_bad:.2g})"
        return TeacherScore(score=None, p_good=p_good, p_bad=p_bad, normalisation=normalisation, reason=reason)
    # softmax over the two probabilities = sigmoid(pG - pB)
    score = 1.0 / (1.0 + math.exp(p_bad - p_good)) if normalisation == "softmax" else p_good / (p_good + p_bad)
    return TeacherScore(score=score, p_good=p_good, p_bad=p_bad, normalisation=normalisation)


# ------------------------------------------------------------------------------------- the judgement position


class TopLogprob(BaseModel):
    """One alternative at a token position, as in OpenAI's ``top_logprobs``."""

    token: str
    logprob: float


class TokenLogprob(BaseModel):
    """A generated token, its log-probability and the top alternatives at its position."""

    token: str
    logprob: float
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class JudgementReading(BaseModel):
    """p(Good) and p(Bad) at the judgement position, or why they could not be read (``reason``)."""

    p_good: float | None = None
    p_bad: float | None = None
    token: str | None = Field(default=None, description="The generated token at the judgement position.")
    token_index: int | None = None
    reason: str | None = None


# As the grammar's parser reads it: "Final judgment", any case, "judgement" too, an optional "is" and colon (also
# full-width), then markdown emphasis or quotes before the word.
_FINAL_RE = re.compile(r"final[\s_-]*judge?ment\s*(?:is\s*)?[:\uff1a]?[\s*_\"'`]*", re.IGNORECASE)
_DECORATION = " \t\r\n*_\"'`"
_JUDGEMENTS: tuple[Judgement, ...] = ("Good", "Bad")


def read_judgement(tokens: Sequence[TokenLogprob], prefill: str = "") -> JudgementReading:
    """Find the judgement position in ``prefill`` + the generated ``tokens`` and read p(Good), p(Bad) there.

    The position is the token holding the first letter after the first "Final judgment:". Tokenizers split the
    word differently (" Good", "Good", " G" + "ood"), so every alternative whose text, after the part of the
    position that precedes the word (usually a space), starts to spell a judgement counts for it: " Good", "good",
    " G" and "Good." all count for Good. At that position the grammar allows nothing but Good or Bad, so a
    fragment such as " G" can only begin "Good". Alternatives are distinct tokens, so their probabilities add up.
    """
    text = prefill + "".join(t.token for t in tokens)
    final = _FINAL_RE.search(text)
    if final is None:
        return JudgementReading(reason="no 'Final judgment:' in the output")
    start = final.end()
    if start >= len(text) or not text[start].isalpha():
        return JudgementReading(reason=f"no judgement word after 'Final judgment:' (found {text[start:][:20]!r})")
    if start < len(prefill):
        return JudgementReading(reason="the judgement word is part of the prefill, not generated")
    index, offset = 0, len(prefill)
    while offset + len(tokens[index].token) <= start:
        offset += len(tokens[index].token)
        index += 1
    token = tokens[index]
    lead = text[offset:start].strip(_DECORATION)
    alternatives = {alt.token: alt.logprob for alt in token.top_logprobs}
    alternatives.setdefault(token.token, token.logprob)
    mass: dict[Judgement, float] = {"Good": 0.0, "Bad": 0.0}
    for alternative, logprob in alternatives.items():
        judgement = _spelled(alternative, lead)
        if judgement is not None:
            mass[judgement] += math.exp(logprob)
    return JudgementReading(
        p_good=min(mass["Good"], 1.0), p_bad=min(mass["Bad"], 1.0), token=token.token, token_index=index
    )


def _spelled(alternative: str, lead: str) -> Judgement | None:
    """The judgement that ``alternative`` starts to spell once ``lead`` (what precedes the word in the generated
    token, e.g. ":" in ":Good") is removed, or None."""
    word = alternative.strip(_DECORATION)
    if lead:
        if not word.startswith(lead):
            return None
        word = word[len(lead) :].lstrip(_DECORATION)
    word = word.lower()
    for judgement in _JUDGEMENTS:
        full = judgement.lower()
        if word and (full.startswith(word) or (word.startswith(full) and not word[len(full) :][:1].isalpha())):
            return judgement
    return None
