"""The one error type of the API handlers, and what it means in each transport. A handler raises
:class:`ApiError` with a transport-neutral :class:`Kind`; :func:`http_status` and :func:`grpc_status` are the only
places that turn a kind into a status code (TEI's style: one error type, mapped once per transport)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


class Kind(Enum):
    UNAUTHENTICATED = "unauthenticated"  # no API key
    PERMISSION_DENIED = "permission_denied"  # an unknown API key
    INVALID_ARGUMENT = "invalid_argument"  # a field breaks a limit; ``field`` names it
    NOT_FOUND = "not_found"  # the request names something the gateway does not know (an item id); ``field`` names it
    OVERLOADED = "overloaded"  # shed by admission control, or the encoder queue is full: retry after retry_after_s
    TOO_LARGE = "too_large"  # the request body is over the byte limit
    READ_TIMEOUT = "read_timeout"  # the request body did not arrive in time
    UNAVAILABLE = "unavailable"  # a dependency (model, store, teacher) is not there now
    UPSTREAM_ERROR = "upstream_error"  # a dependency answered with an error (the teacher)


@dataclass
class ApiError(Exception):
    """``field``: the path of the offending request field (``("items", 3, "id")``); ``retry_after_s``: when a
    retry may succeed (sent as ``Retry-After`` over HTTP); ``error_type``: the validation error's type
    (FastAPI's ``too_long``, ``value_error``) for INVALID_ARGUMENT."""

    kind: Kind
    message: str
    field: tuple[str | int, ...] = ()
    retry_after_s: float | None = None
    error_type: str = "too_long"
    close_connection: bool = False
    """HTTP: answer with ``Connection: close`` (a body that was not, or not wholly, read)."""

    def __str__(self) -> str:
        return self.message

    @property
    def field_path(self) -> str:
        """The field as written in messages: ``items[3].id``."""
        path = ""
        for part in self.field:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        return path


HTTP_STATUS: dict[Kind, int] = {Kind.UNAUTHENTICATED: 401, Kind.PERMISSION_DENIED: 403, Kind.INVALID_ARGUMENT: 422,
                                Kind.NOT_FOUND: 404, Kind.OVERLOADED: 429, Kind.TOO_LARGE: 413,
                                Kind.READ_TIMEOUT: 408, Kind.UNAVAILABLE: 503, Kind.UPSTREAM_ERROR: 502}
"""Overload is one status, 429 with ``Retry-After``, whichever bound refused the request; 503 means a dependency
(the model, the store, the teacher) is not there now."""


def http_status(error: ApiError) -> tuple[int, object, dict[str, str]]:
    """(status, ``detail`` of the JSON body, headers). INVALID_ARGUMENT is a 422 in FastAPI's validation format
    (``loc`` names the field), so a limit and a schema error read alike."""
    headers: dict[str, str] = {}
    if error.kind is Kind.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    if error.close_connection:
        headers["Connection"] = "close"
    if error.kind is Kind.INVALID_ARGUMENT:
        return 422, [{"type": error.error_type, "loc": ["body", *error.field], "msg": error.message}], headers
    return HTTP_STATUS[error.kind], error.message, headers


def grpc_status(error: ApiError) -> tuple[grpc.StatusCode, str]:
    """(status code, details); INVALID_ARGUMENT details start with the field (``items[3].id: ...``)."""
    import grpc

    codes = {Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
             Kind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
             Kind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
             Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
             Kind.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
             Kind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
             Kind.READ_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
             Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
             Kind.UPSTREAM_ERROR: grpc.StatusCode.UNAVAILABLE}
    details = f"{error.field_path}: {error.message}" if error.field else error.message
    return codes[error.kind], details
