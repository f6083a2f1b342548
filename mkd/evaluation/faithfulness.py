"""``relevance teacher evaluate-explanations --mode decision``: do the gateway's explanations of the served decision
explain it? Measured through a running gateway, per writer, on human-rated pairs:

- **faithfulness** (counterfactual): the edit each explanation implies (`service.explain.decision.implied_edit`,
  read off the CoT text as an analyst reads it) is applied to the title and the edited title is scored by the same
  served student: for a Good verdict the cited matching title values are removed and the score must drop, for a
  Bad verdict the unmet query values are added in front of the title and the score must rise, by at least
  ``min_delta`` (0.05). An explanation that cites nothing to edit is *untestable* and counts as unfaithful;
- **the random-span baseline**: the same edit size at random: for Good, as many contiguous title words removed at
  a random place; for Bad, as many words added, taken from a random other title of the sample. Faithfulness well
  above the baseline means the explanation picks the words the decision rests on, not just any words;
- **agreement**: the CoT's judgement against the student's verdict scored independently (/v1/rerank of the title);
- **grounding**: the share of CoTs that parse, and of those with every value located in the query or title;
- **latency**: p50/p99 of the explain call as the client sees it (one request at a time);
- **judgement ROC-AUC**: the student's score against the human label (verdicts agree by construction).

Output: ``results.jsonl``, ``report.json``, ``report.md``, ``faithfulness.png``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from mkd.evaluation.metrics import roc_auc
from mkd.evaluation.outputs import figure_rows, fmt, percentile, save_figure, write_report
from relevance_core.cot import Explanation, parse
from relevance_core.data import Pair
from service.explain.decision import Edit, implied_edit
from service.explain.reading import words

MIN_DELTA = 0.05


@dataclass
class DecisionOutcome:
    """One pair as one writer explained it, with the counterfactual and the random-span baseline."""

    writer: str
    query: str
    title: str
    good: bool
    verdict: str | None = None
    judgement: str | None = None
    score: float | None = None
    rescored: float | None = None
    cot: str | None = None
    parse_ok: bool = False
    located: bool = False
    edit: str | None = None
    edit_values: list[str] | None = None
    edited_score: float | None = None
    faithful: bool = False
    random_values: list[str] | None = None
    random_score: float | None = None
    random_faithful: bool = False
    latency_ms: float | None = None
    error: str | None = None


def random_edit(edit: Edit, title: str, others: Sequence[str], rng: random.Random) -> Edit:
    """An edit of ``edit``'s size at random: for remove, as many contiguous words of ``title`` at a random place;
    for add, as many contiguous words of a random title of ``others``."""
    size = sum(len(v.split()) for v in edit.values)
    source = [title[s:e] for s, e in words(title)] if edit.kind == "remove" else rng.choice(others).split()
    size = min(size, len(source))
    start = rng.randrange(len(source) - size + 1)
    return Edit(edit.kind, (" ".join(source[start:start + size]),))


def moved(kind: str, before: float, after: float, min_delta: float = MIN_DELTA) -> bool:
    """Whether ``after`` moved from ``before`` the way an edit of ``kind`` implies, by at least ``min_delta``."""
    return after <= before - min_delta if kind == "remove" else after >= before + min_delta


class Gateway:
    """The few calls the evaluation makes to a running gateway."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def explain(self, query: str, title: str, writer: str) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        response = self.http.post("/v1/explain", json={"query": query, "title": title, "mode": "decision",
                                                       "writer": writer})
        latency_ms = (time.perf_counter() - started) * 1000.0
        if response.status_code != 200:
            raise RuntimeError(f"/v1/explain answered {response.status_code}: {response.text[:200]}")
        return response.json(), latency_ms

    def scores(self, query: str, titles: Sequence[str]) -> list[float]:
        """The served student's scores of ``titles`` for ``query`` (rerank: from the titles, no store)."""
        response = self.http.post("/v1/rerank", json={"query": query, "documents": list(titles)})
        if response.status_code != 200:
            raise RuntimeError(f"/v1/rerank answered {response.status_code}: {response.text[:200]}")
        out = [0.0] * len(titles)
        for result in response.json()["results"]:
            out[result["index"]] = result["relevance_score"]
        return out

    def close(self) -> None:
        self.http.close()


