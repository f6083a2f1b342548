"""Request ids: every HTTP request and gRPC call carries one, the client's (``X-Request-ID`` header,
``x-request-id`` metadata) or a new uuid4 hex; it is echoed on the response (every HTTP status; gRPC initial and
trailing metadata) and set on every log record made while the request is served (``record.request_id``), so that
a client's complaint, the gateway's log lines and a trace agree on one id.

The id lives in a context variable set for the request's task (each HTTP request and gRPC call has its own), which
the tasks and threads it starts inherit."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

HEADER = "x-request-id"
_USABLE = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII: no spaces or line breaks to forge log lines with
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def begin(given: str | None) -> str:
    """The id of the request starting in this task: ``given`` when usable (1-128 visible ASCII characters), else
    a new one."""
    request_id = given if given is not None and _USABLE.fullmatch(given) else uuid.uuid4().hex
    _current.set(request_id)
    return request_id


def current() -> str | None:
    """The id of the request being served, None outside one."""
    return _current.get()


def install_log_records() -> None:
    """Give every log record a ``request_id`` attribute (the current request's id, or None); idempotent."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "sets_request_id", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = _current.get()
        return record

    factory.sets_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class RequestIdFormatter(logging.Formatter):
    """A formatter that puts ``[<request id>]`` before the lines logged while a request is served."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return f"[{request_id}] {text}" if request_id else text
