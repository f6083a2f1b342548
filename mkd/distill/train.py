"""MKD training of one student: L = λ1·L_score + λ2·L_cot + λ3·CE over the labelled training pairs and,
with a teacher file, the teacher-scored unlabeled pool (paper §3.3, §4.3.2).

AdamW with linear warm-up and linear decay; the backbone at ``lr``, the heads (calibration, projection, codes,
classifier, tagger, CRF) at ``head_lr``, since a calibration scale initialised at 10 barely moves at a backbone
learning rate. Validation ROC-AUC after every epoch (and when ``max_steps`` ends one early); the best checkpoint
is kept in ``out_dir/best`` and the record of the run in ``out_dir/training.json``.

Long runs checkpoint every ``checkpoint_every`` steps and at each epoch's end into ``out_dir/checkpoint`` (the
student, optimizer, schedule, position in the epoch, the record so far), written to a temporary folder and renamed,
so a stopped run resumes with ``resume=True`` where its last checkpoint left it. Each epoch's example order is a
permutation seeded by (seed, epoch), so a resumed epoch skips exactly the batches already trained on.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm
from transformers import PretrainedConfig

from mkd.distill.losses import default_lambdas, mkd_loss
from mkd.distill.teacher_file import build_examples, load_teacher
from mkd.evaluation.metrics import compute_metrics
from mkd.students import Family, Student, StudentCollator, build_student
from mkd.students.config import DEFAULT_BACKBONE
from mkd.students.scoring import predict_p_good
from relevance_core.data import Pair, load_pairs
from relevance_core.provenance import git_commit, sha256_file

RECORD_FILE = "training.json"
BEST_DIR = "best"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"


@dataclass
class TrainConfig:
    """The settings of a run, as recorded."""

    family: Family
    backbone: str = DEFAULT_BACKBONE
    lambdas: tuple[float, float, float] | None = None
    temperature: float = 2.0
    hard_label_from_teacher: bool = True
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    eval_batch_size: int = 256
    seed: int = 0
    threads: int = 2
    graded_weight: float = 0.0
    """Weight of the graded rating (relevance - 1)/2 in the CE target of labelled pairs (0: the binary label)."""
    labelled_teacher: bool = True
    """Distil the teacher's scores of labelled pairs too (False: its scores of pool pairs only; CoTs always)."""
    checkpoint_every: int = 200
    train_sample: int | None = None
    """Use about this many labelled train pairs, whole queries drawn with a fixed seed (None: all)."""
    pool_sample: int | None = None
    """Use about this many unlabeled pool pairs, whole queries drawn with a fixed seed (None: the whole pool)."""
    layers: int | None = None
    """Keep only the backbone's first N transformer layers (a smaller student); None: all."""
    student_options: dict[str, Any] = field(default_factory=dict)

    def resolved_lambdas(self) -> tuple[float, float, float]:
        return self.lambdas if self.lambdas is not None else default_lambdas(self.family)


def _file_record(path: Path, rows: int) -> dict[str, Any]:
    return {"path": str(path), "sha256": sha256_file(path), "rows": rows}


