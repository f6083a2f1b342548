"""``relevance teacher evaluate-explanations``: the quality of the teacher's explanations (mode teacher,
`mkd.evaluation.explanations`) or of the gateway's explanations of its served decisions (mode decision,
`mkd.evaluation.faithfulness`)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from mkd.commands.args import CATALOGUE, Grounded, endpoint_arg, read_annotator, read_pairs
from relevance_core.console import fail
from relevance_core.data import Pair


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
    from mkd.evaluation.explanations import explain_pairs, references, write_outputs
    from relevance_core.teacher.openai_client import TeacherClient

    if mode not in ("teacher", "decision"):
        raise fail(f"--mode {mode!r}: expected teacher or decision")
    chosen = read_pairs([pairs], require_label=True)
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
    specs = [endpoint_arg(e) for e in endpoint]
    refs = references(chosen, read_annotator(catalogue))
    student_scores: list[float | None] = [None] * len(chosen)
    student_name = None
    if not no_student and student is not None:
        from mkd.scorers import RepositoryScorer
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
