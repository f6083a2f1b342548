"""``relevance export onnx | triton | triton-python | tensorrt | calibrate``. torch is imported inside the commands
that need it."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from relevance_core.console import fail

export_app = typer.Typer(no_args_is_help=True)
DEFAULT_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"


class PrecisionChoice(StrEnum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


def _checkpoint(path: Path) -> Path:
    if not (path / "student.json").is_file():
        raise fail(f"--checkpoint {str(path)!r}: not a student checkpoint directory (no student.json)")
    return path


def _pairs(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise fail(f"--evaluate {str(path)!r}: no such pairs file")
    return path


def _variants_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"export of {result.get('checkpoint', result.get('directory'))}")
    for column in ("precision", "MB", "parity max abs err", "ROC-AUC", "cost vs fp32", "pairs/s"):
        table.add_column(column, justify="right")
    for name, entry in result["variants"].items():
        metrics = entry.get("metrics")
        table.add_row(name, f"{entry['bytes'] / 1e6:.1f}", f"{entry['parity_max_abs_error']:.2e}",
                      "-" if metrics is None else f"{metrics['roc_auc']:.4f}",
                      "-" if "roc_auc_cost" not in entry else f"{entry['roc_auc_cost']:+.4f}",
                      "-" if metrics is None else f"{metrics['pairs_per_second']:.0f}")
    return table


@export_app.command("onnx")
def onnx(
    checkpoint: Annotated[Path, typer.Option(help="Student checkpoint directory (colbert or cross).")],
    out: Annotated[Path, typer.Option(help="Output directory: one version directory per precision.")],
    precision: Annotated[list[PrecisionChoice], typer.Option(
        help="Precisions to write (repeat the option); fp32 is always built as the reference.")] = [  # noqa: B006
        PrecisionChoice.fp32, PrecisionChoice.fp16, PrecisionChoice.int8],
    evaluate: Annotated[Path | None, typer.Option(
        help="Labelled pairs TSV: score every precision with ONNX Runtime and report its ROC-AUC cost.")] = None,
) -> None:
    """Export a student to ONNX (dynamic batch and sequence axes) in fp32/fp16/int8, with parity against PyTorch.
    The last line printed is the JSON record (also in OUT/export.json)."""
    from export.repository import ExportError, export_variants

    try:
        result = export_variants(_checkpoint(checkpoint), out, [PrecisionChoice(p).value for p in precision],  # type: ignore[misc]
                                 evaluate_pairs=_pairs(evaluate), show_progress=sys.stderr.isatty())
    except ExportError as exc:
        raise fail(str(exc)) from None
    Console(stderr=True).print(_variants_table(result))
    print(json.dumps(result))


@export_app.command("triton")
def triton(
    checkpoint: Annotated[Path, typer.Option(help="Student checkpoint directory (colbert or cross).")],
    repository: Annotated[Path, typer.Option(help="Triton model repository root.")] = DEFAULT_REPOSITORY,
    name: Annotated[str | None, typer.Option(help="Model name (default: the family, colbert or cross).")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Version (default: one past the highest).")] = None,
    precision: Annotated[PrecisionChoice, typer.Option(help="Precision of the served graph.")] = PrecisionChoice.int8,
    evaluate: Annotated[Path | None, typer.Option(
        help="Labelled pairs TSV: measure the served graph and the fp32 graph; the model card quotes both.")] = None,
    max_batch_size: Annotated[int, typer.Option(min=1)] = 64,
    preferred_batch_size: Annotated[list[int], typer.Option(help="Dynamic batching preferred sizes (repeat).")] = [  # noqa: B006
        8, 16, 32],
    max_queue_delay_us: Annotated[int, typer.Option(min=0, help="Dynamic batching max queue delay.")] = 500,
    instances: Annotated[int, typer.Option(min=1, help="Model instances (instance group count).")] = 1,
    gpu: Annotated[bool, typer.Option(help="KIND_GPU instances instead of KIND_CPU.")] = False,
    tensorrt_precision: Annotated[str | None, typer.Option(
        help="With --gpu: run the graph through ONNX Runtime's TensorRT accelerator (FP32 or FP16).")] = None,
    serve_versions: Annotated[int, typer.Option(min=1, help="Versions Triton serves (latest N).")] = 1,
    force: Annotated[bool, typer.Option(help="Replace an existing version directory.")] = False,
) -> None:
    """Write a Triton model repository version: <name>/config.pbtxt, <name>/<version>/model.onnx with
    serving.json, tokenizer.json and MODEL_CARD.md. The last line printed is the JSON summary."""
    from export.repository import BatchingOptions, ExportError, export_triton

    if tensorrt_precision is not None and tensorrt_precision not in ("FP32", "FP16"):
        raise fail(f"--tensorrt-precision must be FP32 or FP16, not {tensorrt_precision!r}")
    options = BatchingOptions(max_batch_size=max_batch_size, preferred_batch_sizes=tuple(preferred_batch_size),
                              max_queue_delay_us=max_queue_delay_us, instance_count=instances, gpu=gpu,
                              tensorrt_precision=tensorrt_precision, serve_versions=serve_versions)
    try:
        summary = export_triton(_checkpoint(checkpoint), repository, name=name, version=version,
                                precision=precision.value, options=options, evaluate_pairs=_pairs(evaluate),  # type: ignore[arg-type]
                                force=force, show_progress=sys.stderr.isatty())
    except (ExportError, ValueError) as exc:
        raise fail(str(exc)) from None
    Console(stderr=True).print(_variants_table(summary))
    Console(stderr=True).print(f"wrote {summary['directory']} and {summary['config']}", highlight=False)
    print(json.dumps(summary))


@export_app.command("triton-python")
def triton_python(
    model_dir: Annotated[Path, typer.Option(help="A model of the ONNX-layout repository, e.g. "
                                                 "model_repository/colbert.")],
    out: Annotated[Path, typer.Option(help="The CPU repository to write into (the model goes to OUT/<name>).")],
    version: Annotated[list[int] | None, typer.Option(min=1, help="Versions to copy (repeat; default all).")] = None,
    instances: Annotated[int, typer.Option(min=1, help="Model instances (instance group count, KIND_CPU).")] = 1,
    intra_op_threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime intra-op threads per instance.")] = 1,
    max_queue_delay_us: Annotated[int, typer.Option(min=0, help="Dynamic batching max queue delay.")] = 500,
    force: Annotated[bool, typer.Option(help="Replace OUT/<name> if it exists.")] = False,
) -> None:
    """Write the CPU variant of a model: Triton's Python backend running each version's ONNX graph with ONNX
    Runtime (config.pbtxt with backend "python", the same tensors; <version>/model.py). For `relevance triton
    serve`; the ONNX layout stays the repository for a GPU / NGC Triton. The last line printed is JSON."""
    from export.triton_python import PythonBackendOptions, TritonPythonError, write_python_variant

    try:
        options = PythonBackendOptions(instance_count=instances, intra_op_threads=intra_op_threads,
                                       max_queue_delay_us=max_queue_delay_us)
        summary = write_python_variant(model_dir, out, versions=version or None, options=options, force=force)
    except TritonPythonError as exc:
        raise fail(str(exc)) from None
    print(json.dumps(summary))


@export_app.command("calibrate")
def calibrate(
    version_dir: Annotated[Path, typer.Option(help="An exported version directory (serving.json), e.g. "
                                                   "model_repository/colbert/2.")],
    pairs: Annotated[Path, typer.Option(help="Held-out labelled pairs to fit on: the validation split.")],
    out: Annotated[Path | None, typer.Option(help="Folder for calibration.json and reliability.png.")] = None,
    blend: Annotated[float, typer.Option(min=1e-4, max=1.0, help="Share of the version's own probability kept "
                                                                  "(keeps the map strictly increasing).")] = 0.01,
) -> None:
    """Fit the version's calibration map (isotonic on its probability, blended) on PAIRS and store it in its
    serving.json; the gateway and `relevance evaluate` apply it. Last line: the record as JSON (expected
    calibration error before, out of fold and in sample; ROC-AUC before and after)."""
    from export.calibration import calibrate_version
    from relevance_core.data import PairsFileError
    from relevance_core.model_repository import SERVING_FILE, ModelRepositoryError

    if not (version_dir / SERVING_FILE).is_file():
        raise fail(f"--version-dir {str(version_dir)!r}: not an exported version directory (no {SERVING_FILE})")
    if not pairs.is_file():
        raise fail(f"--pairs {str(pairs)!r}: no such pairs file")
    try:
        record = calibrate_version(version_dir, pairs, blend=blend)
    except (ModelRepositoryError, PairsFileError) as exc:
        raise fail(str(exc)) from None
    if out is not None:
        from export.calibration import write_report

        write_report(out, record)
    print(json.dumps({k: v for k, v in record.items() if not k.startswith("reliability")}))


@export_app.command("tensorrt")
def tensorrt(
    onnx_model: Annotated[Path, typer.Option("--onnx", help="ONNX graph (fp32 or fp16 variant).")],
    out: Annotated[Path, typer.Option(help="Plan file to write (e.g. model.plan).")],
    max_batch: Annotated[int, typer.Option(min=1)] = 64,
    opt_batch: Annotated[int, typer.Option(min=1)] = 16,
    max_len: Annotated[int, typer.Option(min=1, help="Longest sequence the profile admits.")] = 48,
) -> None:
    """Build a TensorRT plan from an ONNX graph; needs TensorRT (gpu extra) and an NVIDIA GPU, else exits 3
    with the reason. The last line printed is JSON."""
    from export.tensorrt import PlanSettings, TensorRTUnavailableError, build_plan

    if not onnx_model.is_file():
        raise fail(f"--onnx {str(onnx_model)!r}: no such file")
    try:
        result = build_plan(onnx_model, out, PlanSettings(max_batch=max_batch, opt_batch=opt_batch, max_len=max_len))
    except TensorRTUnavailableError as exc:
        Console(stderr=True).print(f"[yellow]TensorRT unavailable:[/yellow] {exc}", highlight=False)
        raise typer.Exit(code=3) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    print(json.dumps(result))
