"""Triton model repository configs.

Each ``config.pbtxt`` is built as Triton's own ``ModelConfig`` protobuf (shipped by ``tritonclient``) and
serialised with protobuf's text format, so what we write is exactly what Triton parses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

_DTYPES = {"int64": mc.TYPE_INT64, "int32": mc.TYPE_INT32, "fp32": mc.TYPE_FP32, "fp16": mc.TYPE_FP16}


@dataclass(frozen=True, slots=True)
class Tensor:
    """A model input or output; ``dims`` exclude the batch axis, -1 marks a dynamic axis. ``reshape`` gives the
    shape the model really has when it differs (e.g. dims (1,) reshaped to () for a per-row scalar)."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class TritonModelSpec:
    name: str
    inputs: Sequence[Tensor]
    outputs: Sequence[Tensor]
    max_batch_size: int = 64
    preferred_batch_sizes: Sequence[int] = (8, 16, 32)
    max_queue_delay_us: int = 500
    instance_count: int = 1
    instance_kind: str = "KIND_CPU"
    platform: str = "onnxruntime_onnx"
    version_policy_latest: int = 1
    tensorrt_precision: str | None = None
    """On GPU instances, let ONNX Runtime's TensorRT execution accelerator run the graph ("FP32" or "FP16")."""
    parameters: dict[str, str] = field(default_factory=dict)


def build_config(spec: TritonModelSpec) -> mc.ModelConfig:
    if spec.max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {spec.max_batch_size}")
    if any(size > spec.max_batch_size for size in spec.preferred_batch_sizes):
        raise ValueError(f"preferred batch sizes {list(spec.preferred_batch_sizes)} exceed max_batch_size "
                         f"{spec.max_batch_size}")
    config = mc.ModelConfig(name=spec.name, platform=spec.platform, max_batch_size=spec.max_batch_size)
    config.version_policy.latest.num_versions = spec.version_policy_latest
    for tensor in spec.inputs:
        added = config.input.add(name=tensor.name, data_type=_DTYPES[tensor.dtype], dims=list(tensor.dims))
        if tensor.reshape is not None:
            added.reshape.SetInParent()
            added.reshape.shape.extend(tensor.reshape)
    for tensor in spec.outputs:
        added = config.output.add(name=tensor.name, data_type=_DTYPES[tensor.dtype], dims=list(tensor.dims))
        if tensor.reshape is not None:
            added.reshape.SetInParent()
            added.reshape.shape.extend(tensor.reshape)
    config.dynamic_batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
    config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    config.instance_group.add(count=spec.instance_count, kind=mc.ModelInstanceGroup.Kind.Value(spec.instance_kind))
    if spec.tensorrt_precision is not None:
        if spec.instance_kind != "KIND_GPU":
            raise ValueError("the TensorRT accelerator needs KIND_GPU instances")
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = spec.tensorrt_precision
    for key, value in spec.parameters.items():
        config.parameters[key].string_value = value
    return config


def write_config(model_dir: Path, spec: TritonModelSpec) -> Path:
    """Write ``<model_dir>/config.pbtxt`` and return its path."""
    return write_config_message(model_dir, build_config(spec))


def write_config_message(model_dir: Path, config: mc.ModelConfig) -> Path:
    """Write ``config`` as ``<model_dir>/config.pbtxt`` and return its path."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "config.pbtxt"
    path.write_text(text_format.MessageToString(config), encoding="utf-8")
    return path


def read_config(path: Path) -> mc.ModelConfig:
    """Parse a ``config.pbtxt`` into ``ModelConfig``; raises ``text_format.ParseError`` on invalid text."""
    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())
