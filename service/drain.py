"""The drain of ``relevance serve``: on SIGTERM (Kubernetes stopping the pod) or Ctrl-C the gateway first reports
not ready (``/readyz`` 503, ``relevance_ready`` 0, gRPC health NOT_SERVING) for ``drain_s`` while it serves every
request, in flight or new, so that load balancers stop sending it traffic; only then does uvicorn's graceful
shutdown start (no new connections, in-flight requests finish, the lifespan stops the gRPC server and the engine).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

log = logging.getLogger("relevance.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose first SIGTERM or SIGINT calls ``drain`` and shuts down ``drain_s`` later; a second
    signal, or ``drain_s`` 0, shuts down at once."""

    def __init__(self, config: uvicorn.Config, drain_s: float, drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_s = drain_s
        self.drain = drain
        self.draining: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.draining is not None or self.drain_s <= 0 or not self.started:
            super().handle_exit(sig, frame)
            return
        log.warning("draining for %g s (not ready, still serving), then shutting down", self.drain_s)
        # a signal handler runs between two steps of the event loop: let the loop run the drain
        asyncio.get_running_loop().call_soon_threadsafe(self.drain)
        self.draining = threading.Timer(self.drain_s, super().handle_exit, (sig, frame))
        self.draining.daemon = True
        self.draining.start()