def evaluate_writer(gateway: Gateway, pairs: Sequence[Pair], writer: str, *, seed: int = 0,
                    min_delta: float = MIN_DELTA, progress: bool = True) -> list[DecisionOutcome]:
    """Every pair explained by ``writer`` through the gateway, its implied edit and a random one scored."""
    rng = random.Random(seed)
    titles = [p.product_title for p in pairs]
    outcomes = []
    for pair in tqdm(pairs, desc=f"explaining ({writer})", unit="pair", disable=not progress):
        outcome = DecisionOutcome(writer=writer, query=pair.query, title=pair.product_title, good=pair.good)
        outcomes.append(outcome)
        try:
            body, outcome.latency_ms = gateway.explain(pair.query, pair.product_title, writer)
        except (RuntimeError, httpx.HTTPError) as exc:
            outcome.error = str(exc)
            continue
        outcome.verdict, outcome.score, outcome.cot = body["verdict"], body["score"], body["cot"]
        parsed = parse(body["cot"], pair.query, pair.product_title)
        explanation: Explanation | None = parsed.explanation
        outcome.parse_ok = parsed.ok
        outcome.judgement = explanation.judgement if explanation else None
        outcome.located = parsed.ok and explanation is not None and all(
            v.span is not None for v in [*explanation.query_requirements, *explanation.item_values])
        edit = implied_edit(explanation) if explanation is not None else None
        baseline = None
        others = [t for t in titles if t != pair.product_title] or titles
        if edit is not None:
            baseline = random_edit(edit, pair.product_title, others, rng)
            outcome.edit, outcome.edit_values = edit.kind, list(edit.values)
            outcome.random_values = list(baseline.values)
        edited = [e.apply(pair.product_title) for e in (edit, baseline) if e is not None]
        try:
            scored = gateway.scores(pair.query, [pair.product_title, *edited])
        except (RuntimeError, httpx.HTTPError) as exc:
            outcome.error = str(exc)
            continue
        outcome.rescored = scored[0]
        if edit is not None and baseline is not None and outcome.score is not None:
            outcome.edited_score, outcome.random_score = scored[1], scored[2]
            outcome.faithful = moved(edit.kind, outcome.score, scored[1], min_delta)
            outcome.random_faithful = moved(edit.kind, outcome.score, scored[2], min_delta)
    return outcomes


def _share(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None



def summarise(outcomes: Sequence[DecisionOutcome], good_threshold: float = 0.5) -> dict[str, Any]:
    """One writer's figures (see the module docstring)."""
    answered = [o for o in outcomes if o.error is None]
    per_verdict: dict[str, dict[str, Any]] = {}
    for verdict in ("Good", "Bad"):
        rows = [o for o in answered if o.verdict == verdict]
        per_verdict[verdict] = {
            "pairs": len(rows), "faithfulness": _share([o.faithful for o in rows]),
            "random_baseline": _share([o.random_faithful for o in rows]),
            "testable": _share([o.edit is not None for o in rows]),
            "mean_delta": float(np.mean([o.edited_score - o.score for o in rows
                                         if o.edited_score is not None and o.score is not None])) if rows else None}
    served = [(o, o.rescored) for o in answered if o.rescored is not None]
    latencies = [o.latency_ms for o in answered if o.latency_ms is not None]
    scored = [o for o in answered if o.score is not None]
    faithful, baseline = _share([o.faithful for o in answered]), _share([o.random_faithful for o in answered])
    return {
        "pairs": len(outcomes), "answered": len(answered),
        "errors": sorted({o.error for o in outcomes if o.error})[:5],
        "faithfulness": faithful, "random_baseline": baseline,
        "margin": None if faithful is None or baseline is None else faithful - baseline,
        "testable": _share([o.edit is not None for o in answered]),
        "by_verdict": per_verdict,
        "agreement": _share([o.judgement == ("Good" if rescored >= good_threshold else "Bad")
                             for o, rescored in served]),
        "verdict_equals_judgement": _share([o.judgement == o.verdict for o in answered]),
        "score_matches_served": _share([abs(rescored - o.score) < 1e-4 for o, rescored in served
                                        if o.score is not None]),
        "parse_ok": _share([o.parse_ok for o in answered]), "located": _share([o.located for o in answered]),
        "latency_ms": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                       "p99": percentile(latencies, 99)},
        "roc_auc": roc_auc(np.array([o.good for o in scored]), np.array([o.score for o in scored]))
        if scored else None,
    }



