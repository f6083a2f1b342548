"""`relevance export triton-python`: the CPU (Python-backend) variant of a model of the ONNX layout. That Triton
loads and serves it is tested against the real server in tests/service/backends/test_triton_backend.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from export.triton import read_config
from export.triton_python import MODEL_SCRIPT, PythonBackendOptions, TritonPythonError, write_python_variant
from relevance_core.paths import REPO_ROOT


@pytest.mark.parametrize("model", ["colbert", "cross"])
def test_the_variant_keeps_the_tensors_and_schedules_on_cpu(tiny_model_repository: Path, tmp_path: Path,
                                                            model: str) -> None:
    source = read_config(tiny_model_repository / model / "config.pbtxt")
    options = PythonBackendOptions(instance_count=2, intra_op_threads=3, max_queue_delay_us=250)
    summary = write_python_variant(tiny_model_repository / model, tmp_path, options=options)
    config = read_config(tmp_path / model / "config.pbtxt")
    assert config.backend == "python" and config.platform == ""
    assert (config.name, config.max_batch_size) == (source.name, source.max_batch_size)
    assert list(config.input) == list(source.input) and list(config.output) == list(source.output)
    assert config.version_policy == source.version_policy
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert config.parameters["intra_op_threads"].string_value == "3"
    assert summary["versions"] == [1]
    version = tmp_path / model / "1"
    assert (version / "model.py").read_text() == MODEL_SCRIPT.read_text()
    for name in ("model.onnx", "serving.json", "tokenizer.json"):
        assert (version / name).read_bytes() == (tiny_model_repository / model / "1" / name).read_bytes()


def test_refusals_name_the_problem(tiny_model_repository: Path, tmp_path: Path) -> None:
    with pytest.raises(TritonPythonError, match=r"no config\.pbtxt"):
        write_python_variant(tmp_path, tmp_path / "out")
    with pytest.raises(TritonPythonError, match=r"versions \[7\] not found; present: \[1\]"):
        write_python_variant(tiny_model_repository / "colbert", tmp_path, versions=[7])
    write_python_variant(tiny_model_repository / "colbert", tmp_path)
    with pytest.raises(TritonPythonError, match="exists; pass --force"):
        write_python_variant(tiny_model_repository / "colbert", tmp_path)
    write_python_variant(tiny_model_repository / "colbert", tmp_path, force=True)
    python_layout = tmp_path / "again"
    shutil.copytree(tmp_path / "colbert", python_layout / "colbert")
    with pytest.raises(TritonPythonError, match="expected the ONNX layout"):
        write_python_variant(python_layout / "colbert", tmp_path / "third")
    with pytest.raises(TritonPythonError, match="must be >= 1"):
        PythonBackendOptions(intra_op_threads=0)


def test_command_line(tiny_model_repository: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "relevance.cli", "export", "triton-python", "--model-dir",
               str(tiny_model_repository / "colbert"), "--out", str(tmp_path), "--intra-op-threads", "2"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["intra_op_threads"] == 2
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
