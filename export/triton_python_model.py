"""The Triton Python-backend model of a CPU repository (``relevance export triton-python`` copies this file as
``<model>/<version>/model.py``): runs the version's ``model.onnx`` with ONNX Runtime on the CPU.

``config.pbtxt`` gives the input and output names (those of the ONNX layout) and ``parameters.intra_op_threads``,
ONNX Runtime's intra-op thread count per model instance. Triton's dynamic batcher hands ``execute`` requests whose
inputs have the same shape past the batch axis, so a batch runs as one graph call and is split back per request.

Tensors cross between the stub and numpy through DLPack only: the stub's numpy paths (``as_numpy``,
``Tensor(name, array)``) are built for numpy 1 and misread numpy 2 arrays (wrong values, empty outputs). The stub
marks a consumed capsule ``used_dlpack``; numpy's capsule destructor only recognises ``used_dltensor`` (else it
reports an error on every response), so the capsule is renamed to that once the stub holds the tensor, and the
stub's release of the tensor frees the array.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

THREADS_PARAMETER = "intra_op_threads"
_USED_CAPSULE = b"used_dltensor"  # module-level: a capsule keeps a pointer to its name
_set_capsule_name = ctypes.pythonapi.PyCapsule_SetName
_set_capsule_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
_set_capsule_name.restype = ctypes.c_int


def _output_tensor(name: str, array: np.ndarray) -> Any:
    """``array`` as the stub's tensor through a DLPack capsule (see the module docstring)."""
    capsule = np.ascontiguousarray(array).__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _set_capsule_name(capsule, _USED_CAPSULE)
    return tensor


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(config["parameters"][THREADS_PARAMETER]["string_value"])
        options.inter_op_num_threads = 1
        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds = [{name: np.from_dlpack(pb_utils.get_input_tensor_by_name(request, name)) for name in self.input_names}
                 for request in requests]
        sizes = [len(feed[self.input_names[0]]) for feed in feeds]
        batch = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.input_names}
        output = self.session.run([self.output_name], batch)[0]
        parts = np.split(output, np.cumsum(sizes)[:-1])
        return [pb_utils.InferenceResponse(output_tensors=[_output_tensor(self.output_name, part)]) for part in parts]
