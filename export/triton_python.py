"""A CPU variant of a Triton model: the same versions as the ONNX layout (``onnxruntime_onnx``, the GPU / NGC
Triton repository that ``relevance export triton`` writes), served by Triton's Python backend, whose
``model.py`` (:mod:`export.triton_python_model`) runs each version's graph with ONNX Runtime. For a Triton
without the ONNX Runtime backend, e.g. the ``tritonserver`` that the ``nvidia-pytriton`` wheel ships.

Inputs, outputs, ``max_batch_size`` and the version policy are copied from the ONNX layout's ``config.pbtxt``,
so the gateway reads the same model metadata from either; the scheduling is this variant's own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from export.triton import read_config, write_config_message
from relevance_core.model_repository import CONFIG_FILE, list_versions

MODEL_SCRIPT = Path(__file__).with_name("triton_python_model.py")
THREADS_PARAMETER = "intra_op_threads"


class TritonPythonError(ValueError):
    """The source is not an ONNX-layout model directory, or the target exists."""


@dataclass(frozen=True)
class PythonBackendOptions:
    """Scheduling of the Python-backend variant: CPU instances, each with its own ONNX Runtime session."""

    instance_count: int = 1
    intra_op_threads: int = 1
    max_queue_delay_us: int = 500

    def __post_init__(self) -> None:
        if self.instance_count < 1 or self.intra_op_threads < 1 or self.max_queue_delay_us < 0:
            raise TritonPythonError(f"instance_count and intra_op_threads must be >= 1 and max_queue_delay_us "
                                    f">= 0, got {self}")


def write_python_variant(model_dir: Path, out: Path, *, versions: list[int] | None = None,
                         options: PythonBackendOptions | None = None, force: bool = False) -> dict[str, Any]:
    """Write ``out/<model>/config.pbtxt`` (backend ``python``) and ``out/<model>/<version>/`` for each version of
    ``model_dir`` (default: all): its files plus ``model.py``. Returns a summary."""
    options = options or PythonBackendOptions()
    source_config = model_dir / CONFIG_FILE
    if not source_config.is_file():
        raise TritonPythonError(f"{model_dir}: not a model directory of a Triton repository (no {CONFIG_FILE})")
    config = read_config(source_config)
    if config.platform != "onnxruntime_onnx":
        raise TritonPythonError(f"{source_config}: platform {config.platform!r}, expected the ONNX layout "
                                "(onnxruntime_onnx)")
    present = list_versions(model_dir)
    chosen = present if versions is None else versions
    missing = sorted(set(chosen) - set(present))
    if not chosen or missing:
        raise TritonPythonError(f"{model_dir}: versions {missing or chosen} not found; present: {present}")
    target = out / model_dir.name
    if target.exists():
        if not force:
            raise TritonPythonError(f"{target} exists; pass --force to replace it")
        shutil.rmtree(target)
    config.platform = ""
    config.backend = "python"
    config.ClearField("optimization")  # the ONNX layout's GPU accelerators do not apply
    del config.instance_group[:]
    config.instance_group.add(count=options.instance_count, kind=mc.ModelInstanceGroup.KIND_CPU)
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    config.parameters[THREADS_PARAMETER].string_value = str(options.intra_op_threads)
    for version in chosen:
        shutil.copytree(model_dir / str(version), target / str(version))
        shutil.copyfile(MODEL_SCRIPT, target / str(version) / "model.py")
    config_path = write_config_message(target, config)
    return {"model": model_dir.name, "versions": chosen, "config": str(config_path), "backend": "python",
            "instance_count": options.instance_count, "intra_op_threads": options.intra_op_threads,
            "max_queue_delay_us": options.max_queue_delay_us}
