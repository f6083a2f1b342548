"""An async client for ELLM-rele served behind an OpenAI-compatible API (vLLM, llama.cpp's or llama-cpp-python's
server, ...): it sends the teacher prompt, reads p(Good) and p(Bad) at the judgement position from the returned
token log-probabilities, scores them with eq. 4 and parses the chain of thought with the project's grammar.

Two endpoints are supported:

- ``"chat"`` (default): POST {base_url}/chat/completions with the chat messages; the server applies the model's
  chat template.
- ``"completions"``: POST {base_url}/completions with the messages rendered in the ChatML template (SmolLM2,
  Qwen2) and an optional assistant ``prefill`` that the model continues. A prefill that ends in
  "Final judgment:" makes the next generated token the judgement, which forces a score out of a model that would
  not reach the judgement by itself, or scores a given chain of thought.

``base_url`` is the API root, as in the OpenAI SDK (``http://host:8000/v1``). A call never takes longer than
``timeout_s`` in all, retries included: connection errors, timeouts, HTTP 429 and 5xx are retried at most
``retries`` times with exponential backoff (or the server's Retry-After), and then raise `TeacherUnavailable`
with a retry-after hint. Other HTTP errors and malformed answers raise `TeacherResponseError` at once.
``grounded=True`` sends, with each judgement, the pair's grammar of grounded CoTs
(`relevance_core.cot.grounding`) as vLLM's ``structured_outputs.grammar``, so that every value the teacher
writes is a span of the query or the title.
No torch here: the gateway imports this module.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel, Field, ValidationError

from relevance_core.cot import Judgement, ParseResult, judgement_of, parse
from relevance_core.cot.grounding import grounded_grammar
from relevance_core.redaction import redact, redact_url
from relevance_core.teacher.prompt import ChatMessage, chatml_prompt, teacher_messages
from relevance_core.teacher.score import (
    DEFAULT_MIN_MASS,
    Normalisation,
    TokenLogprob,
    TopLogprob,
    read_judgement,
    teacher_score,
)

Endpoint = Literal["chat", "completions"]
_PATHS: dict[Endpoint, str] = {"chat": "/chat/completions", "completions": "/completions"}


class TeacherError(Exception):
    """The teacher could not give a judgement."""


class TeacherUnavailable(TeacherError):
    """The teacher is down, overloaded, too slow or not configured; ``retry_after_s`` is a hint for when to try
    again (None when trying again will not help, e.g. no teacher is configured)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TeacherResponseError(TeacherError):
    """The teacher answered, but with a client error (4xx other than 429) or something that is not a completion."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class TeacherResult(BaseModel):
    """One judgement of the teacher for a (query, title) pair."""

    query: str
    title: str
    cot: str = Field(description="The assistant's text: the prefill, if any, and what the model generated.")
    parsed: ParseResult = Field(description="The CoT parsed with the project's grammar: aspects with match/mismatch.")
    judgement: Judgement | None = Field(description="The judgement written in the CoT; None if it has none.")
    p_good: float | None = Field(description="p(Good) at the judgement position; None if it was not found.")
    p_bad: float | None = Field(description="p(Bad) at the judgement position; None if it was not found.")
    score: float | None = Field(description="Eq. 4 of p_good, p_bad; None when they could not be read.")
    normalisation: Normalisation
    score_reason: str | None = Field(default=None, description="Why there is no score.")
    judgement_token: str | None = Field(default=None, description="The generated token at the judgement position.")
    model: str
    finish_reason: str | None = None
    latency_ms: float
    attempts: int = Field(description="HTTP requests made, retries included.")

    @property
    def verdict(self) -> Judgement | None:
        """The judgement written in the CoT, else the one its score stands for; None without either."""
        return self.judgement or (None if self.score is None else judgement_of(self.score))


class TeacherClient:
    """Judges (query, title) pairs with ELLM-rele behind an OpenAI-compatible endpoint (see the module docstring).
    Use it as an async context manager or call `aclose`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        endpoint: Endpoint = "chat",
        timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        retry_after_s: float = 5.0,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_logprobs: int = 20,
        normalisation: Normalisation = "softmax",
        min_mass: float = DEFAULT_MIN_MASS,
        grounded: bool = False,
    ) -> None:
        if grounded and endpoint != "chat":
            raise ValueError("grounded decoding needs endpoint='chat'")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_tokens < 1 or not 1 <= top_logprobs <= 20:
            raise ValueError("need timeout_s > 0, retries >= 0, backoff_s >= 0, max_tokens >= 1, top_logprobs 1-20")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.endpoint: Endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.retry_after_s = retry_after_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_logprobs = top_logprobs
        self.normalisation: Normalisation = normalisation
        self.min_mass = min_mass
        self.grounded = grounded
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def judge(
        self, query: str, title: str, *, messages: list[ChatMessage] | None = None, prefill: str = "",
        grammar: str | None = None,
    ) -> TeacherResult:
        """The teacher's judgement of (``query``, ``title``). ``messages`` default to `teacher_messages` (P_LLM);
        pass `annotation_messages` for the few-shot prompt. ``prefill`` (completions endpoint only) is an
        assistant prefix the model continues. ``grammar`` (chat endpoint only) constrains the text to a GBNF
        grammar of the caller's instead of the grounded one (e.g. `relevance_core.cot.grounding.decision_grammar`,
        which also fixes the judgement). Raises `TeacherUnavailable` or `TeacherResponseError`."""
        if prefill and self.endpoint != "completions":
            raise ValueError("a prefill needs endpoint='completions'")
        if grammar is not None and self.endpoint != "chat":
            raise ValueError("a grammar needs endpoint='chat'")
        messages = messages if messages is not None else teacher_messages(query, title)
        payload: dict[str, Any] = {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.endpoint == "chat":
            payload |= {"messages": messages, "logprobs": True, "top_logprobs": self.top_logprobs}
            if grammar is not None or self.grounded:
                payload["structured_outputs"] = {"grammar": grammar or grounded_grammar(query, title)}
        else:
            payload |= {
                "prompt": chatml_prompt(messages, prefill),
                "logprobs": self.top_logprobs,
                "stop": ["<|im_end|>"],
            }
        started = time.perf_counter()
        body, attempts = await self._post(_PATHS[self.endpoint], payload)
        latency_ms = (time.perf_counter() - started) * 1000.0
        text, tokens, finish_reason = _read_choice(body, self.endpoint)
        return self._result(query, title, prefill + text, prefill, tokens, finish_reason, body, latency_ms, attempts)

    async def sample(
        self,
        messages: list[ChatMessage],
        *,
        n: int,
        temperature: float = 0.8,
        top_p: float = 0.7,
        top_k: int = 50,
        seed: int | None = None,
    ) -> list[str]:
        """``n`` sampled completions of ``messages`` (self-consistency, paper §3.2.1). ``top_k`` is not an
        OpenAI parameter; it goes in the body top-level, as the OpenAI SDK's ``extra_body`` sends it and as vLLM
        and llama.cpp read it. Servers that ignore ``n`` are asked again until ``n`` texts have come back."""
        if n < 1:
            raise ValueError("n must be >= 1")
        texts: list[str] = []
        while len(texts) < n:
            payload: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "n": n - len(texts),
                                       "temperature": temperature, "top_p": top_p, "top_k": top_k}
            if seed is not None:
                payload["seed"] = seed + len(texts)
            if self.endpoint == "chat":
                payload["messages"] = messages
            else:
                payload |= {"prompt": chatml_prompt(messages), "stop": ["<|im_end|>"]}
            body, _ = await self._post(_PATHS[self.endpoint], payload)
            choices = body.get("choices")
            if not isinstance(choices, list) or not choices:
                raise TeacherResponseError(f"not an OpenAI {self.endpoint} completion: no choices")
            for index in range(len(choices)):
                texts.append(_read_choice({"choices": choices[index:]}, self.endpoint)[0])
        return texts[:n]

    def _result(
        self,
        query: str,
        title: str,
        cot: str,
        prefill: str,
        tokens: list[TokenLogprob] | None,
        finish_reason: str | None,
        body: dict[str, Any],
        latency_ms: float,
        attempts: int,
    ) -> TeacherResult:
        parsed = parse(cot, query, title)
        p_good = p_bad = score = token = None
        if tokens is None:
            reason: str | None = "the server returned no token logprobs"
        else:
            reading = read_judgement(tokens, prefill)
            reason, token = reading.reason, reading.token
            if reading.p_good is not None and reading.p_bad is not None:
                p_good, p_bad = reading.p_good, reading.p_bad
                scored = teacher_score(p_good, p_bad, self.normalisation, self.min_mass)
                score, reason = scored.score, scored.reason
        if reason is not None and finish_reason == "length":
            reason += f" (the output was cut at max_tokens={self.max_tokens})"
        return TeacherResult(
            query=query,
            title=title,
            cot=cot,
            parsed=parsed,
            judgement=parsed.explanation.judgement if parsed.explanation else None,
            p_good=p_good,
            p_bad=p_bad,
            score=score,
            normalisation=self.normalisation,
            score_reason=reason,
            judgement_token=token,
            model=str(body.get("model") or self.model),
            finish_reason=finish_reason,
            latency_ms=latency_ms,
            attempts=attempts,
        )

    async def _post(self, path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """POST with bounded retries inside the ``timeout_s`` budget; returns (JSON body, attempts)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        url = f"{self.base_url}{path}"
        shown = redact_url(url)  # for messages: a secret in the URL stays out of them
        failure, hint, attempt = "", None, 0
        while attempt <= self.retries:
            remaining = deadline - loop.time()
            if remaining <= 0:
                failure = f"no answer from {shown} within {self.timeout_s:g} s"
                break
            attempt += 1
            hint = None
            try:
                async with asyncio.timeout(remaining):
                    response = await self._http.post(path, json=payload, timeout=remaining)
            except (TimeoutError, httpx.TimeoutException):
                failure = f"no answer from {shown} within {self.timeout_s:g} s"
            except httpx.TransportError as error:
                failure = f"cannot reach {shown}: {redact(repr(error))}"
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    failure = f"{shown} answered HTTP {response.status_code}: {response.text[:200]}"
                    hint = _retry_after(response.headers.get("Retry-After"))
                elif response.is_error:
                    raise TeacherResponseError(
                        f"{shown} answered HTTP {response.status_code}: {response.text[:500]}", response.status_code
                    )
                else:
                    return _json(response, shown), attempt
            delay = hint if hint is not None else self.backoff_s * 2 ** (attempt - 1)
            if attempt > self.retries or loop.time() + delay >= deadline:
                break
            await asyncio.sleep(delay)
        raise TeacherUnavailable(
            f"{failure} ({attempt} attempt{'s' * (attempt != 1)})",
            retry_after_s=hint if hint is not None else self.retry_after_s,
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is in GMT even when it does not say so
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: httpx.Response, url: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise TeacherResponseError(f"{url} answered with something that is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise TeacherResponseError(f"{url} answered with JSON that is not an object")
    return body


def _read_choice(body: dict[str, Any], endpoint: Endpoint) -> tuple[str, list[TokenLogprob] | None, str | None]:
    """(generated text, token logprobs or None if the server sent none, finish reason) of the first choice."""
    try:
        choice = body["choices"][0]
        finish_reason = choice.get("finish_reason")
        logprobs = choice.get("logprobs")
        if endpoint == "chat":
            text = choice["message"]["content"] or ""
            content = logprobs.get("content") if logprobs else None
            tokens = [TokenLogprob.model_validate(t) for t in content] if content else None
        else:
            text = choice["text"]
            tokens = _completion_tokens(logprobs) if logprobs and logprobs.get("tokens") else None
    except (KeyError, IndexError, TypeError, AttributeError, ValidationError) as error:
        raise TeacherResponseError(f"not an OpenAI {endpoint} completion: {error!r}") from error
    return text, tokens, finish_reason


def _completion_tokens(logprobs: dict[str, Any]) -> list[TokenLogprob]:
    """The legacy completions format ({tokens, token_logprobs, top_logprobs: [{token: logprob}]}) as TokenLogprobs."""
    tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
    return [
        TokenLogprob(
            token=token,
            logprob=logprob,
            top_logprobs=[TopLogprob(token=t, logprob=lp) for t, lp in (top or {}).items()],
        )
        for token, logprob, top in zip(logprobs["tokens"], logprobs["token_logprobs"], tops, strict=True)
    ]
