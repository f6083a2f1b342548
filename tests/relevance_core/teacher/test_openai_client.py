"""How the teacher client fails: against real sockets and HTTP servers on 127.0.0.1 that refuse, stay silent or
answer with errors. (Its answers from a real model are in test_llama_server.py.)"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from relevance_core.teacher.openai_client import TeacherClient, TeacherResponseError, TeacherUnavailable
from tests.mkd.teacher.servers import refused_port, replying_server, silent_server

UNAVAILABLE = (503, {}, '{"error": "loading"}')


def judge(client: TeacherClient) -> None:
    async def run() -> None:
        async with client:
            await client.judge("dewalt drill", "DEWALT 20-Volt Max Drill")

    asyncio.run(run())


def test_connection_refused_is_unavailable_quickly_after_bounded_retries() -> None:
    with refused_port() as base_url:
        started = time.monotonic()
        with pytest.raises(TeacherUnavailable, match=r"cannot reach .*\(3 attempts\)") as raised:
            judge(TeacherClient(base_url, "m", retries=2, backoff_s=0.05, retry_after_s=7.0))
    assert time.monotonic() - started < 2.0
    assert raised.value.retry_after_s == 7.0


def test_a_server_that_never_answers_is_unavailable_after_timeout_s() -> None:
    """The server accepts the connection and reads the request but never answers, as a wedged teacher does; a
    well-behaved server cannot be made to do that, hence this one. The whole call, retries included, must end
    within timeout_s."""

    async def run() -> float:
        async with silent_server() as base_url, TeacherClient(base_url, "m", timeout_s=1.0, retries=3) as client:
            started = time.monotonic()
            with pytest.raises(TeacherUnavailable, match=r"no answer from .* within 1 s \(1 attempt\)"):
                await client.judge("q", "t")
            return time.monotonic() - started

    assert 0.9 < asyncio.run(run()) < 2.0


def test_5xx_is_retried_a_bounded_number_of_times() -> None:
    with replying_server(UNAVAILABLE) as (base_url, replies):
        with pytest.raises(TeacherUnavailable, match=r"HTTP 503.*\(4 attempts\)"):
            judge(TeacherClient(base_url, "m", retries=3, backoff_s=0.01))
        assert replies.requests == 4


def test_no_retries_means_one_request() -> None:
    with replying_server(UNAVAILABLE) as (base_url, replies):
        with pytest.raises(TeacherUnavailable, match=r"\(1 attempt\)"):
            judge(TeacherClient(base_url, "m", retries=0))
        assert replies.requests == 1


def test_4xx_is_not_retried() -> None:
    error = json.dumps({"error": {"message": "model 'm' not found"}})
    with replying_server((500, {}, ""), (404, {}, error)) as (base_url, replies):
        with pytest.raises(TeacherResponseError, match=r"HTTP 404.*not found") as raised:
            judge(TeacherClient(base_url, "m", retries=5, backoff_s=0.01))
        assert raised.value.status_code == 404
        assert replies.requests == 2  # the 500 was retried, the 404 was not


def test_429_waits_for_retry_after() -> None:
    with replying_server((429, {"Retry-After": "0.3"}, "slow down")) as (base_url, replies):
        started = time.monotonic()
        with pytest.raises(TeacherUnavailable, match="HTTP 429") as raised:
            judge(TeacherClient(base_url, "m", retries=2, backoff_s=0.0))
        assert replies.requests == 3 and time.monotonic() - started >= 0.6
        assert raised.value.retry_after_s == 0.3


def test_a_retry_after_beyond_the_budget_gives_up_at_once_and_passes_it_on() -> None:
    with replying_server((503, {"Retry-After": "120"}, "")) as (base_url, replies):
        started = time.monotonic()
        with pytest.raises(TeacherUnavailable) as raised:
            judge(TeacherClient(base_url, "m", timeout_s=5.0, retries=3))
        assert replies.requests == 1 and time.monotonic() - started < 1.0
        assert raised.value.retry_after_s == 120.0


@pytest.mark.parametrize(
    ("body", "match"),
    [("<html>gateway</html>", "not JSON"), ('{"choices": []}', "not an OpenAI chat completion"), ("[1]", "object")],
)
def test_an_answer_that_is_not_a_completion_is_a_response_error(body: str, match: str) -> None:
    with replying_server((200, {"Content-Type": "application/json"}, body)) as (base_url, replies):
        with pytest.raises(TeacherResponseError, match=match):
            judge(TeacherClient(base_url, "m"))
        assert replies.requests == 1


def test_invalid_settings_and_a_chat_prefill_are_refused() -> None:
    with pytest.raises(ValueError, match="top_logprobs"):
        TeacherClient("http://127.0.0.1:1/v1", "m", top_logprobs=21)
    with pytest.raises(ValueError, match="prefill needs endpoint='completions'"):

        async def run() -> None:
            async with TeacherClient("http://127.0.0.1:1/v1", "m") as client:
                await client.judge("q", "t", prefill="Thinking:")

        asyncio.run(run())


def test_grounded_decoding_needs_the_chat_endpoint() -> None:
    with pytest.raises(ValueError, match="grounded"):
        TeacherClient("http://127.0.0.1:1/v1", "m", endpoint="completions", grounded=True)
