"""SFT of ELLM-rele (paper §3.2.2): ``relevance teacher sft`` fine-tunes a causal LM on (P_LLM → CoT) from an
annotation file, with the loss on the CoT tokens (and the end-of-turn token) only.

LoRA (peft) by default, or full fine-tuning. The system prompt S is read through a KV cache
(`mkd.teacher.torch_teacher`): with LoRA it is the base model's encoding (adapter off), exactly as at inference;
with full fine-tuning S is re-encoded by the current weights every ``prefix_refresh`` steps, without gradient.
Either way a step costs the pair and the CoT, not the ~1,000 tokens of S.

The paper's recipe (Qwen2-7B, §4.3.1): full fine-tuning, global batch 256, AdamW (lr 1e-5, betas 0.9/0.999,
weight decay 0.01), 8,000 steps on 16 H20 GPUs in 10 hours. Pass ``--base /path/to/Qwen2-7B --full --lr 1e-5
--batch-size 256 --max-steps 8000 --device cuda`` on such a machine. The defaults here are for SmolLM2-135M on a
CPU: LoRA r=8 on every projection, lr 2e-4, batch 8; the adapter is saved in float16 (it is loaded
into a float32 model, which casts it back).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from mkd.jsonl import read_jsonl
from mkd.teacher.torch_teacher import END_OF_TURN, SMOLLM2, PrefixCache, load_base, pair_text, prefix_text
from relevance_core.provenance import git_commit, sha256_file

IGNORE = -100
CHECKPOINT_DIR = "checkpoint"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class AnnotationFileError(ValueError):
    """An annotation JSONL that cannot be used; the message names the file and the line."""


@dataclass
class SFTConfig:
    """The settings of an SFT run, as recorded."""

    base: str = SMOLLM2
    lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lr: float = 2e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.05
    batch_size: int = 8
    epochs: int = 1
    max_steps: int | None = None
    max_examples: int | None = None
    prefix_refresh: int = 1
    max_grad_norm: float = 1.0
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    balance: bool = False
    lora_targets: tuple[str, ...] = field(default_factory=lambda: LORA_TARGETS)


class Example(NamedTuple):
    """One SFT example: the pair, its CoT and whether the CoT's judgement is Good (None: not recorded)."""

    query: str
    title: str
    cot: str
    good: bool | None


def load_annotations(path: Path) -> list[Example]:
    """The rows of an annotation file that kept a label-consistent CoT."""
    examples = []
    for where, row in read_jsonl(path, AnnotationFileError):
        try:
            query, title, cot = row["query"], row["product_title"], row.get("cot")
        except KeyError as error:
            raise AnnotationFileError(f"{where}: not an annotation row ({error!r})") from None
        if cot:
            judgement = row.get("judgement")
            examples.append(Example(query, title, cot, None if judgement is None else judgement == "Good"))
    if not examples:
        raise AnnotationFileError(f"{path}: no row with a CoT")
    return examples


def balance(examples: list[Example], path: Path) -> list[Example]:
    """As many Good as Bad examples (the majority cut to the minority's count), alternating so that any prefix
    (``max_examples``, ``max_steps``) stays balanced; the order within each side is kept."""
    if any(e.good is None for e in examples):
        raise AnnotationFileError(f"{path}: balancing needs the 'judgement' of every row with a CoT")
    good = [e for e in examples if e.good]
    bad = [e for e in examples if not e.good]
    if not good or not bad:
        raise AnnotationFileError(f"{path}: balancing needs both Good and Bad CoTs "
                                  f"({len(good)} Good, {len(bad)} Bad)")
    return [e for pair in zip(good, bad, strict=False) for e in pair]


