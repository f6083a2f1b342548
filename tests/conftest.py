from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEADER = "id\tquery\tproduct_uid\tproduct_title\trelevance\n"


@pytest.fixture
def write_tsv(tmp_path: Path) -> Callable[..., Path]:
    """Write a TSV file from a header line and rows; returns its path."""

    def _write(rows: list[str], header: str = HEADER, name: str = "pairs.tsv", encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes((header + "".join(r + "\n" for r in rows)).encode(encoding))
        return path

    return _write


@pytest.fixture(scope="session")
def vendored_pairs() -> Path:
    return REPO / "data" / "homedepot" / "pairs.tsv"


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints of a tiny random ColBERT and cross-encoder on the MiniLM tokenizer (seconds to build). The
    ColBERT's calibration is moved off its initial values so that it must travel with an export."""
    from tests.mkd.students.tiny import tiny_student

    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for family in ("colbert", "cross"):
        student = tiny_student(family)
        if family == "colbert":
            student.calibration.scale.data.fill_(7.5)
            student.calibration.bias.data.fill_(-2.25)
        out[family] = student.save_pretrained(root / family)
    return out


@pytest.fixture(scope="session")
def tiny_model_repository(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoints: dict[str, Path]) -> Path:
    """A Triton-layout model repository with the tiny students as fp32 version 1 (colbert and cross), written by
    the project's exporter. Read-only for tests: copy it before changing it."""
    from export.repository import BatchingOptions, export_triton

    root = tmp_path_factory.mktemp("model_repository")
    export_triton(tiny_checkpoints["colbert"], root, precision="fp32")
    export_triton(tiny_checkpoints["cross"], root, precision="fp32",
                  options=BatchingOptions(max_batch_size=32, preferred_batch_sizes=(8, 16), instance_count=2))
    return root


@pytest.fixture(scope="session")
def tiny_cpu_repository(tmp_path_factory: pytest.TempPathFactory, tiny_model_repository: Path) -> Path:
    """The CPU (Python-backend) variant of ``tiny_model_repository``, both models, written by the project's
    exporter. Read-only for tests."""
    from export.triton_python import PythonBackendOptions, write_python_variant

    root = tmp_path_factory.mktemp("cpu_repository")
    for model in ("colbert", "cross"):
        write_python_variant(tiny_model_repository / model, root, options=PythonBackendOptions(intra_op_threads=1))
    return root
