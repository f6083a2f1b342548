"""``relevance serve``: the gateway under uvicorn. Every setting comes from the environment
(``RELEVANCE_*``, see :class:`service.settings.Settings`); the options here override the common ones."""

from __future__ import annotations

import asyncio
import copy
import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from relevance_core.teacher.process import TeacherProcess
    from relevance_core.triton_server import TritonProcess
    from service.settings import Settings

log = logging.getLogger("relevance.serve")
STARTUP_FAILURE = 3


class LogLevel(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"  # uvicorn's exit code when it cannot start, e.g. the HTTP port is taken


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (RELEVANCE_HOST; default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="HTTP port (RELEVANCE_PORT; 8000).")] = None,
    model_repository: Annotated[Path | None, typer.Option(help="Triton-layout model repository "
                                                          "(RELEVANCE_MODEL_REPOSITORY; model_repository/).")]
    = None,
    model_version: Annotated[int | None, typer.Option(min=1, help="Version to serve, pinned (RELEVANCE_MODEL_VERSION;"
                                                       " default: the version the store marks active, else the "
                                                       "highest).")] = None,
    grpc_port: Annotated[int | None, typer.Option(min=0, max=65535, help="gRPC port (RELEVANCE_GRPC_PORT; "
                                                                         "50051).")] = None,
    log_level: Annotated[LogLevel, typer.Option(help="Log level of the server and the gateway.")] = LogLevel.info,
) -> None:
    """Run the scoring gateway (HTTP + gRPC) on embedded defaults unless configured otherwise. A setting that
    cannot work fails at once with one line naming it (exit 2); a start-up that fails (a taken port, a model
    version that is not there) with one line naming the setting (exit 3)."""
    from pydantic import ValidationError

    from relevance_core.console import fail
    from service.app import create_app
    from service.drain import DrainingServer
    from service.settings import Settings

    overrides = {k: v for k, v in {"host": host, "port": port, "model_repository": model_repository,
                                   "model_version": model_version, "grpc_port": grpc_port}.items() if v is not None}
    try:
        settings = Settings.model_validate(overrides)
    except ValidationError as exc:
        raise fail("; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())) \
            from None
    triton = _start_local_triton(settings)
    if triton is not None:
        url = triton.grpc_url if settings.triton_protocol == "grpc" else triton.http_url
        settings = settings.model_copy(update={"triton_url": url})
    teacher = _start_local_teacher(settings)
    gate = None
    if teacher is not None:
        # the embedded teacher writes explanations (the llm writer) and second opinions; by default /v1/explain
        # explains the served decision, which a 135M teacher judges worse than the student it would explain
        mode = "decision" if settings.explain_mode == "auto" else settings.explain_mode
        settings = settings.model_copy(update={"teacher_url": teacher.base_url, "teacher_model": teacher.model,
                                               "explain_mode": mode})
        gate = teacher.check
    app = create_app(settings, teacher_gate=gate)
    server = DrainingServer(uvicorn_config(app, settings, log_level=log_level.value), settings.drain_s,
                            drain=lambda: app.state.serving.drain())
    try:
        server.run()
    finally:
        if teacher is not None:
            teacher.stop()
        if triton is not None:
            triton.stop()
    if not server.started:  # the lifespan failed (its one-line reason is logged): uvicorn's start-up failure code
        raise typer.Exit(STARTUP_FAILURE)


def uvicorn_config(app: FastAPI, settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    """uvicorn (uvloop, httptools) with the connection bound (``max_connections``: beyond it, 503 at once), the
    keep-alive timeout, and a deadline for the request headers (``request_read_timeout_s``; the body's deadline is
    the gateway middleware's)."""
    import uvicorn

    return uvicorn.Config(app, host=settings.host, port=settings.port, loop="uvloop",
                          http=header_timeout_protocol(settings.request_read_timeout_s), access_log=False,
                          log_level=log_level, log_config=log_config(log_level), timeout_graceful_shutdown=10,
                          limit_concurrency=settings.max_connections,
                          timeout_keep_alive=max(1, round(settings.keep_alive_s)))


def log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging configuration, plus the gateway's own loggers (``service``, ``relevance``) on stderr with
    the request id before the lines logged while serving a request (:mod:`service.request_ids`)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["gateway"] = {"()": "service.request_ids.RequestIdFormatter",
                                       "fmt": "%(levelname)s: %(name)s: %(message)s"}
    config["handlers"]["gateway"] = {"formatter": "gateway", "class": "logging.StreamHandler",
                                     "stream": "ext://sys.stderr"}
    for name in ("service", "relevance"):
        config["loggers"][name] = {"handlers": ["gateway"], "level": log_level.upper(), "propagate": False}
    return config


def header_timeout_protocol(timeout_s: float) -> type:
    """uvicorn's httptools protocol that closes a connection whose request headers are not complete within
    ``timeout_s`` of the connection opening or of the request's first byte (slow or stalled clients)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]  # uvicorn's protocol narrows BaseProtocol's
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def _start_local_teacher(settings: Settings) -> TeacherProcess | None:
    """Start the shipped local teacher (`relevance teacher serve`, llama.cpp) in a child process on a free local
    port when no teacher endpoint is set and llama-cpp-python, the base GGUF and the GGUF adapter are installed.
    Returns at once: ``/v1/explain`` answers 503 until the child answers (`TeacherProcess.check`)."""
    if settings.teacher_url or not settings.teacher_local:
        return None
    from relevance_core.teacher.process import TeacherProcess, missing_requirements

    missing = missing_requirements()
    if missing:
        log.warning("no local teacher: %s not installed (set RELEVANCE_TEACHER_URL for /v1/explain)",
                    ", ".join(missing))
        return None
    return TeacherProcess.start_local(threads=settings.teacher_local_threads, nice=settings.teacher_local_nice)


def _start_local_triton(settings: Settings) -> TritonProcess | None:
    """With backend=triton and a local repository: tritonserver on free local ports, ready before the gateway
    starts (the gateway reads the model metadata at start-up). A missing wheel or a server that does not become
    ready stops ``relevance serve`` with a one-line message."""
    if settings.backend != "triton" or settings.triton_local_repository is None:
        return None
    from relevance_core.console import fail
    from relevance_core.triton_server import TritonProcess, TritonServerError

    try:
        triton = TritonProcess(settings.triton_local_repository)
    except TritonServerError as exc:
        raise fail(str(exc)) from None
    log.info("starting tritonserver on %s (HTTP %s, gRPC %s)", settings.triton_local_repository, triton.http_url,
             triton.grpc_url)
    try:
        triton.wait_ready(120.0)
    except TritonServerError as exc:
        triton.stop()
        raise fail(str(exc)) from None
    return triton
