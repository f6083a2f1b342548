"""API keys, the same for every transport: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (HTTP headers
or gRPC metadata), compared in constant time."""

from __future__ import annotations

import hmac

from service.handlers.errors import ApiError, Kind
from service.settings import Settings


def authenticate(settings: Settings, authorization: str | None, x_api_key: str | None) -> None:
    """Nothing when no keys are configured or the key is known; else UNAUTHENTICATED (absent) or PERMISSION_DENIED
    (unknown)."""
    if not settings.api_keys:
        return
    header = authorization or ""
    key = header[7:].strip() if header.lower().startswith("bearer ") else (x_api_key or "")
    if not key:
        raise ApiError(Kind.UNAUTHENTICATED, "missing API key (Authorization: Bearer <key> or X-API-Key)")
    if not any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in settings.api_keys):
        raise ApiError(Kind.PERMISSION_DENIED, "unknown API key")
