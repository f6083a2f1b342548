"""ONNX export of the tiny students: parity with PyTorch on a shape other than the export sample's, and the
fp16 / int8 variants load and stay close."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export.onnx import convert_fp16, export_onnx, parity, quantize_int8, sample_inputs
from tests.mkd.students.tiny import tiny_student


@pytest.mark.parametrize("family", ["colbert", "cross"])
def test_export_matches_pytorch_with_dynamic_axes(tmp_path: Path, family: str) -> None:
    student = tiny_student(family).eval()
    path = export_onnx(student, tmp_path / f"{family}.onnx")
    assert parity(student, path, batch=3, length=20) < 1e-4
    assert parity(student, path, batch=1, length=5) < 1e-4


def test_int8_and_fp16_variants_run_and_stay_close(tmp_path: Path) -> None:
    student = tiny_student("colbert").eval()
    fp32 = export_onnx(student, tmp_path / "fp32.onnx")
    variants = {"int8": quantize_int8(fp32, tmp_path / "int8.onnx"), "fp16": convert_fp16(fp32, tmp_path / "fp16.onnx")}
    feed = {k: v.numpy() for k, v in sample_inputs(("input_ids", "attention_mask"), batch=2, length=16).items()}
    reference = ort.InferenceSession(str(fp32)).run(None, feed)[0]
    for name, path in variants.items():
        got = ort.InferenceSession(str(path)).run(None, feed)[0]
        assert got.shape == reference.shape and got.dtype == np.float32, name
        # unit-length embeddings: the cosine with the fp32 embedding stays high on real tokens
        real = feed["attention_mask"].astype(bool)
        cosine = (got * reference).sum(-1)[real]
        assert cosine.min() > 0.9, (name, cosine.min())
    assert variants["int8"].stat().st_size < fp32.stat().st_size


def test_the_cross_encoder_quantises_to_int8(tmp_path: Path) -> None:
    # its exported shape annotations once contradicted the quantiser's shape inference
    student = tiny_student("cross").eval()
    fp32 = export_onnx(student, tmp_path / "fp32.onnx")
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx")
    session, reference = ort.InferenceSession(str(int8)), ort.InferenceSession(str(fp32))
    names = [i.name for i in reference.get_inputs()]
    feed = {k: v.numpy() for k, v in sample_inputs(tuple(names), batch=2, length=16).items()}
    got, expected = session.run(None, feed)[0], reference.run(None, feed)[0]
    assert got.shape == expected.shape and np.isfinite(got).all()


def test_export_refuses_unsupported_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="colbert and cross"):
        export_onnx(tiny_student("sbert"), tmp_path / "x.onnx")
