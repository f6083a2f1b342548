"""Student checkpoint → servable model versions: ONNX graphs per precision (with parity and, optionally, the
test-split cost of each), and a Triton model repository version with its ``config.pbtxt`` and model card.

Each exported version directory is self-contained (see :mod:`relevance_core.model_repository`): ``model.onnx``,
``serving.json`` (lengths, markers, skip-list, calibration) and ``tokenizer.json``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.onnx import (
    COLBERT_INPUTS,
    COLBERT_OUTPUT,
    CROSS_INPUTS,
    CROSS_OUTPUT,
    convert_fp16,
    export_onnx,
    parity,
    quantize_int8,
)
from export.triton import Tensor, TritonModelSpec, write_config
from mkd.students import Student
from mkd.students.colbert import ColBERTStudent
from mkd.students.registry import load_student
from relevance_core.model_repository import (
    CONFIG_FILE,
    MODEL_CARD_FILE,
    ONNX_FILE,
    TOKENIZER_FILE,
    Precision,
    ServingMeta,
    list_versions,
    load_version_directory,
)
from relevance_core.paths import REPO_ROOT

PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
EXPORT_RECORD = "export.json"


class ExportError(ValueError):
    """The export cannot proceed (unsupported family, existing version, bad arguments)."""


def serving_meta(student: Student, precision: Precision, source: dict[str, Any]) -> ServingMeta:
    """The runtime metadata of ``student`` (see :class:`ServingMeta`)."""
    config, tokenizer = student.config, student.tokenizer
    if config.family not in ("colbert", "cross"):
        raise ExportError(f"only the colbert and cross families are served, not {config.family!r}")

    def marker(token: str) -> int | None:
        return int(tokenizer.convert_tokens_to_ids(token)) if token else None

    scale, bias = 1.0, 0.0
    if isinstance(student, ColBERTStudent):
        scale, bias = float(student.calibration.scale.detach()), float(student.calibration.bias.detach())
    return ServingMeta(
        family=config.family,  # type: ignore[arg-type]
        precision=precision, query_len=config.query_len, title_len=config.title_len, pair_len=config.pair_len,
        dim=config.dim, cls_id=int(tokenizer.cls_token_id), sep_id=int(tokenizer.sep_token_id),
        pad_id=int(tokenizer.pad_token_id), query_marker_id=marker(config.query_marker),
        item_marker_id=marker(config.item_marker), skip_token_ids=list(config.skip_token_ids),
        calibration_scale=scale, calibration_bias=bias, source=source,
    )


def training_record(checkpoint: Path) -> dict[str, Any] | None:
    """The ``training.json`` written beside a trainer's ``best/`` checkpoint, when there is one."""
    for candidate in (checkpoint / "training.json", checkpoint.parent / "training.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    return None


def _source(checkpoint: Path, record: dict[str, Any] | None) -> dict[str, Any]:
    source: dict[str, Any] = {"checkpoint": str(checkpoint)}
    if record is not None:
        source.update({
            "backbone": record["config"].get("backbone"), "lambdas": record["config"].get("lambdas"),
            "teacher": "teacher" in record["data"], "train_sha256": record["data"]["train"]["sha256"],
            "total_steps": record.get("total_steps"), "git_commit": record.get("git_commit"),
            "best": record.get("best"),
        })
    return source


def _write_variant(student: Student, fp32_graph: Path, directory: Path, precision: Precision,
                   source: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / ONNX_FILE
    if precision == "fp32":
        if fp32_graph != target:
            shutil.copyfile(fp32_graph, target)
    elif precision == "fp16":
        convert_fp16(fp32_graph, target)
    else:
        quantize_int8(fp32_graph, target)
    student.tokenizer.backend_tokenizer.save(str(directory / TOKENIZER_FILE))
    serving_meta(student, precision, source).save(directory)
    return directory


def evaluate_version(directory: Path, pairs: Path, *, show_progress: bool = False) -> dict[str, Any]:
    """``relevance evaluate`` of an exported version directory (ONNX Runtime only)."""
    from mkd.evaluation.report import run_evaluation
    from mkd.scorers import RepositoryScorer

    scorer = RepositoryScorer(load_version_directory(directory), show_progress=show_progress)
    return run_evaluation(pairs, scorer, model=str(directory))


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("roc_auc", "neg_pr_auc", "ndcg10", "n", "pairs_per_second")
    return {**{k: report[k] for k in keys},
            "long_tail": {k: report["long_tail"][k] for k in ("roc_auc", "neg_pr_auc", "ndcg10", "n")}}


def export_variants(checkpoint: Path, out_dir: Path, precisions: Sequence[Precision] = PRECISIONS, *,
                    evaluate_pairs: Path | None = None, show_progress: bool = False) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out_dir/<precision>/`` for each precision; parity of each against PyTorch
    and, with ``evaluate_pairs``, its metrics and its ROC-AUC cost against fp32. Writes ``out_dir/export.json``."""
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown or not precisions:
        raise ExportError(f"precisions must be among {', '.join(PRECISIONS)}, got {list(precisions)}")
    student = load_student(checkpoint).eval()
    if student.config.family not in ("colbert", "cross"):
        raise ExportError(f"only the colbert and cross families are exported, not {student.config.family!r}")
    record = training_record(checkpoint)
    source = _source(checkpoint, record)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_graph = export_onnx(student, out_dir / "fp32" / ONNX_FILE)
    wanted = ["fp32", *[p for p in precisions if p != "fp32"]]
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "family": student.config.family, "variants": {}}
    for precision in wanted:
        directory = _write_variant(student, fp32_graph, out_dir / precision, precision, source)  # type: ignore[arg-type]
        entry: dict[str, Any] = {
            "directory": str(directory), "bytes": (directory / ONNX_FILE).stat().st_size,
            "parity_max_abs_error": parity(student, directory / ONNX_FILE),
        }
        if evaluate_pairs is not None:
            entry["metrics"] = _summary(evaluate_version(directory, evaluate_pairs, show_progress=show_progress))
        result["variants"][precision] = entry
    if evaluate_pairs is not None:
        result["evaluated_on"] = str(evaluate_pairs)
        base = result["variants"]["fp32"]["metrics"]["roc_auc"]
        for entry in result["variants"].values():
            entry["roc_auc_cost"] = round(base - entry["metrics"]["roc_auc"], 6)
    if "fp32" not in precisions:
        shutil.rmtree(out_dir / "fp32")
        result["variants"]["fp32"].pop("directory")
    (out_dir / EXPORT_RECORD).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


@dataclass(frozen=True)
class BatchingOptions:
    """Triton scheduling of one model (see ``config.pbtxt``)."""

    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 500
    instance_count: int = 1
    gpu: bool = False
    tensorrt_precision: str | None = None
    serve_versions: int = 1


def triton_spec(name: str, meta: ServingMeta, options: BatchingOptions) -> TritonModelSpec:
    if meta.family == "colbert":
        inputs = [Tensor(n, "int64", (-1,)) for n in COLBERT_INPUTS]
        outputs = [Tensor(COLBERT_OUTPUT, "fp32", (-1, meta.dim))]
    else:
        inputs = [Tensor(n, "int64", (-1,)) for n in CROSS_INPUTS]
        outputs = [Tensor(CROSS_OUTPUT, "fp32", (1,), reshape=())]
    return TritonModelSpec(
        name=name, inputs=inputs, outputs=outputs, max_batch_size=options.max_batch_size,
        preferred_batch_sizes=options.preferred_batch_sizes, max_queue_delay_us=options.max_queue_delay_us,
        instance_count=options.instance_count, instance_kind="KIND_GPU" if options.gpu else "KIND_CPU",
        version_policy_latest=options.serve_versions,
        tensorrt_precision=options.tensorrt_precision if options.gpu else None,
    )


def export_triton(checkpoint: Path, repository: Path, *, name: str | None = None, version: int | None = None,
                  precision: Precision = "int8", options: BatchingOptions | None = None,
                  evaluate_pairs: Path | None = None, force: bool = False, show_progress: bool = False,
                  ) -> dict[str, Any]:
    """Write ``repository/<name>/<version>/`` (graph, serving metadata, tokenizer, model card) and
    ``repository/<name>/config.pbtxt``. ``name`` defaults to the family, ``version`` to one past the highest."""
    options = options or BatchingOptions()
    if options.tensorrt_precision is not None and not options.gpu:
        raise ExportError("--tensorrt-precision needs --gpu (TensorRT runs on GPU instances only)")
    with tempfile.TemporaryDirectory(prefix="relevance-export-") as scratch:
        variants = [precision] if precision == "fp32" else ["fp32", precision]
        result = export_variants(checkpoint, Path(scratch), variants, evaluate_pairs=evaluate_pairs,  # type: ignore[arg-type]
                                 show_progress=show_progress)
        family = result["family"]
        model_dir = repository / (name or family)
        existing = list_versions(model_dir) if model_dir.is_dir() else []
        chosen = version if version is not None else (existing[-1] + 1 if existing else 1)
        if chosen < 1:
            raise ExportError(f"version must be >= 1, got {chosen}")
        target = model_dir / str(chosen)
        if target.exists():
            if not force:
                raise ExportError(f"{target} exists; pass --force to replace it or choose another --version")
            shutil.rmtree(target)
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(scratch) / precision, target)
    meta = ServingMeta.load(target / "serving.json")
    config_path = write_config(model_dir, triton_spec(model_dir.name, meta, options))
    for other in result["variants"].values():
        other.pop("directory", None)  # the scratch copies are gone; only the served graph stays
    entry = result["variants"][precision]
    entry["directory"] = str(target)
    summary = {"model": model_dir.name, "version": chosen, "precision": precision, "family": family,
               "directory": str(target), "config": str(config_path), "bytes": entry["bytes"],
               "parity_max_abs_error": entry["parity_max_abs_error"], "variants": result["variants"],
               "evaluated_on": result.get("evaluated_on")}
    card = model_card(summary, training_record(checkpoint), command=shlex.join(["relevance", *sys.argv[1:]]))
    (target / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    (target / EXPORT_RECORD).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _relative(path: str) -> str:
    """A path inside the repository, relative to its root (the card is read on other machines)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


def training_command(record: dict[str, Any]) -> str:
    """The ``relevance train`` command line that the training record's settings correspond to."""
    config = record["config"]
    words = ["relevance", "train", "--student", config["family"], "--epochs", str(config["epochs"])]
    if config.get("max_steps"):
        words += ["--max-steps", str(config["max_steps"])]
    if "teacher" in record["data"]:
        words += ["--teacher", _relative(record["data"]["teacher"]["path"])]
    words += ["--batch-size", str(config["batch_size"]), "--lr", str(config["lr"]), "--head-lr",
              str(config["head_lr"]), "--seed", str(config["seed"])]
    lambdas = config["lambdas"]
    words += ["--lambda-score", str(lambdas[0]), "--lambda-cot", str(lambdas[1]), "--lambda-ce", str(lambdas[2])]
    if config.get("temperature", 2.0) != 2.0:
        words += ["--temperature", str(config["temperature"])]
    if config.get("graded_weight"):
        words += ["--graded-weight", str(config["graded_weight"])]
    if not config.get("labelled_teacher", True):
        words.append("--no-teacher-labelled")
    for option in ("layers", "train_sample", "pool_sample"):
        if config.get(option) is not None:
            words += [f"--{option.replace('_', '-')}", str(config[option])]
    checkpoint = record.get("best", {}) or {}
    if checkpoint.get("checkpoint"):
        words += ["--out", _relative(str(Path(checkpoint["checkpoint"]).parent))]
    return shlex.join(words)


def model_card(summary: dict[str, Any], record: dict[str, Any] | None, *, command: str) -> str:
    """A Markdown model card from the export summary and the training record (all figures measured)."""
    precision = summary["precision"]
    lines = [
        f"# {summary['model']} version {summary['version']} ({summary['family']} student, {precision})",
        "",
        "Written by `relevance export triton`; every figure below was measured by that command.",
        "",
        "## Model",
        f"- Family: `{summary['family']}`; graph `{ONNX_FILE}` ({summary['bytes'] / 1e6:.1f} MB, {precision}); "
        f"runtime metadata in `serving.json`, tokenizer in `{TOKENIZER_FILE}`, Triton config in "
        f"`../{CONFIG_FILE}`.",
        f"- Parity against the PyTorch checkpoint (max abs error of the graph output on random inputs): "
        f"{summary['parity_max_abs_error']:.2e}"
        + (f" (fp32 graph: {summary['variants']['fp32']['parity_max_abs_error']:.2e})"
           if "fp32" in summary["variants"] and precision != "fp32" else "") + ".",
    ]
    if precision == "int8":
        lines.append("- int8: dynamic quantisation of the weights (onnxruntime.quantization.quantize_dynamic); "
                     "activations stay float. For CPU serving; use an fp16/fp32 version on GPU instances.")
    lines += ["", "## Training"]
    if record is None:
        lines.append("- No training record found beside the checkpoint.")
    else:
        config = record["config"]
        lines += [
            f"- Backbone: {config['backbone']}; λ (score, CoT, CE) = {config['lambdas']}; "
            f"{'with' if 'teacher' in record['data'] else 'without'} a teacher file.",
            f"- {record['total_steps']} steps of {config['batch_size']} pairs, lr {config['lr']} "
            f"(heads {config['head_lr']}), seed {config['seed']}; {record.get('seconds', 0) / 60:.1f} min "
            f"on {config['threads']} CPU threads.",
        ]
        examples = record.get("examples")
        if examples and "teacher" in record["data"]:
            scored = "the pool pairs only" if not config.get("labelled_teacher", True) else "every pair"
            lines.append(f"- Examples: {examples['labelled']} labelled pairs and {examples['pool']} unlabeled pool "
                         f"pairs; teacher scores distilled for {scored}, teacher CoTs for "
                         f"{examples['cot_parsed']} pairs.")
        for split, data in record["data"].items():
            lines.append(f"- {split}: `{_relative(data['path'])}` ({data['rows']} rows, sha256 "
                         f"{data['sha256'][:16]}…)")
        if record.get("best"):
            lines.append(f"- Best validation ROC-AUC {_fmt(record['best']['roc_auc'])} at step "
                         f"{record['best']['step']}; git commit {record.get('git_commit')}.")
    lines += ["", "## Evaluation"]
    if summary.get("evaluated_on"):
        lines += [
            f"On `{summary['evaluated_on']}` (queries unseen in training), scored with ONNX Runtime:",
            "",
            "| graph | ROC-AUC | Neg PR-AUC | NDCG@10 | long-tail ROC-AUC | ROC-AUC cost vs fp32 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, entry in summary["variants"].items():
            m = entry["metrics"]
            lines.append(f"| {name} | {_fmt(m['roc_auc'])} | {_fmt(m['neg_pr_auc'])} | {_fmt(m['ndcg10'])} | "
                         f"{_fmt(m['long_tail']['roc_auc'])} | {entry['roc_auc_cost']:+.4f} |")
    else:
        lines.append("Not evaluated at export time (no `--evaluate` pairs file).")
    lines += [
        "", "## Reproduce", "", "```",
        *([training_command(record)] if record is not None else []),
        command, "```", "",
        "## Intended use and limits",
        "- Relevance of a Home Depot-style product title to a search query, p(Good) calibrated on human labels "
        "(Good = rating > 2). Trained on English home-improvement queries; other catalogues need re-training.",
        "- Scores are comparable within one model version only; the store keys item embeddings by version.",
        "",
    ]
    return "\n".join(lines)
