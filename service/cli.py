"""``relevance serve``: the gateway under uvicorn. Every setting comes from the environment
(``RELEVANCE_*``, see :class:`service.settings.Settings`); the options here override the common ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (RELEVANCE_HOST; default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="HTTP port (RELEVANCE_PORT; 8000).")] = None,
    model_repository: Annotated[Path | None, typer.Option(help="Model repository (RELEVANCE_MODEL_REPOSITORY).")]
    = None,
    model_version: Annotated[int | None, typer.Option(min=1, help="Version to serve (default: highest).")] = None,
    grpc_port: Annotated[int | None, typer.Option(min=0, max=65535, help="gRPC port (RELEVANCE_GRPC_PORT; "
                                                                         "50051).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the scoring gateway (HTTP + gRPC) on embedded defaults unless configured otherwise."""
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    overrides = {k: v for k, v in {"host": host, "port": port, "model_repository": model_repository,
                                   "model_version": model_version, "grpc_port": grpc_port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, loop="uvloop", http="httptools",
                access_log=False, log_level=log_level, timeout_graceful_shutdown=10)
