"""``relevance teacher evaluate-explanations``: how far an analyst can trust ELLM-rele's explanations, measured on
human-rated pairs against one or more OpenAI-compatible teacher endpoints (the local llama.cpp server, vLLM).

Per endpoint, over the same pairs (asked one at a time, so the latencies are those of a lone request):

- **judgement**: ROC-AUC of the eq. 4 score against the human label (Good = relevance > 2; a pair without a score
  counts 0.5), accuracy of the written judgement (none written counts wrong), the share judged Good;
- **grounding**: the share of CoTs that parse with every value located — each requirement in the query, each item
  value in the title (`relevance_core.cot.parse` locates them); a value found in neither is *hallucinated*,
  counted by aspect with examples;
- **aspects against the annotator**: per aspect, precision and recall of the requirements and of the item values
  against the programmatic annotator's label-consistent CoT (`relevance_core.annotation`; pairs it has one for): a
  requirement is right when the reference has one of the same aspect on an overlapping span of the query, an item
  value when the reference has one of the same aspect on an overlapping span of the title with the same
  match/mismatch;
- **the served student**: agreement of the teacher's judgement with the student's label (score >= 0.5) and the
  Spearman correlation of their scores (the ColBERT of a model repository, scored with ONNX Runtime);
- **latency**: p50/p90/p99 of the client-observed call.

Output: ``results.jsonl`` (one row per pair and endpoint), ``report.json``, ``report.md`` and ``explanations.png``.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from mkd.evaluation.metrics import roc_auc
from mkd.evaluation.outputs import figure_rows, fmt, percentile, save_figure, write_report
from relevance_core.annotation import Annotator
from relevance_core.cot import Explanation, parse, render
from relevance_core.data import Pair
from relevance_core.teacher.openai_client import TeacherClient, TeacherError, TeacherResult

GOOD_AT = 0.5
"""A score at or above this is a Good label (the student's; the gateway's default ``good_threshold``)."""


@dataclass
class Outcome:
    """One pair as one endpoint explained it."""

    endpoint: str
    query: str
    title: str
    relevance: float
    good: bool
    cot: str | None = None
    judgement: str | None = None
    score: float | None = None
    parse_ok: bool = False
    located: bool = False
    hallucinated: list[dict[str, str]] = field(default_factory=list)
    latency_ms: float | None = None
    error: str | None = None
    student_score: float | None = None
    reference: str | None = None
    """The annotator's label-consistent CoT, when it has one."""


@dataclass
class _Counts:
    predicted: int = 0
    right: int = 0
    reference: int = 0
    found: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        return {"predicted": self.predicted, "reference": self.reference,
                "precision": self.right / self.predicted if self.predicted else None,
                "recall": self.found / self.reference if self.reference else None}


