"""Triton Inference Server backend (tritonclient, gRPC or HTTP): the same graph as the in-process backend,
hosted by Triton (or any server speaking the KServe v2 / Open Inference Protocol)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from relevance_core.model_repository import ModelVersion
from service.backends import BackendUnavailable
from service.health import Health

# gRPC reconnects to a server that went away with exponential backoff (by default up to 2 minutes between tries);
# capped at a second, the gateway serves again within about a second of Triton's return. Channel arguments replace
# tritonclient's, so its message size limits are repeated (its keep-alive options are gRPC's defaults).
_GRPC_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 1000)]


class TritonUnavailableError(BackendUnavailable):
    """Triton did not answer the model metadata request at start-up; the message names the URL, model and
    version."""


class TritonBackend:
    """Calls ``infer`` on ``model_version.name`` / ``model_version.version``; the input and output names come
    from the server's model metadata, so a mismatch with the repository is found at start-up.

    The gRPC client is thread-safe and shared. tritonclient's HTTP client is not (geventhttpclient binds it to
    the thread that made it), so each calling thread gets its own.
    """

    def __init__(self, url: str, model_version: ModelVersion, *, protocol: Literal["grpc", "http"] = "grpc",
                 timeout_s: float = 2.0) -> None:
        self.url = url
        self.protocol = protocol
        self.label = f"Triton at {url} ({protocol}), model {model_version.name!r} version {model_version.version}"
        self.timeout_s = timeout_s
        self.model_name = model_version.name
        self.version = str(model_version.version)
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        self._module: Any = module
        self._timeout: dict[str, Any] = {"client_timeout": timeout_s} if protocol == "grpc" else {}
        self._local = threading.local()  # HTTP: one client per calling thread
        self._clients: list[Any] = []  # every client made, to close them all
        self._lock = threading.Lock()
        self._shared = self._new_client() if protocol == "grpc" else None
        try:
            metadata = self.client.get_model_metadata(self.model_name, self.version, **self._timeout)
        except (module.InferenceServerException, OSError) as exc:
            self.close()
            raise TritonUnavailableError(f"Triton at {url} ({protocol}): no metadata for model "
                                         f"{self.model_name!r} version {self.version}: {exc}") from exc
        if protocol == "grpc":
            inputs, outputs = [i.name for i in metadata.inputs], [o.name for o in metadata.outputs]
        else:
            inputs, outputs = [i["name"] for i in metadata["inputs"]], [o["name"] for o in metadata["outputs"]]
        self.input_names = tuple(inputs)
        self.output_name = outputs[0]

    def _new_client(self) -> Any:
        if self.protocol == "grpc":
            limit = self._module.MAX_GRPC_MESSAGE_SIZE
            client = self._module.InferenceServerClient(url=self.url, channel_args=[
                ("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit),
                *_GRPC_RECONNECT])
        else:
            client = self._module.InferenceServerClient(url=self.url, connection_timeout=self.timeout_s,
                                                        network_timeout=self.timeout_s)
        with self._lock:
            self._clients.append(client)
        return client

    @property
    def client(self) -> Any:
        """The shared gRPC client, or this thread's HTTP client."""
        if self._shared is not None:
            return self._shared
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        inputs = []
        for name in self.input_names:
            array = np.ascontiguousarray(feed[name], dtype=np.int64)
            tensor = self._module.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [self._module.InferRequestedOutput(self.output_name)]
        try:
            result = self.client.infer(self.model_name, inputs, model_version=self.version, outputs=outputs,
                                       **self._timeout)
        except (self._module.InferenceServerException, OSError) as exc:
            raise BackendUnavailable(f"{self.label}: {exc}") from exc
        return np.asarray(result.as_numpy(self.output_name))

    def health(self) -> Health:
        """Triton's readiness of this model version (one call, within the client timeout)."""
        try:
            ready = bool(self.client.is_model_ready(self.model_name, self.version, **self._timeout))
        except Exception as exc:  # any client or transport error means: not ready now
            return Health(False, f"triton {self.url}: {type(exc).__name__}: {exc}")
        return Health(ready, f"triton {self.url} {self.model_name}/{self.version} "
                             + ("ready" if ready else "not ready"))

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
