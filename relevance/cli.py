"""``relevance``: the one console script. Subcommands are grouped by flow; heavy libraries are imported inside
the commands so that ``relevance --help`` stays fast and the serving path never pulls in torch.

The serving image installs the gateway only (``relevance_core`` and ``service``, see the Dockerfile): there the
offline groups (``mkd``, ``export``, ``loadtest``) are absent and ``relevance`` offers ``serve`` alone."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from service.cli import serve
from service.triton_cli import triton_app

OFFLINE_PACKAGES = ("mkd", "export", "loadtest")

app = typer.Typer(
    name="relevance",
    help="Explainable, LLM-distilled relevance for e-commerce search (ELLM-rele + MKD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"relevance {version('relevance')}")
        raise typer.Exit()


@app.callback()
def main(show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                    help="Print the version and exit.")] = False) -> None:
    """The options before any command."""


app.command("serve", help="Run the scoring gateway: REST (/v1/score, /v1/rerank, /v1/explain, /v1/items) and "
            "gRPC, with Prometheus metrics.")(serve)
app.add_typer(triton_app, name="triton", help="A local Triton (the nvidia-pytriton wheel's tritonserver) on a CPU "
              "repository (relevance export triton-python).")


def _add_offline_commands() -> None:
    """The data, teacher, training, export, index and load-test commands, where their packages are installed."""
    from export.cli import export_app
    from export.index_cli import index
    from loadtest.cli import bench, loadtest_app
    from mkd.commands.annotate import annotate
    from mkd.commands.committee import committee_app
    from mkd.commands.cot import cot_app
    from mkd.commands.data import data_app
    from mkd.commands.evaluate import evaluate
    from mkd.commands.explanations import evaluate_explanations
    from mkd.commands.teacher import teacher_app
    from mkd.commands.train import ablate, train

    app.add_typer(data_app, name="data", help="Offline data flow: splits by query, catalogue, unlabeled BM25 pool.")
    app.add_typer(cot_app, name="cot", help="The CoT grammar: parse and render ELLM-rele explanations.")
    teacher_app.command("annotate")(annotate)
    teacher_app.command("evaluate-explanations")(evaluate_explanations)
    teacher_app.add_typer(committee_app, name="committee", help="The release teacher: a committee of trained models "
                          "combined on the validation split; its MKD teacher file and the compact scores copy.")
    app.add_typer(teacher_app, name="teacher", help="The teachers: ELLM-rele (CoT annotation, SFT, labelling, "
                  "serving, explanation quality) and the release committee.")
    app.add_typer(export_app, name="export", help="Students to ONNX (fp32/fp16/int8), a Triton model repository, "
                  "TensorRT plans.")
    app.command("train", help="Train a student (colbert|cross|sbert|poly) with the MKD losses; label-only without "
                "--teacher.")(train)
    app.command("ablate", help="MKD ablations (paper Table 4) of one student: trained alike, scored on the test "
                "split, one table.")(ablate)
    app.command("index", help="Encode catalogue titles into the item store (Redis or local), resumable.")(index)
    app.command("bench", help="Closed-loop latency benchmark of a running gateway's /v1/score (cached and uncached "
                "items).")(bench)
    app.add_typer(loadtest_app, name="loadtest", help="Open-loop load test of the gateway or any /rerank server "
                  "(fixed rate or step mode to saturation), and the side-by-side comparison (compare).")
    app.command("evaluate", help="Score a labelled pairs TSV with a model and report ROC-AUC, Neg PR-AUC, NDCG@10.")(
        evaluate
    )


try:
    _add_offline_commands()
except ModuleNotFoundError as missing:
    if (missing.name or "").split(".")[0] not in OFFLINE_PACKAGES:
        raise

if __name__ == "__main__":
    app()