def _optimizer(student: Student, config: TrainConfig, total_steps: int,
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    backbone = [p for p in student.encoder.parameters() if p.requires_grad]
    backbone_ids = {id(p) for p in backbone}
    heads = [p for p in student.parameters() if p.requires_grad and id(p) not in backbone_ids]
    optimizer = torch.optim.AdamW([
        {"params": backbone, "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": heads, "lr": config.head_lr, "weight_decay": 0.0},
    ])
    warmup = max(1, round(config.warmup_ratio * total_steps))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


class EpochOrder(Sampler[int]):
    """The example order of one epoch, a permutation seeded by (seed, epoch), from ``start`` on (a resumed epoch
    skips the examples already trained on)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):  # type: ignore[no-untyped-def]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(self.size, generator=generator)[self.start:].tolist()

    def __len__(self) -> int:
        return self.size - self.start


def _run_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint: all but those that do not change what is
    learnt (threads, checkpoint interval), which a resume may change."""
    return {k: v for k, v in config.items() if k not in ("threads", "checkpoint_every")}


def _save_checkpoint(out: Path, student: Student, state: dict[str, Any]) -> None:
    """Write ``out/checkpoint`` atomically: a temporary folder, then a rename over the previous one."""
    temporary, final = out / f"{CHECKPOINT_DIR}.tmp", out / CHECKPOINT_DIR
    shutil.rmtree(temporary, ignore_errors=True)
    student.save_pretrained(temporary / "student")
    torch.save(state, temporary / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    temporary.rename(final)


def validate(student: Student, pairs: list[Pair], batch_size: int) -> dict[str, Any]:
    scores = predict_p_good(student, [(p.query, p.product_title) for p in pairs], batch_size=batch_size)
    ratings = [p.relevance for p in pairs]
    return compute_metrics([p.query for p in pairs], ratings, scores)  # type: ignore[arg-type]


def train(student_family: Family, train_pairs: str | os.PathLike[str], valid_pairs: str | os.PathLike[str],
          teacher_jsonl: str | os.PathLike[str] | None = None, *, out_dir: str | os.PathLike[str],
          lambdas: tuple[float, float, float] | None = None, epochs: int = 1, batch_size: int = 32,
          lr: float = 5e-5, max_steps: int | None = None, backbone: str | PretrainedConfig = DEFAULT_BACKBONE,
          tokenizer: Any = None, show_progress: bool = True, resume: bool = False, **settings: Any,
          ) -> dict[str, Any]:
    """Train a student of ``student_family`` with MKD; returns the training record (also written to
    ``out_dir/training.json``). ``lambdas`` default to the paper's for the family; ``settings`` are further
    :class:`TrainConfig` fields. ``backbone`` may be an architecture config with ``tokenizer`` (tests).
    ``resume``: continue from ``out_dir/checkpoint`` when there is one (same settings and data files; the thread
    count and checkpoint interval may change)."""
    started = time.time()
    backbone_name = backbone if isinstance(backbone, str) else f"random-init {backbone.model_type}"
    config = TrainConfig(family=student_family, backbone=backbone_name, lambdas=lambdas, epochs=epochs,
                         batch_size=batch_size, lr=lr, max_steps=max_steps, **settings)
    if config.epochs < 1 or config.batch_size < 1 or (config.max_steps is not None and config.max_steps < 1):
        raise ValueError("epochs, batch_size and max_steps must be positive")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    train_path, valid_path = Path(train_pairs), Path(valid_pairs)
    train_rows, valid_rows = load_pairs(train_path), load_pairs(valid_path)
    data: dict[str, Any] = {"train": _file_record(train_path, len(train_rows)),
                            "valid": _file_record(valid_path, len(valid_rows))}
    teacher_rows = []
    if teacher_jsonl is not None:
        teacher_rows = load_teacher(teacher_jsonl)
        data["teacher"] = _file_record(Path(teacher_jsonl), len(teacher_rows))
    examples, join = build_examples(train_rows, teacher_rows, held_out_queries={p.query for p in valid_rows},
                                    graded_weight=config.graded_weight, labelled_teacher=config.labelled_teacher,
                                    train_sample=config.train_sample, pool_sample=config.pool_sample)

    checkpoint = out / CHECKPOINT_DIR
    saved: dict[str, Any] | None = None
    if resume and (checkpoint / STATE_FILE).is_file():
        saved = torch.load(checkpoint / STATE_FILE, weights_only=False)
        student = Student.load(checkpoint / "student")
    else:
        student = build_student(student_family, backbone, tokenizer=tokenizer, layers=config.layers,
                                **config.student_options)
    collate = StudentCollator(student.tokenizer, student.config)
    order = EpochOrder(len(examples), config.seed)
    # a generator of its own, so the loader's seed draw does not move the global RNG (dropout), which a
    # checkpoint restores: a resumed run then trains exactly as an uninterrupted one
    loader = DataLoader(examples, batch_size=config.batch_size, sampler=order, collate_fn=collate,  # type: ignore[arg-type]
                        generator=torch.Generator().manual_seed(config.seed))
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    optimizer, scheduler = _optimizer(student, config, total_steps)
    lambdas_used = config.resolved_lambdas()

    record: dict[str, Any] = {
        "config": {**asdict(config), "lambdas": list(lambdas_used)},
        "student": student.config.to_dict(),
        "data": data,
        "examples": {**asdict(join), "total": len(examples)},
        "total_steps": total_steps,
        "git_commit": git_commit(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "epochs": [],
        "best": None,
    }
    step, first_epoch, epoch_start_step, best_auc, sums = 0, 1, 0, -math.inf, {}
    if saved is not None:
        if _run_settings(saved["record"]["config"]) != _run_settings(record["config"]) \
                or saved["record"]["data"] != record["data"]:
            raise ValueError(f"{checkpoint}: the checkpoint was written by a run with other settings or data; "
                             "use another --out or start over without --resume")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        step, first_epoch, epoch_start_step = saved["step"], saved["epoch"], saved["step_in_epoch"]
        best_auc, sums = saved["best_auc"], saved["sums"]
        record["epochs"], record["best"] = saved["record"]["epochs"], saved["record"]["best"]
        record["resumed"] = [*saved["record"].get("resumed", []), {"at_step": step, "time": time.time()}]

    def save(epoch: int, step_in_epoch: int) -> None:
        _save_checkpoint(out, student, {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "step": step, "epoch": epoch, "step_in_epoch": step_in_epoch, "best_auc": best_auc, "sums": sums,
            "record": record})

    # on a terminal the bar redraws continuously; in a log file, one line a minute
    progress = tqdm(total=total_steps, initial=step, desc=f"MKD {student_family}", unit="step",
                    disable=not show_progress, mininterval=0.1 if sys.stderr.isatty() else 60.0)
    for epoch in range(first_epoch, config.epochs + 1):
        if step >= total_steps:
            break
        student.train()
        start_in_epoch = epoch_start_step if epoch == first_epoch else 0
        if start_in_epoch == 0:
            sums = {}
        order.set_epoch(epoch, start_in_epoch * config.batch_size)
        epoch_started, epoch_steps = time.time(), start_in_epoch
        for batch in loader:
            output = student(batch)
            loss, parts = mkd_loss(output, batch, lambdas_used, config.temperature,
                                   hard_label_from_teacher=config.hard_label_from_teacher)
            if not math.isfinite(parts["total"]):
                raise FloatingPointError(f"non-finite loss at step {step + 1}: {parts}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            epoch_steps += 1
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value
            progress.update(1)
            progress.set_postfix(loss=f"{parts['total']:.4f}", epoch=epoch, refresh=False)
            if step >= total_steps:
                break
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save(epoch, epoch_steps)
        metrics = validate(student, valid_rows, config.eval_batch_size)
        auc = metrics["roc_auc"]
        entry = {"epoch": epoch, "steps": step, "seconds": round(time.time() - epoch_started, 2),
                 "train_loss": {name: value / max(1, epoch_steps) for name, value in sums.items()},
                 "valid": metrics}
        record["epochs"].append(entry)
        score = auc if auc is not None else -math.inf
        if record["best"] is None or score > best_auc:
            best_auc = score
            student.save_pretrained(out / BEST_DIR)
            record["best"] = {"epoch": epoch, "step": step, "roc_auc": auc, "checkpoint": str(out / BEST_DIR)}
        progress.write(f"epoch {epoch}: steps {step}, loss {entry['train_loss'].get('total', math.nan):.4f}, "
                       f"valid ROC-AUC {'n/a' if auc is None else f'{auc:.4f}'}")
        if config.checkpoint_every:
            save(epoch + 1, 0)
    progress.close()
    record["seconds"] = round(time.time() - started, 2)
    (out / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