def _overlaps(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    return a is not None and b is not None and a[0] < b[1] and b[0] < a[1]


def grounding(explanation: Explanation) -> list[dict[str, str]]:
    """The values of ``explanation`` (parsed against its pair) located in neither the query nor the title."""
    missing = [{"side": "query", "aspect": r.aspect, "value": r.value}
               for r in explanation.query_requirements if r.span is None]
    return missing + [{"side": "title", "aspect": v.aspect, "value": v.value}
                      for v in explanation.item_values if v.span is None]


def compare_aspects(predicted: Explanation, reference: Explanation,
                    requirements: dict[str, _Counts], values: dict[str, _Counts]) -> None:
    """Add one pair's requirement and item-value counts, per aspect, to ``requirements`` and ``values``."""
    for r in predicted.query_requirements:
        requirements[r.aspect].predicted += 1
        requirements[r.aspect].right += any(g.aspect == r.aspect and _overlaps(g.span, r.span)
                                            for g in reference.query_requirements)
    for g in reference.query_requirements:
        requirements[g.aspect].reference += 1
        requirements[g.aspect].found += any(r.aspect == g.aspect and _overlaps(g.span, r.span)
                                            for r in predicted.query_requirements)
    for v in predicted.item_values:
        values[v.aspect].predicted += 1
        values[v.aspect].right += any(g.aspect == v.aspect and g.matches == v.matches and _overlaps(g.span, v.span)
                                      for g in reference.item_values)
    for g in reference.item_values:
        values[g.aspect].reference += 1
        values[g.aspect].found += any(v.aspect == g.aspect and g.matches == v.matches and _overlaps(g.span, v.span)
                                      for v in predicted.item_values)



def summarise(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The metrics of one endpoint's outcomes (see the module docstring)."""
    good = np.array([o.good for o in outcomes], dtype=bool)
    scores = np.array([o.score if o.score is not None else 0.5 for o in outcomes], dtype=np.float64)
    answered = [o for o in outcomes if o.error is None]
    hallucinated = [h for o in outcomes for h in o.hallucinated]
    requirements: dict[str, _Counts] = defaultdict(_Counts)
    values: dict[str, _Counts] = defaultdict(_Counts)
    compared = 0
    for o in outcomes:
        if o.reference is None or o.cot is None:
            continue
        mine = parse(o.cot, o.query, o.title).explanation
        theirs = parse(o.reference, o.query, o.title).explanation
        if mine is None or theirs is None:
            continue
        compared += 1
        compare_aspects(mine, theirs, requirements, values)
    with_student = [o for o in outcomes if o.student_score is not None and o.score is not None]
    student: dict[str, Any] = {"pairs": len(with_student)}
    if with_student:
        agree = [(o.judgement == "Good") == (o.student_score >= GOOD_AT) for o in with_student]  # type: ignore[operator]
        rho = spearmanr([o.score for o in with_student], [o.student_score for o in with_student]).statistic
        student |= {"agreement": float(np.mean(agree)),
                    "spearman": None if np.isnan(rho) else float(rho),
                    "student_roc_auc": roc_auc(np.array([o.good for o in with_student]),
                                               np.array([o.student_score for o in with_student]))}
    latencies = [o.latency_ms for o in answered if o.latency_ms is not None]
    n = len(outcomes)
    return {
        "pairs": n,
        "answered": len(answered),
        "scored": sum(o.score is not None for o in outcomes),
        "errors": Counter(o.error.split(":")[0] for o in outcomes if o.error).most_common(5),
        "judgement": {
            "roc_auc": roc_auc(good, scores),
            "accuracy": float(np.mean([o.judgement == ("Good" if o.good else "Bad") for o in outcomes])) if n else None,
            "judged_good": float(np.mean([o.judgement == "Good" for o in outcomes])) if n else None,
            "human_good": float(good.mean()) if n else None,
        },
        "grounding": {
            "parse_ok": float(np.mean([o.parse_ok for o in outcomes])) if n else None,
            "fully_located": float(np.mean([o.located for o in outcomes])) if n else None,
            "cots_with_hallucinations": sum(bool(o.hallucinated) for o in outcomes),
            "hallucinated_values": len(hallucinated),
            "hallucinated_by_aspect": dict(Counter(f"{h['side']}: {h['aspect']}" for h in hallucinated)
                                           .most_common()),
            "examples": [{"query": o.query, "title": o.title, "value": h} for o in outcomes
                         for h in o.hallucinated][:8],
        },
        "aspects": {"pairs_compared": compared,
                    "requirements": {a: c.as_dict() for a, c in sorted(requirements.items())},
                    "item_values": {a: c.as_dict() for a, c in sorted(values.items())},
                    "requirements_all": _total(requirements.values()).as_dict(),
                    "item_values_all": _total(values.values()).as_dict()},
        "student": student,
        "latency_ms": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                       "p99": percentile(latencies, 99), "mean": float(np.mean(latencies)) if latencies else None},
    }


def _total(counts: Sequence[_Counts] | Any) -> _Counts:
    total = _Counts()
    for c in counts:
        total.predicted += c.predicted
        total.right += c.right
        total.reference += c.reference
        total.found += c.found
    return total


def outcome_of(endpoint: str, pair: Pair, result: TeacherResult) -> Outcome:
    explanation = result.parsed.explanation
    missing = grounding(explanation) if explanation is not None else []
    return Outcome(endpoint=endpoint, query=pair.query, title=pair.product_title, relevance=float(pair.relevance or 0),
                   good=pair.good, cot=result.cot, judgement=result.judgement, score=result.score,
                   parse_ok=result.parsed.ok, located=result.parsed.ok and not missing, hallucinated=missing,
                   latency_ms=result.latency_ms)


async def explain_pairs(pairs: Sequence[Pair], name: str, client: TeacherClient, *, concurrency: int = 1,
                        progress: bool = True) -> list[Outcome]:
    """Every pair through ``client``; a pair the endpoint failed on keeps its error."""
    limit = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(pairs), desc=f"explaining ({name})", unit="pair", disable=not progress)

    async def one(pair: Pair) -> Outcome:
        async with limit:
            try:
                return outcome_of(name, pair, await client.judge(pair.query, pair.product_title))
            except TeacherError as error:
                return Outcome(endpoint=name, query=pair.query, title=pair.product_title,
                               relevance=float(pair.relevance or 0), good=pair.good,
                               error=f"{type(error).__name__}: {error}")
            finally:
                bar.update()

    try:
        return list(await asyncio.gather(*(one(p) for p in pairs)))
    finally:
        bar.close()


def references(pairs: Sequence[Pair], annotator: Annotator) -> list[str | None]:
    """The annotator's label-consistent CoT of each pair (None where no route agrees with the label)."""
    out: list[str | None] = []
    for pair in pairs:
        annotated = annotator.annotate(pair.query, pair.product_title, pair.good)
        out.append(None if annotated is None else render(annotated[1]))
    return out



