"""Student → ONNX: the ColBERT token encoder (one graph used for both the query and the item side) and the
cross-encoder, with dynamic batch and sequence axes; fp16 and int8 (dynamic quantisation) variants; parity
against PyTorch.

Exported with torch's dynamo-based exporter (``torch.onnx.export(dynamo=True)``): the TorchScript tracer bakes
shape-dependent branches of the transformers attention-mask code into the graph and breaks dynamic lengths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mkd.students import Student
from mkd.students.colbert import ColBERTStudent
from mkd.students.cross import CrossEncoderStudent

OPSET = 18
COLBERT_INPUTS = ("input_ids", "attention_mask")
COLBERT_OUTPUT = "embeddings"
CROSS_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CROSS_OUTPUT = "logits"


class ColBERTEncoderGraph(nn.Module):
    """(input_ids, attention_mask) → unit-length token embeddings (B, L, dim), zero at padding. Query and item
    sides share the encoder; the tokenizer layout (markers) is the caller's."""

    def __init__(self, student: ColBERTStudent) -> None:
        super().__init__()
        self.student = student

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.student.encode_item(input_ids, attention_mask)


class CrossEncoderGraph(nn.Module):
    """(input_ids, attention_mask, token_type_ids) of ``[CLS] query [SEP] title [SEP]`` → logit of Good (B,)."""

    def __init__(self, student: CrossEncoderStudent) -> None:
        super().__init__()
        self.student = student

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.student(batch).logits_good


def _graph(student: Student) -> tuple[nn.Module, tuple[str, ...], str]:
    if isinstance(student, ColBERTStudent):
        return ColBERTEncoderGraph(student), COLBERT_INPUTS, COLBERT_OUTPUT
    if isinstance(student, CrossEncoderStudent):
        return CrossEncoderGraph(student), CROSS_INPUTS, CROSS_OUTPUT
    raise ValueError(f"ONNX export supports the colbert and cross families, not {student.config.family!r}")


def sample_inputs(names: tuple[str, ...], batch: int = 2, length: int = 12, seed: int = 0) -> dict[str, Tensor]:
    """Random token ids with a ragged attention mask (the second row padded), for export and parity."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 20000, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1:, length * 2 // 3:] = 0
    values = {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {name: values[name] for name in names}


def export_onnx(student: Student, path: Path) -> Path:
    """Export ``student`` (colbert or cross) to a single-file ONNX model at ``path``."""
    graph, inputs, output = _graph(student)
    graph.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[output] = {0: "batch", 1: "sequence"} if output == COLBERT_OUTPUT else {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(graph, tuple(sample_inputs(inputs).values()), str(path), input_names=list(inputs),
                          output_names=[output], dynamic_axes=axes, opset_version=OPSET, dynamo=True,
                          external_data=False, verbose=False)
    return path


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the weights (onnxruntime.quantization), activations stay float."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    # The exporter's intermediate shape annotations can contradict the quantiser's own shape inference (the
    # cross-encoder's [CLS] slice: "Inferred shape and existing shape differ"); it re-infers them without them.
    model = onnx.load(str(source))
    del model.graph.value_info[:]
    with tempfile.TemporaryDirectory() as scratch:
        cleaned = Path(scratch) / "model.onnx"
        onnx.save(model, str(cleaned))
        quantize_dynamic(str(cleaned), str(target), weight_type=QuantType.QInt8)
    return target


def convert_fp16(source: Path, target: Path) -> Path:
    """fp16 weights and compute, float32 inputs and outputs kept (onnxruntime's float16 converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target


def parity(student: Student, path: Path, batch: int = 3, length: int = 20) -> float:
    """Max absolute difference between ONNX Runtime and PyTorch on random inputs of a shape other than the
    export sample's (so dynamic axes are exercised); padded positions included."""
    import onnxruntime as ort

    graph, inputs, _ = _graph(student)
    graph.eval()
    feed = sample_inputs(inputs, batch=batch, length=length, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {name: value.numpy() for name, value in feed.items()})
    with torch.no_grad():
        want = graph(*feed.values()).numpy()
    return float(np.abs(got - want).max())
