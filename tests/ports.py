"""Free TCP ports for the servers the tests start (:func:`relevance_core.net.free_port`), and an ASGI app served
in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from relevance_core.net import free_port

__all__ = ["free_port", "serving"]


@contextmanager
def serving(app: Any, timeout_s: float = 60.0) -> Iterator[int]:
    """Run the ASGI ``app`` under uvicorn in a daemon thread on a free port; yields the port once it listens,
    and stops the server afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
