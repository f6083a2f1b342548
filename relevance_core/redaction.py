"""Secrets never leave in a message: one redaction of URLs for logs, errors, health details and metrics. A URL
keeps its scheme, host, port and path; a password in its userinfo and the value of any query parameter whose
name says it is a secret (password, token, key, secret, auth…) become ``***``."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_NAME = re.compile(r"pass|pwd|token|secret|key|auth|credential|signature|sig\b", re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
_TRAILING = ").,;:"
"""Punctuation that ends a sentence or a parenthesis around a URL rather than belonging to it."""


def redact_url(url: str) -> str:
    """``url`` with its secrets masked; text that is not a URL is returned unchanged."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.password is not None or (parts.username is not None and "@" in netloc):
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        user = parts.username or ""
        netloc = (f"{user}:{MASK}@" if parts.password is not None else f"{user}@") + host \
            + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_NAME.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact(text: str) -> str:
    """Every URL inside ``text`` redacted (`redact_url`), the rest unchanged: for messages that quote a URL."""

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        core = url.rstrip(_TRAILING)
        return redact_url(core) + url[len(core):]

    return _URL.sub(one, text)
