"""One redaction of URLs for every message: the password of the userinfo and secret-named query parameters go,
everything an operator needs to find the peer stays."""

from __future__ import annotations

import pytest

from relevance_core.redaction import redact, redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("redis://user:s3cret@cache.internal:6380/2", "redis://user:***@cache.internal:6380/2"),
    ("redis://127.0.0.1:6379/0?password=s3cret", "redis://127.0.0.1:6379/0?password=***"),
    ("rediss://h:1/0?socket_timeout=2&Password=s3cret&ssl_cert_reqs=none",
     "rediss://h:1/0?socket_timeout=2&Password=***&ssl_cert_reqs=none"),
    ("http://vllm:8000/v1?api_key=s3cret&x=1", "http://vllm:8000/v1?api_key=***&x=1"),
    ("http://[::1]:8000/v1?token=s3cret", "http://[::1]:8000/v1?token=***"),
    ("http://vllm:8000/v1", "http://vllm:8000/v1"),
    ("not a url", "not a url"),
])
def test_secrets_are_masked_and_the_rest_kept(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_urls_inside_a_message_are_redacted() -> None:
    message = "cannot reach redis://u:s3cret@h:1/0 (and http://t:1/v1?auth=s3cret): refused"
    assert redact(message) == "cannot reach redis://u:***@h:1/0 (and http://t:1/v1?auth=***): refused"
