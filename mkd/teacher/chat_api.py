"""The slice of the OpenAI chat-completions API that the local teacher servers (`mkd.teacher.llama_server`, the
llama.cpp engine, and `mkd.teacher.torch_server`, the torch one) serve: P_LLM in, the greedy CoT out with ``logprobs``
and ``top_logprobs``, which is what `relevance_core.teacher.openai_client.TeacherClient` reads (as it reads vLLM).

Only the teacher prompt is served: the system turn must be ELLM-rele's S (both servers hold its KV state
precomputed) and the user turn ``Query: ...\\nProduct title: ...``; anything else is a 400. The llama.cpp engine
also serves the legacy completions API for P_LLM in the ChatML template followed by an assistant prefill (what
``TeacherClient(endpoint="completions")`` sends), which scores a given chain of thought. Torch-free.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from relevance_core.teacher.assets import prefix_text
from relevance_core.teacher.prompt import SYSTEM_PROMPT
from relevance_core.teacher.score import TokenLogprob

_USER = re.compile(r"\AQuery: (?P<query>.*)\nProduct title: (?P<title>.*)\Z", re.S)
_CHATML_PAIR = re.compile(r"\A<\|im_start\|>user\nQuery: (?P<query>.*)\nProduct title: (?P<title>.*)<\|im_end\|>\n"
                          r"<\|im_start\|>assistant\n(?P<prefill>.*)\Z", re.S)


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs`` request field; of its kinds the teacher servers take a GBNF ``grammar`` (any
    other kind is a 422 naming it)."""

    model_config = ConfigDict(extra="forbid")
    grammar: str = Field(min_length=1, max_length=200_000)


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=2, max_length=2)
    max_tokens: int | None = Field(None, ge=1, le=512)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    structured_outputs: StructuredOutputs | None = None

    @property
    def grammar(self) -> str | None:
        return None if self.structured_outputs is None else self.structured_outputs.grammar


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str
    max_tokens: int | None = Field(None, ge=1, le=512)
    logprobs: int | None = Field(None, ge=0, le=20)


def teacher_pair(messages: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(query, title) of a P_LLM request; HTTP 400 naming the message otherwise."""
    system, user = messages
    if system.get("role") != "system" or system.get("content") != SYSTEM_PROMPT:
        raise HTTPException(400, "messages[0]: only the ELLM-rele system prompt (P_LLM's S) is served")
    match = _USER.match(str(user.get("content", ""))) if user.get("role") == "user" else None
    if match is None:
        raise HTTPException(400, "messages[1]: expected a user turn 'Query: ...\\nProduct title: ...'")
    return match["query"], match["title"]


def teacher_prompt(prompt: str) -> tuple[str, str, str]:
    """(query, title, assistant prefill) of P_LLM rendered in ChatML; HTTP 400 otherwise."""
    prefix = prefix_text()
    match = _CHATML_PAIR.match(prompt.removeprefix(prefix)) if prompt.startswith(prefix) else None
    if match is None:
        raise HTTPException(400, "prompt: only P_LLM in the ChatML template (ELLM-rele's system turn, then 'Query: "
                                 "...\\nProduct title: ...', then the assistant turn) is served")
    return match["query"], match["title"], match["prefill"]


def completion_body(model: str, text: str, tokens: Sequence[TokenLogprob], *, truncated: bool,
                    request: ChatRequest) -> dict[str, Any]:
    """A chat.completion object: ``tokens`` with ``request.top_logprobs`` alternatives each when logprobs were
    asked for."""
    content = None
    if request.logprobs:
        keep = request.top_logprobs or 0
        content = [{"token": t.token, "logprob": t.logprob,
                    "top_logprobs": [a.model_dump() for a in t.top_logprobs[:keep]]} for t in tokens]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": {"content": content} if content is not None else None,
                     "finish_reason": "length" if truncated else "stop"}],
        "usage": {"completion_tokens": len(tokens)},
    }


def text_completion_body(model: str, text: str, tokens: Sequence[TokenLogprob], *, truncated: bool,
                         request: CompletionRequest) -> dict[str, Any]:
    """A legacy text_completion object, logprobs in its format (tokens, token_logprobs, top_logprobs as maps)."""
    logprobs = None
    if request.logprobs is not None:
        logprobs = {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
                    "top_logprobs": [{a.token: a.logprob for a in t.top_logprobs[:request.logprobs]}
                                     for t in tokens]}
    return {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": logprobs,
                     "finish_reason": "length" if truncated else "stop"}],
        "usage": {"completion_tokens": len(tokens)},
    }


def add_model_routes(app: FastAPI, model_name: str) -> None:
    """``GET /health`` and ``GET /v1/models`` (the readiness probe of `relevance_core.teacher.process`)."""

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "relevance"}]}
