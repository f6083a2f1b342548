"""Inference backends behind one interface: ONNX Runtime in-process (default) or a Triton server (client)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs one model graph: named int64 inputs → its single output array."""

    input_names: tuple[str, ...]

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray: ...
