"""``relevance teacher serve``: the local ELLM-rele behind the OpenAI chat-completions API, the way vLLM serves the
production teacher, so the gateway's ``/v1/explain`` talks to both with the same client.

It runs in its own process (torch lives here, never in the gateway): ``relevance serve`` starts it when no
``RELEVANCE_TEACHER_URL`` is set and ``RELEVANCE_TEACHER_LOCAL`` is on (the default), if torch and peft are
installed. Only the teacher prompt P_LLM (`mkd.teacher.teacher_messages`: S, then "Query: ...\\nProduct title:
...") is served, greedily; ``logprobs`` are returned for every generated token, with ``top_logprobs``
alternatives at the judgement position, which is where eq. 4 reads them. Requests are judged one batch at a time
(a lock), in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from mkd.teacher.local import LocalTeacher
from mkd.teacher.prompt import SYSTEM_PROMPT

_USER = re.compile(r"\AQuery: (?P<query>.*)\nProduct title: (?P<title>.*)\Z", re.S)


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=2, max_length=2)
    max_tokens: int | None = Field(None, ge=1, le=512)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


def _pair(messages: list[dict[str, Any]]) -> tuple[str, str]:
    system, user = messages
    if system.get("role") != "system" or system.get("content") != SYSTEM_PROMPT:
        raise HTTPException(400, "messages[0]: only the ELLM-rele system prompt (P_LLM's S) is served")
    match = _USER.match(str(user.get("content", ""))) if user.get("role") == "user" else None
    if match is None:
        raise HTTPException(400, "messages[1]: expected a user turn 'Query: ...\\nProduct title: ...'")
    return match["query"], match["title"]


def create_teacher_app(teacher: LocalTeacher, model_name: str = "ellm-rele") -> FastAPI:
    app = FastAPI(title="ELLM-rele (local)", version="1")
    lock = asyncio.Lock()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "relevance"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> dict[str, Any]:
        query, title = _pair(request.messages)  # type: ignore[arg-type]
        async with lock:
            judgement = (await asyncio.to_thread(teacher.judge, [(query, title)], request.max_tokens))[0]
        content = None
        if request.logprobs:
            keep = request.top_logprobs or 0
            content = [{"token": t.token, "logprob": t.logprob,
                        "top_logprobs": [a.model_dump() for a in t.top_logprobs[:keep]]} for t in judgement.tokens]
        finish = "length" if judgement.truncated else "stop"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": judgement.cot},
                         "logprobs": {"content": content} if content is not None else None,
                         "finish_reason": finish}],
            "usage": {"completion_tokens": len(judgement.tokens)},
        }

    return app

