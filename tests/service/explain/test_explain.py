from __future__ import annotations

import asyncio
import time

import pytest

from relevance_core.cot import parse
from relevance_core.teacher.openai_client import TeacherResult
from service.explain import Teachers, TeacherUnavailable
from service.explain.teacher import teacher_result
from tests.mkd.teacher.servers import refused_port, shared_llama_server

QUERY, TITLE = "toro snow blowers gas", "Ariens Deluxe 28 in. Two-Stage Electric Start Gas Snow Blower"


def judge(teachers: Teachers, query: str = QUERY, title: str = TITLE) -> TeacherResult:
    async def run() -> TeacherResult:
        try:
            return await teachers.judge(query, title)
        finally:
            await teachers.aclose()

    return asyncio.run(run())


def test_no_teacher_configured_is_unavailable_with_a_clear_message() -> None:
    teachers = Teachers(None, "ellm-rele")
    assert not teachers.configured
    with pytest.raises(TeacherUnavailable, match=r"no teacher configured.*RELEVANCE_TEACHER_URL") as raised:
        judge(teachers)
    assert raised.value.retry_after_s is None


def test_an_unreachable_teacher_is_unavailable_with_a_retry_after_hint() -> None:
    with refused_port() as base_url:
        started = time.monotonic()
        with pytest.raises(TeacherUnavailable, match="cannot reach") as raised:
            judge(Teachers(base_url, "ellm-rele", timeout_s=5.0, retries=1))
    assert time.monotonic() - started < 3.0
    assert raised.value.retry_after_s is not None and raised.value.retry_after_s > 0


def test_aspects_pair_each_requirement_with_the_item_value_of_its_aspect() -> None:
    cot = (
        "Thinking: query has brand requirement: toro, product requirement: snow blowers, color requirement: red; "
        "ad in product: Snow Blower, matches; ad in brand: Ariens, mismatches; ad in other properties: Gas, matches."
        " Final judgment: Bad-brand mismatch"
    )
    teacher = TeacherResult(
        query="toro red snow blowers",
        title=TITLE,
        cot=cot,
        parsed=parse(cot, "toro red snow blowers", TITLE),
        judgement="Bad",
        p_good=0.1,
        p_bad=0.8,
        score=0.33,
        normalisation="softmax",
        model="ellm-rele",
        latency_ms=12.0,
        attempts=1,
    )
    result = teacher_result(teacher)
    assert (result.mode, result.writer, result.verdict) == ("teacher", "teacher", "Bad")
    assert [(a.aspect, a.query_value, a.item_value, a.matches) for a in result.aspects] == [
        ("brand", "toro", "Ariens", False),
        ("product", "snow blowers", "Snow Blower", True),
        ("color", "red", None, None),
        ("other properties", None, "Gas", True),
    ]
    assert result.aspects[0].query_span == (0, 4) and result.aspects[0].item_span == (0, 6)
    assert (result.judgement, result.reason, result.parse_ok) == ("Bad", "brand mismatch", True)


@pytest.fixture(scope="module")
def teacher_url(request: pytest.FixtureRequest) -> str:
    pytest.importorskip("llama_cpp")
    return shared_llama_server(request.config)


def test_explain_against_a_real_openai_compatible_server(teacher_url: str) -> None:
    """SmolLM2-135M behind llama-cpp-python's server is no fine-tuned teacher: whether it reaches a judgement is up
    to it, but the result must say plainly which happened."""
    result = teacher_result(judge(Teachers(teacher_url, "smollm2-135m", timeout_s=60.0, max_tokens=64)))
    assert result.cot.strip() and result.model == "smollm2-135m" and result.latency_ms > 0
    assert (result.score is None) == (result.score_reason is not None)
    if result.score is None:
        assert result.p_good is None or result.p_good + (result.p_bad or 0.0) < 1e-3
    else:
        assert 0.0 < result.score < 1.0 and result.p_good is not None and result.p_bad is not None
    if not result.parse_ok:
        assert result.parse_errors
