"""CoT annotation of labelled pairs (paper §3.2.1): ``relevance teacher annotate``.

Two annotators write the same JSONL, one object per pair (appended as pairs finish, so a run resumes where it
stopped; pairs already in the file are skipped):

- OpenAI-compatible endpoints (vLLM in production, e.g. two different 70B models): the few-shot prompt
  P_L-LLM = S + E + Q + T, ``n`` samples per endpoint with the paper's sampling (temperature 0.8, top_p 0.7,
  top_k 50). Every sample is parsed with the grammar; the first whose judgement agrees with the human label is
  kept (self-consistency);
- the local programmatic stand-in (`relevance_core.annotation`), whose routes play the part of the samples.

Row fields: ``query``, ``product_title``, ``relevance``, ``pair_id``, ``cot`` (the kept CoT, or null when no
sample agreed with the label), ``judgement`` (of the kept CoT), ``samples`` (how many were drawn), ``parsed``
(how many parsed), ``source`` (the kept sample's provenance: ``endpoint``, ``model``, ``sample`` index, and the
``route`` for the local annotator).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mkd.jsonl import pending_pairs
from relevance_core.annotation import ROUTES, Annotator
from relevance_core.cot import parse, render
from relevance_core.data import Pair
from relevance_core.teacher.openai_client import TeacherClient
from relevance_core.teacher.prompt import annotation_messages


@dataclass(frozen=True)
class EndpointSpec:
    """One annotating model behind an OpenAI-compatible API."""

    base_url: str
    model: str
    api_key: str | None = None


@dataclass
class AnnotationSummary:
    """What a run did: pairs annotated (this run and before), coverage and the kept CoTs' aspects."""

    pairs: int = 0
    skipped_done: int = 0
    annotated: int = 0
    consistent: int = 0
    samples: int = 0
    parsed: int = 0
    failed: int = 0
    by_label: dict[str, list[int]] = field(default_factory=lambda: {"Good": [0, 0], "Bad": [0, 0]})
    query_aspects: Counter[str] = field(default_factory=Counter)
    item_aspects: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        self.annotated += 1
        self.samples += row["samples"]
        self.parsed += row["parsed"]
        label = "Good" if row["relevance"] > 2.0 else "Bad"
        self.by_label[label][1] += 1
        if row["cot"] is None:
            return
        self.consistent += 1
        self.by_label[label][0] += 1
        source = row["source"]
        self.sources[source.get("route") or source["model"]] += 1
        explanation = parse(row["cot"], row["query"], row["product_title"]).explanation
        if explanation is not None:
            self.query_aspects.update(r.aspect for r in explanation.query_requirements)
            self.item_aspects.update(f"{v.aspect} {'matches' if v.matches else 'mismatches'}"
                                     for v in explanation.item_values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs, "skipped_already_done": self.skipped_done, "annotated": self.annotated,
            "with_consistent_cot": self.consistent,
            "coverage": round(self.consistent / self.annotated, 4) if self.annotated else None,
            "coverage_by_label": {k: round(c / n, 4) if n else None for k, (c, n) in self.by_label.items()},
            "samples": self.samples, "parsed_samples": self.parsed, "failed_pairs": self.failed,
            "kept_by_source": dict(self.sources.most_common()),
            "query_requirements_by_aspect": dict(self.query_aspects.most_common()),
            "item_values_by_aspect": dict(sorted(self.item_aspects.items())),
            "errors": self.errors[:10],
        }


def _row(pair: Pair, cot: str | None, judgement: str | None, samples: int, parsed: int,
         source: dict[str, Any]) -> dict[str, Any]:
    return {"pair_id": pair.pair_id, "query": pair.query, "product_title": pair.product_title,
            "relevance": pair.relevance, "cot": cot, "judgement": judgement, "samples": samples,
            "parsed": parsed, "source": source}


def _pending(pairs: Sequence[Pair], out: Path, summary: AnnotationSummary) -> list[Pair]:
    pending = pending_pairs(pairs, out)
    summary.pairs, summary.skipped_done = len(pairs), len(pairs) - len(pending)
    return pending


def annotate_local(pairs: Sequence[Pair], annotator: Annotator, out: Path, *,
                   show_progress: bool = True) -> AnnotationSummary:
    """Annotate ``pairs`` with the programmatic stand-in; appends to ``out``."""
    summary = AnnotationSummary()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        for pair in tqdm(_pending(pairs, out, summary), desc="annotate (local rules)", unit="pair",
                         disable=not show_progress):
            annotated = annotator.annotate(pair.query, pair.product_title, pair.good)
            source: dict[str, Any] = {"endpoint": "local", "model": "rules"}
            if annotated is None:
                row = _row(pair, None, None, len(ROUTES), len(ROUTES), source)
            else:  # routes are tried in order: the kept one is the last drawn
                route, explanation = annotated
                tried = ROUTES.index(route) + 1
                row = _row(pair, render(explanation), explanation.judgement, tried, tried,
                           source | {"route": route, "sample": tried - 1})
            handle.write(json.dumps(row) + "\n")
            summary.add(row)
    return summary


async def annotate_endpoints(pairs: Sequence[Pair], endpoints: Sequence[EndpointSpec], out: Path, *, n: int = 4,
                             concurrency: int = 8, temperature: float = 0.8, top_p: float = 0.7, top_k: int = 50,
                             max_tokens: int = 256, timeout_s: float = 120.0, retries: int = 3,
                             show_progress: bool = True) -> AnnotationSummary:
    """Annotate ``pairs`` with ``n`` samples from each endpoint in turn, stopping at the first sample whose
    judgement agrees with the label; appends to ``out``. A pair whose endpoints all fail is counted in
    ``failed_pairs`` and not written, so a rerun tries it again."""
    summary = AnnotationSummary()
    pending = _pending(pairs, out, summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    clients = [TeacherClient(e.base_url, e.model, api_key=e.api_key, timeout_s=timeout_s, retries=retries,
                             max_tokens=max_tokens) for e in endpoints]
    semaphore = asyncio.Semaphore(concurrency)
    progress = tqdm(total=len(pending), desc="annotate (endpoints)", unit="pair", disable=not show_progress)

    async def one(pair: Pair) -> dict[str, Any] | None:
        async with semaphore:
            wanted = "Good" if pair.good else "Bad"
            drawn = parsed = 0
            errors = []
            for spec, client in zip(endpoints, clients, strict=True):
                try:
                    texts = await client.sample(annotation_messages(pair.query, pair.product_title), n=n,
                                                temperature=temperature, top_p=top_p, top_k=top_k)
                except Exception as error:
                    errors.append(f"{spec.base_url}: {error}")
                    continue
                for index, text in enumerate(texts):
                    drawn += 1
                    result = parse(text, pair.query, pair.product_title)
                    if not result.ok or result.explanation is None:
                        continue
                    parsed += 1
                    if result.explanation.judgement == wanted:
                        source = {"endpoint": spec.base_url, "model": spec.model, "sample": index}
                        return _row(pair, text.strip(), wanted, drawn, parsed, source)
            if errors and drawn == 0:
                summary.failed += 1
                summary.errors.extend(errors)
                return None
            return _row(pair, None, None, drawn, parsed, {"endpoint": None, "model": None})

    try:
        with out.open("a", encoding="utf-8") as handle:
            for future in asyncio.as_completed([one(pair) for pair in pending]):
                row = await future
                progress.update(1)
                if row is not None:
                    handle.write(json.dumps(row) + "\n")
                    handle.flush()
                    summary.add(row)
    finally:
        progress.close()
        for client in clients:
            await client.aclose()
    return summary
