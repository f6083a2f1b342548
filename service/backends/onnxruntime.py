"""ONNX Runtime in-process backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.health import Health

CPU = "CPUExecutionProvider"


class OnnxRuntimeBackend:
    """One ``InferenceSession``; ``threads`` bounds intra-op parallelism (0 lets ONNX Runtime choose).
    ``providers`` default to the CPU provider; pass e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``."""

    def __init__(self, path: Path, *, threads: int = 0, providers: Sequence[str] | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers or [CPU]))
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_name = self.session.get_outputs()[0].name

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        (output,) = self.session.run([self.output_name], {name: feed[name] for name in self.input_names})
        return np.asarray(output)

    def health(self) -> Health:
        """In process: the session loaded at start-up is there until :meth:`close`."""
        return Health(True, f"ONNX Runtime in process ({', '.join(self.session.get_providers())})")

    def close(self) -> None:
        """Nothing to release but memory: the session goes with the object."""
