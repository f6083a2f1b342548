"""A KServe model server (Open Inference Protocol / KServe v2, REST and gRPC) that serves one version of a
Triton-layout model repository with ONNX Runtime: a stand-in for a GPU / NGC Triton serving the ONNX layout
(``onnxruntime_onnx``), which the nvidia-pytriton wheel's Triton (no ONNX Runtime backend) cannot serve.

    python -m tests.service.kserve_server --repository DIR --model colbert [--version N] \
        --http-port 8000 --grpc-port 8001

It loads ``DIR/<model>/<version>/model.onnx`` (default: the highest version present) and serves it under the
model's name. The v2 model metadata lists the graph's inputs and outputs (``get_input_types`` /
``get_output_types``, kserve's hooks for custom models), ``predict`` runs the graph on the v2 ``InferRequest``.

Versions: kserve 0.21 answers the versioned REST paths (``/v2/models/<m>/versions/<v>/...``) with 501 "Model
versioning not supported yet", and its gRPC servicer ignores the request's version. Triton clients send the
version, so :class:`VersionedPaths` serves ``/v2/models/<m>/versions/<v>[/ready|/infer]`` as the unversioned
path when ``<v>`` is the version served, and answers 404 (Triton's ``{"error": ...}`` body) for any other
version. Over gRPC the version is not checked (kserve cannot see it from a model).

kserve parses ``sys.argv`` when it is imported (``parse_known_args``; e.g. ``--model`` is taken as its
``--model_name``), so this module sets every ``ModelServer`` option it relies on explicitly.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput
from kserve.model_server import app as kserve_app
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from relevance_core.model_repository import ModelRepositoryError, resolve_model

# ONNX tensor element types → v2 datatypes (those an exported student can have)
V2_DATATYPES = {"tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(float)": "FP32",
                "tensor(float16)": "FP16", "tensor(bool)": "BOOL"}
NUMPY_DTYPES = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP16": np.float16, "BOOL": np.bool_}


def _tensor_metadata(node: ort.NodeArg) -> dict[str, Any]:
    """A v2 metadata tensor (name, datatype, shape; symbolic axes are -1) of an ONNX graph input or output."""
    if node.type not in V2_DATATYPES:
        raise ValueError(f"tensor {node.name!r} has the unsupported ONNX type {node.type}")
    shape = [dim if isinstance(dim, int) else -1 for dim in node.shape]
    return {"name": node.name, "datatype": V2_DATATYPES[node.type], "shape": shape}


class OnnxModel(Model):
    """One ONNX graph of a model repository, served as ``name`` (version ``version``)."""

    def __init__(self, name: str, version: int, onnx_path: Path) -> None:
        super().__init__(name)
        self.version = str(version)
        self.onnx_path = onnx_path
        self.session: ort.InferenceSession | None = None
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [_tensor_metadata(node) for node in self.session.get_inputs()]
        self.outputs = [_tensor_metadata(node) for node in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.inputs

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.outputs

    def _feed(self, request: InferRequest) -> dict[str, np.ndarray]:
        feed = {}
        for spec in self.inputs:
            tensor = request.get_input_by_name(spec["name"])
            if tensor is None:
                raise InvalidInput(f"model {self.name!r} expects the input {spec['name']!r}")
            if tensor.datatype != spec["datatype"]:
                raise InvalidInput(f"input {spec['name']!r} of model {self.name!r} is {spec['datatype']}, "
                                   f"got {tensor.datatype}")
            feed[spec["name"]] = np.ascontiguousarray(tensor.as_numpy(), dtype=NUMPY_DTYPES[spec["datatype"]])
        unknown = sorted({t.name for t in request.inputs} - set(feed))
        if unknown:
            raise InvalidInput(f"model {self.name!r} has no input(s) {', '.join(unknown)}")
        return feed

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,  # type: ignore[override]
                      response_headers: dict[str, str] | None = None) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput("this model speaks the v2 protocol only")
        assert self.session is not None, "predict before load"
        known = [spec["name"] for spec in self.outputs]
        wanted = [o.name for o in payload.request_outputs] if payload.request_outputs else known
        missing = sorted(set(wanted) - set(known))
        if missing:
            raise InvalidInput(f"model {self.name!r} has no output(s) {', '.join(missing)}")
        feed = self._feed(payload)
        session = self.session
        arrays = await asyncio.to_thread(session.run, wanted, feed)
        by_name = {spec["name"]: spec for spec in self.outputs}
        outputs = []
        for name, array in zip(wanted, arrays, strict=True):
            output = InferOutput(name, list(array.shape), by_name[name]["datatype"])
            # raw bytes: kserve 0.21's to_grpc cannot take an ndarray as `data` for a request with raw inputs
            # (it tests the array's truth value); to_rest turns raw bytes into JSON data when asked to
            output.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
            outputs.append(output)
        return InferResponse(response_id=payload.id or "", model_name=self.name, model_version=self.version,
                             infer_outputs=outputs, use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


_VERSIONED = re.compile(r"^/v2/models/(?P<model>[^/]+)/versions/(?P<version>[^/]+)(?P<rest>/ready|/infer)?/?$")


class VersionedPaths:
    """ASGI middleware: ``/v2/models/<m>/versions/<v>[/ready|/infer]`` is served as ``/v2/models/<m>[...]`` when
    ``(<m>, <v>)`` is a served version, and is a 404 for any other version of a served model."""

    def __init__(self, app: ASGIApp, served: dict[str, str]) -> None:
        self.app = app
        self.served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _VERSIONED.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is not None:
            model, version, rest = match["model"], match["version"], match["rest"] or ""
            if model in self.served and self.served[model] != version:
                message = f"Request for unknown model: '{model}' version {version} is not found"
                await JSONResponse({"error": message}, status_code=404)(scope, receive, send)
                return
            path = f"/v2/models/{model}{rest}"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


def served_version(repository: Path, model: str, version: int | None) -> tuple[int, Path]:
    """The version to serve (default the highest present) and its graph, resolved like the gateway does."""
    try:
        resolved = resolve_model(repository, model=model, version=version)
    except ModelRepositoryError as exc:
        raise SystemExit(str(exc)) from None
    return resolved.version, resolved.onnx_path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--repository", type=Path, required=True, help="Triton-layout model repository")
    parser.add_argument("--model", default="colbert", help="model name (directory in the repository)")
    parser.add_argument("--version", type=int, default=None, help="version to serve (default: the highest)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    args = parser.parse_args(argv)

    version, onnx_path = served_version(args.repository, args.model, args.version)
    model = OnnxModel(args.model, version, onnx_path)
    model.load()
    kserve_app.add_middleware(VersionedPaths, served={model.name: model.version})
    server = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1, enable_grpc=True,
                         enable_docs_url=False, enable_latency_logging=False, grace_period=2)
    server.start([model])


if __name__ == "__main__":
    main()
