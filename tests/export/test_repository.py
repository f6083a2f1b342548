"""The Triton-layout model repository written by `relevance export triton` / `export onnx`, read back by the
torch-free runtime: identical token ids to the training collator, scores equal to PyTorch's, configs that
parse as Triton's ModelConfig, and a scoring path that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc
from typer.testing import CliRunner

from export.repository import BatchingOptions, ExportError, export_triton, export_variants, training_command
from export.triton import read_config
from mkd.scorers import UnknownModelError, load_scorer
from mkd.students import PairExample, StudentCollator
from mkd.students.scoring import predict_p_good
from relevance.cli import app
from relevance_core.data import load_pairs, write_pairs
from relevance_core.model_repository import ModelRepositoryError, resolve_model
from service.core.runtime import ColBERTModel, CrossEncoderModel, load_runtime_model
from service.core.tokenization import StudentTokenizer
from tests.mkd.students.tiny import tiny_student

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    ("simpson angle bracket galvanized", "Simpson Strong-Tie 12-Gauge Angle, Stainless (10-Pack)"),
    ("1/2 in. x 10 ft. pvc pipe", "Charlotte Pipe 1/2 in. x 10 ft. PVC Schedule 40 Plain-End Pipe"),
    ("café table", "Hampton Bay Niche Mix and Match Round Café Table with a very long title that is cut off "
                   "somewhere after the thirty second token of the item side for sure"),
    ("x", "A"),
    ("behr premium plus ultra 1 gal. #ul260-14 ultra pure white eggshell enamel interior paint and primer",
     "BEHR Premium Plus Ultra 1 gal. Pure White Eggshell Enamel Interior Paint"),
]


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoints: dict[str, Path]) -> dict[str, Path]:
    return tiny_checkpoints


@pytest.fixture(scope="module")
def small_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pairs = load_pairs(REPO / "data" / "homedepot" / "pairs.tsv")[:120]
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    write_pairs(path, pairs)
    return path


@pytest.fixture(scope="module")
def repository(tiny_model_repository: Path) -> Path:
    return tiny_model_repository


def test_runtime_tokenizer_matches_the_training_collator(repository: Path, checkpoints: dict[str, Path]) -> None:
    from mkd.students.registry import load_student

    for family in ("colbert", "cross"):
        student = load_student(checkpoints[family])
        batch = StudentCollator(student.tokenizer, student.config)([PairExample(q, t) for q, t in TEXTS])
        version = resolve_model(repository, model=family)
        tokenizer = StudentTokenizer(version.tokenizer_path, version.meta)
        queries, titles = [q for q, _ in TEXTS], [t for _, t in TEXTS]
        if family == "colbert":
            for prefix, side, texts in (("q", "query", queries), ("t", "item", titles)):
                got = tokenizer.encode_side(texts, side)
                np.testing.assert_array_equal(got.input_ids, batch[f"{prefix}_input_ids"].numpy())
                np.testing.assert_array_equal(got.attention_mask, batch[f"{prefix}_attention_mask"].numpy())
        else:
            got = tokenizer.encode_pairs(queries, titles)
            for name in ("input_ids", "attention_mask", "token_type_ids"):
                np.testing.assert_array_equal(getattr(got, name), batch[name].numpy(), err_msg=name)


def test_runtime_scores_equal_pytorch(repository: Path, checkpoints: dict[str, Path]) -> None:
    from mkd.students.registry import load_student

    for family, cls in (("colbert", ColBERTModel), ("cross", CrossEncoderModel)):
        model = load_runtime_model(repository, model=family)
        assert isinstance(model, cls)
        want = predict_p_good(load_student(checkpoints[family]), TEXTS)
        got = model.score_pairs([q for q, _ in TEXTS], [t for _, t in TEXTS], batch_size=2)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=family)


def test_configs_parse_as_triton_model_config(repository: Path) -> None:
    colbert = read_config(repository / "colbert" / "config.pbtxt")
    assert colbert.name == "colbert" and colbert.platform == "onnxruntime_onnx"
    assert [i.name for i in colbert.input] == ["input_ids", "attention_mask"]
    assert list(colbert.output[0].dims) == [-1, 128]
    cross = read_config(repository / "cross" / "config.pbtxt")
    assert list(cross.output[0].dims) == [1] and list(cross.output[0].reshape.shape) == []
    assert cross.max_batch_size == 32 and list(cross.dynamic_batching.preferred_batch_size) == [8, 16]
    assert cross.instance_group[0].count == 2 and cross.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    for model in ("colbert", "cross"):
        files = {p.name for p in (repository / model / "1").iterdir()}
        assert {"model.onnx", "serving.json", "tokenizer.json", "MODEL_CARD.md"} <= files


def test_versions_are_added_and_never_overwritten_silently(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    first = export_triton(checkpoints["colbert"], tmp_path, precision="int8")
    second = export_triton(checkpoints["colbert"], tmp_path, precision="fp16")
    assert (first["version"], second["version"]) == (1, 2)
    assert resolve_model(tmp_path).version == 2 and resolve_model(tmp_path, version=1).meta.precision == "int8"
    with pytest.raises(ExportError, match="exists"):
        export_triton(checkpoints["colbert"], tmp_path, version=1)
    assert export_triton(checkpoints["colbert"], tmp_path, version=1, force=True)["version"] == 1
    with pytest.raises(ModelRepositoryError, match="no version 7"):
        resolve_model(tmp_path, version=7)
    with pytest.raises(ModelRepositoryError, match="no model 'cross'"):
        resolve_model(tmp_path, model="cross")
    gpu = export_triton(checkpoints["colbert"], tmp_path, precision="fp16",
                        options=BatchingOptions(gpu=True, tensorrt_precision="FP16"))
    config = read_config(Path(gpu["config"]))
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert config.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"


def test_export_variants_report_parity_and_cost(tmp_path: Path, checkpoints: dict[str, Path],
                                                small_pairs: Path) -> None:
    result = export_variants(checkpoints["colbert"], tmp_path, ["int8", "fp16"], evaluate_pairs=small_pairs)
    assert set(result["variants"]) == {"fp32", "int8", "fp16"}
    assert result["variants"]["fp32"]["parity_max_abs_error"] < 1e-4
    assert result["variants"]["fp32"]["roc_auc_cost"] == 0.0
    for name in ("int8", "fp16"):
        entry = result["variants"][name]
        assert 0.0 <= entry["metrics"]["roc_auc"] <= 1.0 and entry["metrics"]["n"] == 120
        assert entry["roc_auc_cost"] == pytest.approx(result["variants"]["fp32"]["metrics"]["roc_auc"]
                                                      - entry["metrics"]["roc_auc"], abs=1e-6)
    assert not (tmp_path / "fp32").exists()  # fp32 was only the reference
    assert json.loads((tmp_path / "export.json").read_text())["family"] == "colbert"
    with pytest.raises(ExportError, match="only the colbert and cross"):
        export_variants(tiny_student("sbert").save_pretrained(tmp_path / "sbert"), tmp_path / "x")


def test_evaluate_scores_a_repository_version_without_torch(repository: Path, small_pairs: Path) -> None:
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from mkd.evaluation.report import run_evaluation\n"
        "from mkd.scorers import load_scorer\n"
        f"scorer = load_scorer({str(repository)!r}, version=1, show_progress=False)\n"
        f"report = run_evaluation(Path({str(small_pairs)!r}), scorer)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
        "print(json.dumps(report))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["n"] == 120 and report["scorer"].startswith("colbert:1")


def test_evaluate_cli_rejects_what_is_not_a_repository(repository: Path, small_pairs: Path) -> None:
    with pytest.raises(UnknownModelError, match="no version 3"):
        load_scorer(str(repository), version=3)
    with pytest.raises(UnknownModelError, match="apply to a model repository"):
        load_scorer("bm25", version=1)
    result = CliRunner().invoke(app, ["evaluate", "--pairs", str(small_pairs), "--model", str(repository),
                                      "--model-name", "cross"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["scorer"].startswith("cross:1")
    result = CliRunner().invoke(app, ["evaluate", "--pairs", str(small_pairs), "--model", str(repository),
                                      "--version", "9"])
    assert result.exit_code == 2 and "no version 9" in result.output


def test_export_cli(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["export", "triton", "--checkpoint", str(checkpoints["colbert"]),
                                 "--repository", str(tmp_path / "repo"), "--precision", "int8",
                                 "--preferred-batch-size", "4", "--preferred-batch-size", "8"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["version"] == 1 and summary["precision"] == "int8"
    assert list(read_config(Path(summary["config"])).dynamic_batching.preferred_batch_size) == [4, 8]
    result = runner.invoke(app, ["export", "onnx", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no student.json" in result.output
    result = runner.invoke(app, ["export", "triton", "--checkpoint", str(checkpoints["colbert"]),
                                 "--repository", str(tmp_path / "repo"), "--tensorrt-precision", "FP16"])
    assert result.exit_code == 2 and "needs --gpu" in result.output


def test_tensorrt_plan_or_clean_skip(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    """Runs only where TensorRT and a GPU exist (the device machine); elsewhere the CLI exits 3 with the reason."""
    from export.tensorrt import TensorRTUnavailableError, build_plan, load_tensorrt

    result = export_variants(checkpoints["colbert"], tmp_path / "onnx", ["fp16"])
    graph = Path(result["variants"]["fp16"]["directory"]) / "model.onnx"
    try:
        load_tensorrt()
    except TensorRTUnavailableError as exc:
        done = CliRunner().invoke(app, ["export", "tensorrt", "--onnx", str(graph), "--out", str(tmp_path / "p")])
        assert done.exit_code == 3 and "TensorRT unavailable" in done.output
        pytest.skip(f"no TensorRT here: {exc}")
    built = build_plan(graph, tmp_path / "model.plan")
    assert built["bytes"] > 0 and built["inputs"] == ["input_ids", "attention_mask"]


def test_training_command_names_every_setting_that_changes_what_is_learnt() -> None:
    record = {"config": {"family": "colbert", "epochs": 1, "max_steps": None, "batch_size": 32, "lr": 5e-5,
                         "head_lr": 1e-3, "seed": 0, "lambdas": [1.0, 0.01, 0.5], "temperature": 2.0,
                         "graded_weight": 0.0, "labelled_teacher": False, "layers": 3, "train_sample": None,
                         "pool_sample": 100000},
              "data": {"teacher": {"path": "work/teacher.jsonl"}}, "best": {"checkpoint": "work/v2/best"}}
    words = training_command(record).split()
    assert words[words.index("--teacher") + 1] == "work/teacher.jsonl"
    assert "--no-teacher-labelled" in words and "--train-sample" not in words and "--temperature" not in words
    assert words[words.index("--layers") + 1] == "3" and words[words.index("--pool-sample") + 1] == "100000"
    assert words[-2:] == ["--out", "work/v2"]
