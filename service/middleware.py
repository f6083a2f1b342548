"""The gateway's HTTP front (pure ASGI middleware): every request body is read up front with a size limit and a
deadline, the scoring routes go through admission control, work for a client that has gone is stopped, and every
request is counted and timed.

Admission control bounds the work in flight: at most ``max_concurrent_requests`` scoring requests run at once,
at most ``max_queued_requests`` wait (first come, first served) and none waits longer than ``max_queue_wait_ms``.
A request that finds the queue full, or that would wait longer than that (see :class:`Admission`), is refused at
once with 429 + ``Retry-After``, before its body is parsed; one still waiting at the bound gets the same. So under
overload the admitted requests keep their latency and the refused ones cost next to nothing. A client that
disconnects while its request waits is dropped from the queue; one that disconnects while its request runs has
the request cancelled (its queries leave the encoder queue unencoded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import request_ids
from service.handlers.errors import ApiError, Kind, http_status
from service.lifecycle import StartupError
from service.metrics import Metrics
from service.settings import Settings

ADMITTED_PATHS = frozenset({"/v1/score", "/v1/rerank", "/v2/rerank", "/rerank", "/v1/items"})
CLIENT_GONE = 499  # the status recorded (never sent) for requests whose client left, as nginx logs them
RETRY_AFTER_S = 1


class Admission:
    """A slot limiter with a bounded FIFO queue that refuses up front: a request that would wait longer than
    ``wait_s`` (the requests ahead of it, and itself, times the recent service time, per slot) or finds
    ``queue`` requests waiting is refused at once; one still waiting after ``wait_s`` is refused then. A standing
    queue of a few closed-loop clients is served; an open-loop excess is refused before it costs anything. Single
    event loop: no locks needed."""

    def __init__(self, limit: int, queue: int, wait_s: float, metrics: Metrics) -> None:
        self.limit = limit
        self.queue = queue
        self.wait_s = wait_s
        self.metrics = metrics
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.service_s = 0.0  # moving average of the time a request holds its slot

    def expected_wait(self) -> float:
        """Seconds a request queued now would wait: those ahead of it, and itself, share the slots."""
        return (len(self.waiters) + 1) * self.service_s / self.limit

    async def acquire(self, gone: asyncio.Future[None]) -> str | None:
        """None once a slot is held (call :meth:`release` after); else why not: ``queue_full``, ``queue_timeout``
        or ``gone`` (``gone`` resolved: the client left while waiting)."""
        if self.active < self.limit and not self.waiters:
            self.active += 1
            self.metrics.in_flight.set(self.active)
            return None
        if len(self.waiters) >= self.queue or self.expected_wait() > self.wait_s:
            return "queue_full"
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.metrics.queued.set(len(self.waiters))
        admitted = False
        try:
            await asyncio.wait((waiter, gone), timeout=self.wait_s, return_when=asyncio.FIRST_COMPLETED)
            admitted = waiter.done() and not waiter.cancelled()
        finally:
            if not admitted:
                if waiter.done() and not waiter.cancelled():  # handed a slot as this task was cancelled
                    self.release()
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
                self.metrics.queued.set(len(self.waiters))
        if admitted and gone.done():
            self.release()
            return "gone"
        if admitted:
            return None
        return "gone" if gone.done() else "queue_timeout"

    def release(self, held_s: float | None = None) -> None:
        """Hand the slot to the longest waiter, or free it; ``held_s``: how long the request that ran held it."""
        if held_s is not None:
            self.service_s = held_s if not self.service_s else 0.9 * self.service_s + 0.1 * held_s
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.metrics.queued.set(len(self.waiters))
                return
        self.active -= 1
        self.metrics.in_flight.set(self.active)


class _Gone(Exception):
    """The client disconnected."""


async def reply(send: Send, error: ApiError) -> None:
    """The error's response as the API's exception handler writes it (`http_status`: one mapping)."""
    status, payload, headers = http_status(error)
    body = json.dumps(payload).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class GatewayMiddleware:
    """Body limit (413) and read deadline (408), gzip bodies (415 for other encodings), admission control (429)
    and disconnect handling for the scoring routes, the request id (:mod:`service.request_ids`, echoed on every
    response), and the request count and latency by route template, method and status."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.limit = settings.max_body_bytes
        self.read_timeout_s = settings.request_read_timeout_s
        self.metrics = metrics
        self.admission = Admission(settings.max_concurrent_requests, settings.max_queued_requests,
                                   settings.max_queue_wait_ms / 1000.0, metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, object] = {"status": 500, "finished": False}
        headers = dict(scope.get("headers") or [])
        given = headers.get(request_ids.HEADER.encode())
        echo = (request_ids.HEADER.encode(), request_ids.begin(given.decode("latin-1") if given else None).encode())

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["finished"] = True
            await send(message)

        path = scope.get("path", "")
        try:
            await self._handle(scope, receive, send_wrapper, path, state, headers)
        except ApiError as refused:
            await reply(send_wrapper, refused)
        except _Gone:
            state["status"] = CLIENT_GONE
        route = scope.get("route")
        label = getattr(route, "path", None) or (path if path in ADMITTED_PATHS else "unmatched")
        labels = (label, scope.get("method", ""), str(state["status"]))
        self.metrics.requests.labels(*labels).inc()
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The lifespan, with a :class:`~service.lifecycle.StartupError` reported as its one-line message instead
        of the traceback Starlette sends (uvicorn then logs it and exits with its start-up failure code)."""
        failed: list[Message] = []

        async def hold_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                failed.append(message)
            else:
                await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, hold_failure)
        except StartupError as exc:  # swallowed: reported as its line alone
            failed[:] = [{"type": "lifespan.startup.failed", "message": str(exc)}]
        except BaseException as exc:  # any other failure as Starlette reported it, and raised on
            error = exc
        for message in failed:
            await send(message)
        if error is not None:
            raise error

    async def _handle(self, scope: Scope, receive: Receive, send: Send, path: str, state: dict[str, object],
                      headers: dict[bytes, bytes]) -> None:
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            raise self._too_large()
        body = await self._read_body(receive)
        encoding = headers.get(b"content-encoding", b"").decode("latin-1").strip().lower()
        if body and encoding not in ("", "identity"):
            body = self._decode(body, encoding)
        if path not in ADMITTED_PATHS:
            await self.app(scope, _replay(body, receive), send)
            return
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()
        watcher = loop.create_task(self._watch(receive, gone, state))
        try:
            reason = await self.admission.acquire(gone)
            if reason == "gone":
                self.metrics.abandoned.labels("queued").inc()
                raise _Gone
            if reason is not None:
                self.metrics.shed.labels(reason).inc()
                raise ApiError(Kind.OVERLOADED, f"overloaded ({reason.replace('_', ' ')}); retry after "
                               f"{RETRY_AFTER_S} s", retry_after_s=RETRY_AFTER_S)
            admitted = time.perf_counter()
            try:
                task = asyncio.ensure_future(self.app(scope, _replay(body, _wait_for(gone)), send))
                await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
                if not task.done():  # the client left: stop its work
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    self.metrics.abandoned.labels("running").inc()
                    raise _Gone
                task.result()
            finally:
                self.admission.release(time.perf_counter() - admitted)
        finally:
            watcher.cancel()

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Gone
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    if received > self.limit:
                        raise self._too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise ApiError(Kind.READ_TIMEOUT, f"request body not received within {self.read_timeout_s:g} s",
                           close_connection=True) from None

    def _decode(self, body: bytes, encoding: str) -> bytes:
        """A gzip body decompressed, within the same byte limit as a plain one (413 beyond it, whatever the
        compressed size); any other encoding is refused (415)."""
        if encoding != "gzip":
            raise ApiError(Kind.UNSUPPORTED_ENCODING, f"Content-Encoding {encoding} is not supported; send gzip or no "
                           "encoding")
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            plain = stream.decompress(body, self.limit + 1)
        except zlib.error as exc:
            raise ApiError(Kind.MALFORMED, f"the body is not a gzip stream: {exc}") from None
        if len(plain) > self.limit:
            raise ApiError(Kind.TOO_LARGE, f"request body larger than {self.limit} bytes once decompressed")
        if not stream.eof:
            raise ApiError(Kind.MALFORMED, "the gzip stream is truncated")
        return plain

    def _too_large(self) -> ApiError:
        return ApiError(Kind.TOO_LARGE, f"request body larger than {self.limit} bytes", close_connection=True)

    @staticmethod
    async def _watch(receive: Receive, gone: asyncio.Future[None], state: dict[str, object]) -> None:
        """Resolve ``gone`` when the client disconnects before its answer is sent (uvicorn's ``receive`` also
        returns ``http.disconnect`` once the response is complete: that is not a departure)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not state["finished"] and not gone.done():
                    gone.set_result(None)
                return


def _replay(body: bytes, then: Receive) -> Receive:
    """A ``receive`` that gives the buffered body once, then defers to ``then``."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


def _wait_for(gone: asyncio.Future[None]) -> Callable[[], Awaitable[Message]]:
    async def receive() -> Message:
        await asyncio.shield(gone)
        return {"type": "http.disconnect"}

    return receive
