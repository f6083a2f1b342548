"""Triton Inference Server backend (tritonclient, gRPC or HTTP): the same graph as the in-process backend,
hosted by Triton (or any server speaking the KServe v2 / Open Inference Protocol)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from service.model_repository import ModelVersion


class TritonBackend:
    """Calls ``infer`` on ``model_version.name`` / ``model_version.version``; the input and output names come
    from the server's model metadata, so a mismatch with the repository is found at start-up."""

    def __init__(self, url: str, model_version: ModelVersion, *, protocol: Literal["grpc", "http"] = "grpc",
                 timeout_s: float = 2.0) -> None:
        if protocol == "grpc":
            import tritonclient.grpc as client_module

            self.client: Any = client_module.InferenceServerClient(url=url)
            self._timeout: dict[str, Any] = {"client_timeout": timeout_s}
        else:
            import tritonclient.http as client_module  # type: ignore[no-redef]

            self.client = client_module.InferenceServerClient(url=url, connection_timeout=timeout_s,
                                                              network_timeout=timeout_s)
            self._timeout = {}
        self._module: Any = client_module
        self.protocol = protocol
        self.model_name = model_version.name
        self.version = str(model_version.version)
        metadata = self.client.get_model_metadata(self.model_name, self.version)
        if protocol == "grpc":
            inputs = [i.name for i in metadata.inputs]
            outputs = [o.name for o in metadata.outputs]
        else:
            inputs = [i["name"] for i in metadata["inputs"]]
            outputs = [o["name"] for o in metadata["outputs"]]
        self.input_names = tuple(inputs)
        self.output_name = outputs[0]

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        inputs = []
        for name in self.input_names:
            array = np.ascontiguousarray(feed[name], dtype=np.int64)
            tensor = self._module.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [self._module.InferRequestedOutput(self.output_name)]
        result = self.client.infer(self.model_name, inputs, model_version=self.version, outputs=outputs,
                                   **self._timeout)
        return np.asarray(result.as_numpy(self.output_name))

    def close(self) -> None:
        self.client.close()
