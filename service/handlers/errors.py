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
    UNSUPPORTED_ENCODING = "unsupported_encoding"  # a Content-Encoding the gateway cannot decode
    MALFORMED = "malformed"  # the body cannot be read: not JSON, or not the gzip stream it says it is
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
    def text(self) -> str:
        """The message, after the field it names when it names one: ``items[3].id: at most 256 characters``."""
        return f"{self.field_path}: {self.message}" if self.field else self.message

    @property
    def field_path(self) -> str:
        """The field as written in messages: ``items[3].id``."""
        return field_path(self.field)


def field_path(field: tuple[str | int, ...] | list[str | int]) -> str:
    """A field's path as written in messages: ``("items", 3, "id")`` is ``items[3].id``."""
    path = ""
    for part in field:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


HTTP_STATUS: dict[Kind, int] = {Kind.UNAUTHENTICATED: 401, Kind.PERMISSION_DENIED: 403, Kind.INVALID_ARGUMENT: 422,
                                Kind.NOT_FOUND: 404, Kind.OVERLOADED: 429, Kind.TOO_LARGE: 413,
                                Kind.READ_TIMEOUT: 408, Kind.UNSUPPORTED_ENCODING: 415, Kind.MALFORMED: 400,
                                Kind.UNAVAILABLE: 503,
                                Kind.UPSTREAM_ERROR: 502}
"""Overload is one status, 429 with ``Retry-After``, whichever bound refused the request; 503 means a dependency
(the model, the store, the teacher) is not there now."""


def error_body(error_type: str, message: str, fields: list[dict[str, object]] | None = None) -> dict[str, object]:
    """The one JSON body of every error status: ``{"error": {"type", "message", "fields"?}}``. ``type`` is the
    :class:`Kind` (or ``not_found``, ``method_not_allowed``, ``internal`` where no handler raised), ``message`` one
    line for people, ``fields`` the request fields at fault (``loc`` from ``body``, ``msg``, ``type``)."""
    error: dict[str, object] = {"type": error_type, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def http_status(error: ApiError) -> tuple[int, dict[str, object], dict[str, str]]:
    """(status, JSON body, headers). An error naming a field says so in ``message`` (``items[3].id: ...``, as
    over gRPC) and in ``fields``, so a limit and a schema error read alike."""
    headers: dict[str, str] = {}
    if error.kind is Kind.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    if error.close_connection:
        headers["Connection"] = "close"
    field_type = error.error_type if error.kind is Kind.INVALID_ARGUMENT else error.kind.value
    fields: list[dict[str, object]] = [{"loc": ["body", *error.field], "msg": error.message,
                                        "type": field_type}] if error.field else []
    return HTTP_STATUS[error.kind], error_body(error.kind.value, error.text, fields), headers


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
             Kind.UNSUPPORTED_ENCODING: grpc.StatusCode.INVALID_ARGUMENT,
             Kind.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
             Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
             Kind.UPSTREAM_ERROR: grpc.StatusCode.UNAVAILABLE}
    return codes[error.kind], error.text
