"""Inference backends behind one interface: ONNX Runtime in-process (default) or a Triton server (client)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from service.health import Health


class Backend(Protocol):
    """Runs one model graph: named int64 inputs → its single output array."""

    input_names: tuple[str, ...]

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def health(self) -> Health:
        """Whether the graph can run now (readiness); cheap enough for every ``/readyz``."""
        ...

    def close(self) -> None:
        """Release the session or the connections; the backend is not used afterwards."""
        ...
