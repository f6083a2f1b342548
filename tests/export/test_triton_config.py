from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.triton import Tensor, TritonModelSpec, read_config, write_config

QUERY_ENCODER = TritonModelSpec(
    name="colbert_query",
    inputs=[Tensor("input_ids", "int64", (-1,)), Tensor("attention_mask", "int64", (-1,))],
    outputs=[Tensor("embeddings", "fp32", (-1, 128))],
    max_batch_size=32,
    preferred_batch_sizes=(4, 8, 16),
    max_queue_delay_us=200,
    instance_count=2,
    parameters={"query_length": "16"},
)


def test_written_config_parses_as_triton_model_config(tmp_path: Path) -> None:
    path = write_config(tmp_path / "colbert_query", QUERY_ENCODER)
    config = read_config(path)
    assert config.name == "colbert_query" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert [i.name for i in config.input] == ["input_ids", "attention_mask"]
    assert config.input[0].data_type == mc.TYPE_INT64 and list(config.input[0].dims) == [-1]
    assert list(config.output[0].dims) == [-1, 128] and config.output[0].data_type == mc.TYPE_FP32
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 200
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.parameters["query_length"].string_value == "16"


def test_invalid_specs_and_texts_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exceed max_batch_size"):
        write_config(tmp_path / "m", TritonModelSpec("m", [], [], max_batch_size=4, preferred_batch_sizes=(8,)))
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "m"\nmax_batch_sise: 4\n')
    with pytest.raises(text_format.ParseError):
        read_config(bad)
