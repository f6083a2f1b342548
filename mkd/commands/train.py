"""``relevance train``: MKD training of one student. torch is imported inside the command."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mkd.commands.args import TEST_PAIRS, TRAIN_PAIRS, VALID_PAIRS
from relevance_core.console import fail
from relevance_core.data import PairsFileError


class StudentFamily(StrEnum):
    colbert = "colbert"
    cross = "cross"
    sbert = "sbert"
    poly = "poly"


def train(
    student: Annotated[StudentFamily, typer.Option(help="Student family; colbert is the served model.")],
    teacher: Annotated[Path | None, typer.Option(
        help="Teacher JSONL (query, product_title, cot, p_good, p_bad, score): scores and CoTs for the labelled "
             "pairs, and the unlabeled pool. Without it: CE on the labels only (Table 4 'w/o MKD').")] = None,
    lambda_score: Annotated[float | None, typer.Option(
        min=0.0, help="λ1, score KL (default 1.0).")] = None,
    lambda_cot: Annotated[float | None, typer.Option(
        min=0.0, help="λ2, CoT distillation (default 0.1 cross-encoder, 0.01 two-tower).")] = None,
    lambda_ce: Annotated[float | None, typer.Option(min=0.0, help="λ3, cross-entropy (default 0.5).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training examples.")] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many optimizer steps.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Backbone learning rate (heads use --head-lr).")] = 5e-5,
    head_lr: Annotated[float, typer.Option(min=0.0, help="Learning rate of the heads and calibration.")] = 1e-3,
    temperature: Annotated[float, typer.Option(min=1e-3, help="Temperature of the score KL.")] = 2.0,
    train_pairs: Annotated[Path, typer.Option(help="Labelled training pairs TSV.")] = TRAIN_PAIRS,
    valid_pairs: Annotated[Path, typer.Option(help="Labelled validation pairs TSV.")] = VALID_PAIRS,
    backbone: Annotated[str, typer.Option(help="'all-MiniLM-L6-v2' or a Hugging Face model folder.")]
    = "all-MiniLM-L6-v2",
    seed: Annotated[int, typer.Option()] = 0,
    graded_weight: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Weight of the graded rating (relevance - 1)/2 in the CE target of labelled pairs "
                               "(0: the binary label; 0.5: half each).")] = 0.0,
    teacher_labelled: Annotated[bool, typer.Option(
        help="Distil the teacher's scores of labelled pairs too (--no-teacher-labelled: its scores of the "
             "unlabeled pool only, e.g. when it was trained on the labelled pairs; its CoTs serve every pair).")]
    = True,
    layers: Annotated[int | None, typer.Option(
        min=1, help="Keep only the backbone's first N layers (a smaller, faster student).")] = None,
    train_sample: Annotated[int | None, typer.Option(
        min=1, help="Use about N labelled train pairs, whole queries drawn with a fixed seed (default: all).")]
    = None,
    pool_sample: Annotated[int | None, typer.Option(
        min=0, help="Use about N pairs of the teacher file's unlabeled pool, whole queries drawn with a fixed "
                    "seed (default: the whole pool).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
    checkpoint_every: Annotated[int, typer.Option(
        min=0, help="Checkpoint into OUT/checkpoint every N steps and at each epoch's end (0: never).")] = 200,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint if there is one.")] = False,
    out: Annotated[Path | None, typer.Option(help="Output directory (default work/<student>).")] = None,
) -> None:
    """Train a student with MKD; keeps the best checkpoint (validation ROC-AUC) in OUT/best. The last line
    printed is one JSON object: the best epoch, its validation metrics and the checkpoint path."""
    from mkd.distill.losses import default_lambdas
    from mkd.distill.teacher_file import TeacherFileError
    from mkd.distill.train import RECORD_FILE
    from mkd.distill.train import train as run_training

    defaults = default_lambdas(student.value)
    lambdas = (lambda_score if lambda_score is not None else defaults[0],
               lambda_cot if lambda_cot is not None else defaults[1],
               lambda_ce if lambda_ce is not None else defaults[2])
    if not any(lambdas):
        raise fail("all of λ1, λ2, λ3 are 0: nothing to train")
    out = out or Path("work") / student.value
    try:
        record = run_training(student.value, train_pairs, valid_pairs, teacher, out_dir=out, lambdas=lambdas,
                              epochs=epochs, batch_size=batch_size, lr=lr, max_steps=max_steps, backbone=backbone,
                              head_lr=head_lr, temperature=temperature, seed=seed, graded_weight=graded_weight,
                              labelled_teacher=teacher_labelled, threads=threads, checkpoint_every=checkpoint_every,
                              layers=layers, train_sample=train_sample, pool_sample=pool_sample,
                              resume=resume, show_progress=True)
    except (PairsFileError, TeacherFileError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    best = record["best"]
    Console(stderr=True).print(f"record in {out / RECORD_FILE}, best checkpoint {best['checkpoint']}",
                               highlight=False)
    last = record["epochs"][best["epoch"] - 1]
    print(json.dumps({"student": student.value, "best_epoch": best["epoch"], "steps": record["epochs"][-1]["steps"],
                      "checkpoint": best["checkpoint"], "record": str(out / RECORD_FILE), **last["valid"]}))



def ablate(
    student: Annotated[StudentFamily, typer.Option(help="Student family.")],
    teacher: Annotated[Path, typer.Option(help="Teacher JSONL (labelled pairs and the unlabeled pool).")],
    out: Annotated[Path, typer.Option(help="Output directory: one folder per variant, ablation.{json,md,png}.")],
    train_pairs: Annotated[Path, typer.Option(help="Labelled training pairs TSV.")] = TRAIN_PAIRS,
    valid_pairs: Annotated[Path, typer.Option(help="Validation pairs (best checkpoint).")] = VALID_PAIRS,
    test_pairs: Annotated[Path, typer.Option(help="Test pairs (the table).")] = TEST_PAIRS,
    only: Annotated[list[str] | None, typer.Option(
        help="Run only these variants: full, no-score, no-cot, no-score-cot, label-only.")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(min=0.0)] = 5e-5,
    seed: Annotated[int, typer.Option()] = 0,
    teacher_labelled: Annotated[bool, typer.Option(
        help="Distil the teacher's scores of labelled pairs too (see `relevance train`).")] = True,
    train_sample: Annotated[int | None, typer.Option(min=1, help="About N labelled train pairs (by query).")]
    = None,
    pool_sample: Annotated[int | None, typer.Option(min=0, help="About N unlabeled pool pairs (by query).")]
    = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
    layers: Annotated[int | None, typer.Option(
        min=1, help="Keep only the backbone's first N layers (a smaller, faster student).")] = None,
) -> None:
    """Paper Table 4 for one student: full MKD, w/o score, w/o CoT, w/o both, w/o MKD, trained alike and scored on
    the test pairs. Resumable (finished variants are read back, a stopped one continues from its checkpoint).
    Last line: the table as JSON."""
    from mkd.distill.ablation import markdown, run_ablation
    from mkd.distill.teacher_file import TeacherFileError

    try:
        table = run_ablation(student.value, train_pairs=train_pairs, valid_pairs=valid_pairs, test_pairs=test_pairs,
                             teacher=teacher, out=out, only=only, epochs=epochs, max_steps=max_steps,
                             batch_size=batch_size, lr=lr, seed=seed, labelled_teacher=teacher_labelled,
                             train_sample=train_sample, pool_sample=pool_sample, threads=threads,
                             layers=layers)
    except (PairsFileError, TeacherFileError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    Console(stderr=True).print(markdown(table), highlight=False)
    print(json.dumps(table))