def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per endpoint, then per-aspect tables and hallucination examples."""
    lines = [f"# Explanation quality: {report['pairs_file']}", "",
             f"{report['pairs']} pairs ({report['queries']} queries; {report['sample']}). Reference CoTs from the "
             f"programmatic annotator for {report['with_reference']} of them. Student: {report['student'] or 'none'}. "
             f"Decoding: {report.get('decoding', 'free')}.",
             "", "| endpoint | ROC-AUC | accuracy | judged Good | parse ok | fully located | hallucinated values "
             "| req. P / R | item P / R | student agreement | Spearman | p50 ms | p99 ms | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in report["endpoints"].items():
        j, g, a, st, lat = s["judgement"], s["grounding"], s["aspects"], s["student"], s["latency_ms"]
        lines.append(
            f"| {name} | {fmt(j['roc_auc'])} | {fmt(j['accuracy'])} | {fmt(j['judged_good'])} | "
            f"{fmt(g['parse_ok'])} | {fmt(g['fully_located'])} | {g['hallucinated_values']} "
            f"({g['cots_with_hallucinations']} CoTs) | {fmt(a['requirements_all']['precision'])} / "
            f"{fmt(a['requirements_all']['recall'])} | {fmt(a['item_values_all']['precision'])} / "
            f"{fmt(a['item_values_all']['recall'])} | {fmt(st.get('agreement'))} | {fmt(st.get('spearman'))} | "
            f"{fmt(lat['p50'], 0)} | {fmt(lat['p99'], 0)} | {s['pairs'] - s['answered']} |")
    lines.append(f"\nHuman label Good: {fmt(next(iter(report['endpoints'].values()))['judgement']['human_good'])} "
                 "of the pairs." if report["endpoints"] else "")
    for name, s in report["endpoints"].items():
        lines += ["", f"## {name}: aspects against the annotator ({s['aspects']['pairs_compared']} pairs)", "",
                  "| aspect | requirements P | R | (pred / ref) | item values P | R | (pred / ref) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        aspects = sorted(set(s["aspects"]["requirements"]) | set(s["aspects"]["item_values"]))
        empty = {"precision": None, "recall": None, "predicted": 0, "reference": 0}
        for aspect in aspects:
            r = s["aspects"]["requirements"].get(aspect, empty)
            v = s["aspects"]["item_values"].get(aspect, empty)
            lines.append(f"| {aspect} | {fmt(r['precision'])} | {fmt(r['recall'])} | {r['predicted']} / "
                         f"{r['reference']} | {fmt(v['precision'])} | {fmt(v['recall'])} | {v['predicted']} / "
                         f"{v['reference']} |")
        g = s["grounding"]
        if g["hallucinated_by_aspect"]:
            lines += ["", "Hallucinated values by side and aspect: " + ", ".join(
                f"{k} {n}" for k, n in g["hallucinated_by_aspect"].items()) + ". Examples:", ""]
            lines += [f"- \"{e['query']}\" vs \"{e['title']}\": {e['value']['aspect']} "
                      f"{'requirement' if e['value']['side'] == 'query' else 'value'} \"{e['value']['value']}\""
                      for e in g["examples"]]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(out: Path, outcomes: Mapping[str, Sequence[Outcome]]) -> Path:
    """Per endpoint: the teacher's score by human label, and the teacher's score against the student's."""
    fig, axes = figure_rows(len(outcomes))
    for row, (name, rows) in enumerate(outcomes.items()):
        left, right = axes[row]
        bins = np.linspace(0, 1, 21)
        for label, colour in ((True, "tab:green"), (False, "tab:red")):
            scores = [o.score for o in rows if o.score is not None and o.good == label]
            left.hist(scores, bins=bins, alpha=0.6, color=colour, label=f"human {'Good' if label else 'Bad'} "
                                                                          f"(n={len(scores)})")
        left.set(title=f"{name}: teacher score (eq. 4) by human label", xlabel="teacher score", ylabel="pairs")
        left.legend()
        both = [o for o in rows if o.score is not None and o.student_score is not None]
        right.scatter([o.student_score for o in both], [o.score for o in both], s=10, alpha=0.6,
                      c=["tab:green" if o.good else "tab:red" for o in both])
        right.set(title=f"{name}: teacher vs served student (colour: human label)", xlabel="student score",
                  ylabel="teacher score", xlim=(0, 1), ylim=(0, 1))
    return save_figure(fig, out / "explanations.png")


def write_outputs(out: Path, outcomes: Mapping[str, Sequence[Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """results.jsonl, report.json, report.md and the plot; returns the report."""
    return write_report(out, outcomes, meta, "endpoints", summarise=summarise, markdown=markdown, plot=plot)
