"""ONNX → TensorRT plan, where TensorRT and an NVIDIA GPU exist (the ``gpu`` extra installs ``tensorrt``).

The network is built strongly typed: its precision is the ONNX graph's, so build from the fp16 variant
(``relevance export onnx --precision fp16``) for an fp16 engine. The int8 variant uses ONNX Runtime's dynamic
quantisation operators, which TensorRT does not take; it is the CPU artefact. One optimisation profile covers
batch 1..``max_batch`` and sequence 1..``max_len`` (optimum at ``opt_batch`` by ``max_len``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TensorRTUnavailableError(RuntimeError):
    """TensorRT is not installed, or no CUDA device can be used."""


@dataclass(frozen=True)
class PlanSettings:
    max_batch: int = 64
    opt_batch: int = 16
    max_len: int = 32
    workspace_bytes: int = 2 << 30


def load_tensorrt() -> Any:
    """The ``tensorrt`` module with a usable GPU, or :class:`TensorRTUnavailableError` saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailableError(
            f"TensorRT is not installed ({exc}); install the gpu extra on a machine with an NVIDIA GPU") from None
    try:  # without a CUDA device the builder's factory returns nullptr (a TypeError in the bindings)
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except (TypeError, RuntimeError) as exc:
        raise TensorRTUnavailableError(f"TensorRT found no usable CUDA device ({exc})") from None
    if builder is None:
        raise TensorRTUnavailableError("TensorRT found no usable CUDA device")
    return trt


def build_plan(onnx_path: Path, plan_path: Path, settings: PlanSettings | None = None) -> dict[str, Any]:
    """Build and write a serialized engine; returns what was built (inputs, profile, bytes, TensorRT version)."""
    settings = settings or PlanSettings()
    if settings.opt_batch > settings.max_batch or min(settings.opt_batch, settings.max_len) < 1:
        raise ValueError("need 1 <= opt_batch <= max_batch and max_len >= 1")
    trt = load_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT cannot parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    profile = builder.create_optimization_profile()
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    for name in inputs:
        profile.set_shape(name, (1, 1), (settings.opt_batch, settings.max_len), (settings.max_batch, settings.max_len))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    return {"plan": str(plan_path), "bytes": plan_path.stat().st_size, "inputs": inputs,
            "profile": {"min": [1, 1], "opt": [settings.opt_batch, settings.max_len],
                        "max": [settings.max_batch, settings.max_len]},
            "tensorrt": trt.__version__}
