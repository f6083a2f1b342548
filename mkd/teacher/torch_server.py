"""``relevance teacher serve --engine torch``: the local ELLM-rele in process with transformers behind the OpenAI
chat-completions API (`mkd.teacher.chat_api`). The default engine is llama.cpp (`mkd.teacher.llama_server`), which
serves the same adapter faster; this one serves any adapter or Hugging Face base that `LocalTeacher` loads.

Only the teacher prompt P_LLM is served, greedily; ``logprobs`` are returned for every generated token, with
``top_logprobs`` alternatives at the judgement position, which is where eq. 4 reads them. Requests are judged one
batch at a time (a lock), in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, HTTPException

from mkd.teacher.chat_api import ChatRequest, add_model_routes, completion_body, teacher_pair
from mkd.teacher.torch_teacher import LocalTeacher


def create_teacher_app(teacher: LocalTeacher, model_name: str = "ellm-rele") -> FastAPI:
    app = FastAPI(title="ELLM-rele (local, torch)", version="1")
    add_model_routes(app, model_name)
    lock = asyncio.Lock()

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> dict[str, Any]:
        query, title = teacher_pair(request.messages)
        if request.grammar is not None:
            raise HTTPException(400, "structured_outputs: the torch engine does not constrain decoding; serve "
                                     "with --engine llama")
        async with lock:
            judgement = (await asyncio.to_thread(teacher.judge, [(query, title)], request.max_tokens))[0]
        return completion_body(model_name, judgement.cot, judgement.tokens, truncated=judgement.truncated,
                               request=request)

    return app