def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Decision explanations: {report['pairs_file']}", "",
             f"{report['pairs']} pairs ({report['queries']} queries; {report['sample']}), explained through "
             f"{report['gateway']} (model {report['model_version']}). An edit is faithful when it moves the "
             f"student's score the implied way by at least {report['min_delta']}.", "",
             "| writer | faithfulness | random-span baseline | margin | Good: faithful / baseline | "
             "Bad: faithful / baseline | testable | agreement with the served verdict | parse ok | located | "
             "p50 ms | p99 ms | ROC-AUC | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in report["writers"].items():
        g, b = s["by_verdict"]["Good"], s["by_verdict"]["Bad"]
        lines.append(
            f"| {name} | {fmt(s['faithfulness'])} | {fmt(s['random_baseline'])} | {fmt(s['margin'])} | "
            f"{fmt(g['faithfulness'])} / {fmt(g['random_baseline'])} (n={g['pairs']}) | "
            f"{fmt(b['faithfulness'])} / {fmt(b['random_baseline'])} (n={b['pairs']}) | {fmt(s['testable'])} | "
            f"{fmt(s['agreement'])} | {fmt(s['parse_ok'])} | {fmt(s['located'])} | "
            f"{fmt(s['latency_ms']['p50'], 1)} | {fmt(s['latency_ms']['p99'], 1)} | {fmt(s['roc_auc'])} | "
            f"{s['pairs'] - s['answered']} |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(out: Path, outcomes: Mapping[str, Sequence[DecisionOutcome]]) -> Path:
    """Per writer: faithfulness against the baseline by verdict, and the score change of each edit."""
    fig, axes = figure_rows(len(outcomes))
    for row, (name, rows) in enumerate(outcomes.items()):
        left, right = axes[row]
        labels, ours, theirs = [], [], []
        for verdict in ("Good", "Bad"):
            chosen = [o for o in rows if o.error is None and o.verdict == verdict]
            labels.append(f"{verdict} (n={len(chosen)})")
            ours.append(_share([o.faithful for o in chosen]) or 0.0)
            theirs.append(_share([o.random_faithful for o in chosen]) or 0.0)
        x = np.arange(len(labels))
        left.bar(x - 0.2, ours, 0.4, label="explanation's edit", color="tab:blue")
        left.bar(x + 0.2, theirs, 0.4, label="random span, same size", color="tab:gray")
        left.set(xticks=x, xticklabels=labels, ylim=(0, 1), ylabel="share moved >= min delta",
                 title=f"{name}: counterfactual faithfulness")
        left.legend()
        for verdict, colour in (("Good", "tab:green"), ("Bad", "tab:red")):
            chosen = [(o.score, o.edited_score, o.random_score) for o in rows if o.verdict == verdict
                      and o.score is not None and o.edited_score is not None and o.random_score is not None]
            right.scatter([s for s, _, _ in chosen], [e - s for s, e, _ in chosen], s=8, alpha=0.5, color=colour,
                          label=f"{verdict}: explanation's edit")
            right.scatter([s for s, _, _ in chosen], [r - s for s, _, r in chosen], s=8, alpha=0.3, marker="x",
                          color="tab:gray")
        right.axhline(0, color="black", lw=0.5)
        right.set(xlabel="student score", ylabel="score after edit - before",
                  title=f"{name}: score change (x: random span)")
        right.legend()
    return save_figure(fig, out / "faithfulness.png")


def write_outputs(out: Path, outcomes: Mapping[str, Sequence[Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """results.jsonl, report.json, report.md and the plot; returns the report."""
    return write_report(out, outcomes, meta, "writers", summarise=summarise, markdown=markdown, plot=plot)
