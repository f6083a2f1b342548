"""Pseudo-labelling (paper §3.3.1): ``relevance teacher label`` runs ELLM-rele over a pairs file (the labelled
train split, the unlabeled pool) and writes the teacher file the MKD trainer reads (`mkd.distill.teacher_file`): one
JSON object per pair with the CoT, p(Good), p(Bad), the eq. 4 score (null with a ``score_reason`` when no
judgement could be read) and the pair's ``relevance`` when it has one.

Two backends: in-process (`mkd.teacher.torch_teacher.LocalTeacher`, batched greedy generation) or an OpenAI-compatible
endpoint (`mkd.teacher.TeacherClient`, concurrent requests). Rows are appended as batches finish, so a run
resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mkd.jsonl import pending_pairs
from relevance_core.data import Pair
from relevance_core.teacher.openai_client import TeacherClient, TeacherError


def _summary(pairs: int, pending: int, rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    scored = [r for r in rows if r["score"] is not None]
    return {"pairs": pairs, "already_done": pairs - pending, "labelled": len(rows), "scored": len(scored),
            "unscored": len(rows) - len(scored), "cot_parsed": sum(r.get("cot_ok", False) for r in rows),
            "good_share": round(sum(r["judgement"] == "Good" for r in scored) / len(scored), 4) if scored else None,
            "mean_score": round(sum(r["score"] for r in scored) / len(scored), 4) if scored else None,
            "seconds": round(seconds, 1), "pairs_per_second": round(len(rows) / seconds, 3) if seconds else None}


def label_local(pairs: Sequence[Pair], out: Path, judge: Callable[[list[tuple[str, str]]], list[Any]], *,
                batch_size: int = 16, show_progress: bool = True) -> dict[str, Any]:
    """Label ``pairs`` with an in-process ``judge`` (`LocalTeacher.judge`), ``batch_size`` pairs at a time."""
    pending = pending_pairs(pairs, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with out.open("a", encoding="utf-8") as handle, \
            tqdm(total=len(pending), desc="teacher label (in-process)", unit="pair", disable=not show_progress) as bar:
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            for pair, judgement in zip(chunk, judge([(p.query, p.product_title) for p in chunk]), strict=True):
                row = judgement.row() | {"relevance": pair.relevance, "cot_ok": judgement.parsed.ok}
                handle.write(json.dumps(row) + "\n")
                rows.append(row)
            handle.flush()
            bar.update(len(chunk))
    return _summary(len(pairs), len(pending), rows, time.perf_counter() - started)


async def label_endpoint(pairs: Sequence[Pair], out: Path, client: TeacherClient, *, concurrency: int = 8,
                         show_progress: bool = True) -> dict[str, Any]:
    """Label ``pairs`` through an OpenAI-compatible endpoint (greedy, logprobs at the judgement position).
    Pairs the endpoint fails on are not written (a rerun retries them) and counted in ``failed``."""
    pending = pending_pairs(pairs, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    semaphore = asyncio.Semaphore(concurrency)
    rows: list[dict[str, Any]] = []
    failures: list[str] = []

    async def one(pair: Pair) -> dict[str, Any] | None:
        async with semaphore:
            try:
                result = await client.judge(pair.query, pair.product_title)
            except TeacherError as error:
                failures.append(str(error))
                return None
        return {"query": pair.query, "product_title": pair.product_title, "cot": result.cot,
                "p_good": result.p_good, "p_bad": result.p_bad, "score": result.score,
                "judgement": result.judgement, "score_reason": result.score_reason, "relevance": pair.relevance,
                "cot_ok": result.parsed.ok, "model": result.model}

    started = time.perf_counter()
    with out.open("a", encoding="utf-8") as handle, \
            tqdm(total=len(pending), desc="teacher label (endpoint)", unit="pair", disable=not show_progress) as bar:
        for future in asyncio.as_completed([one(p) for p in pending]):
            row = await future
            bar.update(1)
            if row is not None:
                handle.write(json.dumps(row) + "\n")
                rows.append(row)
    summary = _summary(len(pairs), len(pending), rows, time.perf_counter() - started)
    return summary | {"failed": len(failures), "errors": failures[:5]}
