"""``relevance triton serve``: a local Triton (the ``nvidia-pytriton`` wheel's ``tritonserver``) on a CPU
repository, in the foreground until Ctrl-C or SIGTERM; see :mod:`relevance_core.triton_server`."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

triton_app = typer.Typer(no_args_is_help=True)


@triton_app.command("serve")
def serve(
    repository: Annotated[Path, typer.Option(help="A CPU model repository (`relevance export triton-python`).")],
    http_port: Annotated[int | None, typer.Option(min=1, max=65535, help="HTTP port (default: a free one).")] = None,
    grpc_port: Annotated[int | None, typer.Option(min=1, max=65535, help="gRPC port (default: a free one).")] = None,
    ready_timeout_s: Annotated[float, typer.Option(min=1, help="How long to wait for /v2/health/ready.")] = 120.0,
) -> None:
    """Start tritonserver on 127.0.0.1 with REPOSITORY, wait until it is ready, print its HTTP and gRPC endpoints
    (and its pid) as one JSON line and keep it running until Ctrl-C or SIGTERM. It never outlives this command."""
    import json

    from relevance_core.console import fail
    from relevance_core.triton_server import TritonProcess, TritonServerError

    try:
        server = TritonProcess(repository, http_port=http_port, grpc_port=grpc_port)
    except TritonServerError as exc:
        raise fail(str(exc)) from None
    stopping = threading.Event()
    # both stop it, whatever disposition it inherited (a shell's background job starts with SIGINT ignored)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        server.wait_ready(ready_timeout_s)
        print(json.dumps({"http": server.http_url, "grpc": server.grpc_url, "pid": server.process.pid,
                          "repository": str(repository)}), flush=True)
        while not stopping.wait(0.5):
            if server.process.poll() is not None:
                raise TritonServerError(f"tritonserver exited with code {server.process.returncode}")
    except TritonServerError as exc:
        raise fail(str(exc)) from None
    finally:
        server.stop()
