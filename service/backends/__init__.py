"""Inference backends behind one interface: ONNX Runtime in-process (default) or a Triton server (client)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from service.health import Health


class BackendUnavailable(ConnectionError):
    """The encoder's server did not run the graph now (down, restarting, the model unloaded); the message names the
    server, model and version. The request that needed the encoder answers 503; the next one tries again."""


class Backend(Protocol):
    """Runs one model graph: named int64 inputs → its single output array."""

    input_names: tuple[str, ...]

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """The graph's output; `BackendUnavailable` when a remote backend cannot answer now."""
        ...

    def health(self) -> Health:
        """Whether the graph can run now (readiness); cheap enough for every ``/readyz``."""
        ...

    def close(self) -> None:
        """Release the session or the connections; the backend is not used afterwards."""
        ...