def _batch(tokenizer: Any, examples: list[Example], prefix_length: int,
           device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded pair + CoT ids with labels on the CoT and end-of-turn tokens only."""
    rows, labels = [], []
    end = tokenizer(END_OF_TURN, add_special_tokens=False)["input_ids"]
    for query, title, cot, _ in examples:
        prompt = tokenizer(pair_text(query, title), add_special_tokens=False)["input_ids"]
        target = tokenizer(cot, add_special_tokens=False)["input_ids"] + end
        rows.append(prompt + target)
        labels.append([IGNORE] * len(prompt) + target)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    label_ids = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        label_ids[i, : len(label)] = torch.tensor(label)
        mask[i, : len(row)] = 1
    positions = prefix_length + torch.arange(width).expand(len(rows), -1)
    full_mask = torch.cat([torch.ones((len(rows), prefix_length), dtype=torch.long), mask], dim=1)
    return {"input_ids": ids.to(device), "attention_mask": full_mask.to(device),
            "position_ids": positions.to(device), "labels": label_ids.to(device)}


def sft(annotations: Path, out_dir: Path, config: SFTConfig, *, show_progress: bool = True,
        checkpoint_every: int | None = None, resume: bool = False) -> dict[str, Any]:
    """Fine-tune; saves the adapter (LoRA) or the model (full) with its tokenizer in ``out_dir`` and returns the
    record written to ``out_dir/sft.json``. Every ``checkpoint_every`` steps the trainable weights, optimizer,
    schedule, losses and RNG state go to ``out_dir/checkpoint``; ``resume`` continues from there (the data order is
    fixed by the seed, so the run is the one that would have run uninterrupted; the thread count may change)."""
    started = time.time()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    examples = load_annotations(annotations)
    random.Random(config.seed).shuffle(examples)
    if config.balance:
        examples = balance(examples, annotations)
    if config.max_examples is not None:
        examples = examples[: config.max_examples]
    model, tokenizer = load_base(config.base)
    device = torch.device(config.device)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                 lora_dropout=config.lora_dropout,
                                                 target_modules=list(config.lora_targets), task_type="CAUSAL_LM"))
    model = model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = max(1, round(config.warmup_ratio * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    prefix_ids = prefix_text()
    model.eval()  # no dropout while encoding the prefix
    prefix = PrefixCache.encode(model, tokenizer, prefix_ids)
    losses: list[float] = []
    step, elapsed = 0, 0.0
    checkpoint = out_dir / CHECKPOINT_DIR / "state.pt"
    if resume and checkpoint.is_file():
        step, losses, elapsed = _restore(checkpoint, config, model, optimizer, scheduler)
    progress = tqdm(total=total, initial=step, desc="SFT", unit="step", disable=not show_progress,
                    mininterval=0.1 if sys.stderr.isatty() else 60.0)
    done = step
    while step < total:
        for start in range(0, len(examples), config.batch_size):
            if done > 0:  # resumed: skip the batches already trained on, in the same order
                done -= 1
                continue
            if not config.lora and step % config.prefix_refresh == 0 and step > 0:
                model.eval()
                prefix = PrefixCache.encode(model, tokenizer, prefix_ids)
            model.train()
            batch = _batch(tokenizer, examples[start : start + config.batch_size], prefix.length, device)
            cache = prefix.expand(batch["input_ids"].shape[0])
            output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           position_ids=batch["position_ids"], past_key_values=cache, use_cache=True)
            logits = output.logits[:, :-1].float()
            targets = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                     ignore_index=IGNORE)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"non-finite loss at step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss.item())
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}")
            if checkpoint_every and step % checkpoint_every == 0 and step < total:
                _save(checkpoint, config, model, optimizer, scheduler, step, losses,
                      elapsed + time.time() - started)
            if step >= total:
                break
    progress.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.lora:
        from peft import get_peft_model_state_dict

        half = {name: tensor.half() for name, tensor in get_peft_model_state_dict(model).items()}
        model.save_pretrained(out_dir, state_dict=half)
    else:
        model.save_pretrained(out_dir)
    if config.lora:  # the base is named as given ("smollm2" rather than the GGUF's folder on this machine)
        adapter_config = out_dir / "adapter_config.json"
        adapter_config.write_text(json.dumps(json.loads(adapter_config.read_text()) | {
            "base_model_name_or_path": config.base}, indent=2) + "\n", encoding="utf-8")
    else:
        tokenizer.save_pretrained(out_dir)
    window = max(1, len(losses) // 10)
    record = {
        "config": asdict(config),
        "data": {"annotations": str(annotations), "sha256": sha256_file(annotations), "examples": len(examples)},
        "steps": step,
        "examples_seen": min(step * config.batch_size, len(examples) * config.epochs),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "loss_first": sum(losses[:window]) / window,
        "loss_last": sum(losses[-window:]) / window,
        "losses": [round(v, 4) for v in losses],
        "prefix_tokens": prefix.length,
        "seconds": round(elapsed + time.time() - started, 1),
        "git_commit": git_commit(),
        "versions": {"torch": torch.__version__},
    }
    (out_dir / "sft.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _save(path: Path, config: SFTConfig, model: Any, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler, step: int, losses: list[float], seconds: float) -> None:
    """Write the resumable state atomically (a stopped save leaves the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    trainable = {name: tensor for name, tensor in model.state_dict().items() if name in names}
    state = {"config": asdict(config), "step": step, "losses": losses, "seconds": seconds, "model": trainable,
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": torch.get_rng_state()}
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def _restore(path: Path, config: SFTConfig, model: Any, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler) -> tuple[int, list[float], float]:
    """Load a checkpoint written by :func:`_save` for the same settings; returns (step, losses, seconds)."""
    state = torch.load(path, weights_only=False)
    saved = {k: v for k, v in state["config"].items() if k != "threads"}
    wanted = {k: v for k, v in asdict(config).items() if k != "threads"}
    if json.dumps(saved, sort_keys=True, default=str) != json.dumps(wanted, sort_keys=True, default=str):
        raise ValueError(f"{path}: the checkpoint was written with other settings; use another --out or drop "
                         "--resume")
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return state["step"], state["losses"], state["seconds"]
