"""The MKD teacher file from a committee: one row per pair with s_T = the committee's p(Good), its verdict and a
CoT consistent with that verdict from the rule annotator (the paper's label-consistent selection)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mkd.committee.committee import CommitteeScorer
from mkd.jsonl import pending_pairs
from relevance_core.annotation import Annotator
from relevance_core.data import Pair


def teacher_row(pair: Pair, score: float, annotator: Annotator, members: dict[str, float] | None = None,
                ) -> dict[str, Any]:
    """One teacher-file row: s_T = the committee's p(Good) (p_good = s_T, p_bad = 1 - s_T), the verdict
    (Good iff s_T > 0.5) and a CoT from the annotator's first route that reaches that verdict; ``cot`` is null
    with ``cot_reason`` when no route does (a Bad verdict on a pair whose words all match, mostly)."""
    verdict = score > 0.5
    cot = annotator.cot(pair.query, pair.product_title, verdict)
    row: dict[str, Any] = {"query": pair.query, "product_title": pair.product_title,
                           "product_uid": pair.product_uid, "score": round(score, 6), "p_good": round(score, 6),
                           "p_bad": round(1.0 - score, 6), "judgement": "Good" if verdict else "Bad",
                           "cot": None if cot is None else cot[1]}
    if cot is None:
        row["cot_reason"] = "no annotator route reaches the teacher's verdict"
    else:
        row["cot_route"] = cot[0]
    if pair.relevance is not None:
        row["relevance"] = pair.relevance
    if members is not None:
        row["members"] = {name: round(value, 6) for name, value in members.items()}
    return row


def label_with_committee(pairs: Sequence[Pair], out: Path, scorer: CommitteeScorer, annotator: Annotator, *,
                         chunk: int = 4096, show_progress: bool = True) -> dict[str, Any]:
    """Append a teacher row for every pair of ``pairs`` not yet in ``out``, ``chunk`` pairs at a time (each chunk
    written and flushed before the next: a stopped run resumes at the last whole chunk)."""
    pending = pending_pairs(pairs, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [m.name for m in scorer.committee.members]
    counts = {"Good": 0, "Bad": 0, "with_cot": 0}
    started = time.perf_counter()
    with out.open("a", encoding="utf-8") as handle, \
            tqdm(total=len(pending), desc="committee labelling", unit="pair", disable=not show_progress) as bar:
        for start in range(0, len(pending), chunk):
            batch = pending[start : start + chunk]
            features = scorer.member_features(batch)
            scores = scorer.committee.combiner(features)
            probabilities = 1.0 / (1.0 + np.exp(-features))
            for i, pair in enumerate(batch):
                row = teacher_row(pair, float(scores[i]), annotator, dict(zip(names, probabilities[i], strict=True)))
                counts[row["judgement"]] += 1
                counts["with_cot"] += row["cot"] is not None
                handle.write(json.dumps(row) + "\n")
            handle.flush()
            bar.update(len(batch))
    seconds = time.perf_counter() - started
    return {"pairs": len(pairs), "already_done": len(pairs) - len(pending), "labelled": len(pending), **counts,
            "seconds": round(seconds, 1), "pairs_per_s": round(len(pending) / seconds, 1) if seconds else None}
