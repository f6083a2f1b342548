"""Compact scores files: gzip TSV ``query, product_uid, score`` (6 decimals, sorted, so the same scores give the
same bytes). Two uses of the one format:

- the committable copy of a teacher file (`write_scores`), expanded back into the teacher JSONL (scores,
  verdicts, verdict-consistent CoTs) on the pairs it keys (`expand_scores`);
- a committee member's p(Good) of every pair it will be asked about (`score_to_file`: the splits and the pool),
  so that a member whose weights are not kept stays a member: ``scores:FILE`` in `mkd.scorers`."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mkd.committee.committee import CommitteeError
from mkd.committee.labelling import teacher_row
from relevance_core.annotation import Annotator
from relevance_core.data import Pair

SCORES_COLUMNS = ("query", "product_uid", "score")


def _write_sorted(rows: list[tuple[str, str, str]], out: Path) -> int:
    rows.sort()
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out, "wb", mtime=0) as raw:
        raw.write(("\t".join(SCORES_COLUMNS) + "\n").encode())
        raw.write("".join("\t".join(r) + "\n" for r in rows).encode("utf-8"))
    return len(rows)


def write_scores(teacher_jsonl: Path, out: Path) -> int:
    """The compact, committable copy of a teacher file. CoTs are not kept: `expand_scores` regenerates them."""
    rows = []
    with teacher_jsonl.open(encoding="utf-8") as handle:
        for line in filter(str.strip, handle):
            row = json.loads(line)
            if row.get("score") is not None:
                rows.append((row["query"], str(row["product_uid"]), f"{row['score']:.6f}"))
    return _write_sorted(rows, out)


def read_scores(scores_tsv: Path) -> dict[tuple[str, str], float]:
    """``(query, product_uid) -> score`` of a scores file; a malformed file raises `CommitteeError` naming the
    line."""
    if not scores_tsv.is_file():
        raise CommitteeError(f"{scores_tsv}: no such file")
    scores: dict[tuple[str, str], float] = {}
    with gzip.open(scores_tsv, "rt", encoding="utf-8") as source:
        header = source.readline().rstrip("\n").split("\t")
        if tuple(header) != SCORES_COLUMNS:
            raise CommitteeError(f"{scores_tsv}: expected the columns {', '.join(SCORES_COLUMNS)}, got {header}")
        for line_number, line in enumerate(source, start=2):
            fields = line.rstrip("\n").split("\t")
            try:
                query, uid, value = fields
                scores[(query, uid)] = float(value)
            except ValueError:
                raise CommitteeError(f"{scores_tsv}:{line_number}: expected query, product_uid and a numeric "
                                     f"score, got {line.strip()[:80]!r}") from None
    return scores


def score_to_file(score: Callable[[Sequence[Pair]], np.ndarray], pairs: Sequence[Pair], out: Path, *,
                  chunk: int = 4096, show_progress: bool = True) -> dict[str, Any]:
    """Score ``pairs`` (duplicates of a (query, product_uid) once) ``chunk`` at a time into ``out``. Each chunk
    is appended to ``out``'s ``.partial`` TSV as it is scored, so a stopped run resumes at its last whole chunk;
    the sorted gzip file is written at the end and the partial file removed."""
    partial = out.with_name(out.name + ".partial")
    done: dict[tuple[str, str], str] = {}
    if partial.is_file():
        for line in partial.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) == 3:  # a line cut by a stop mid-write is scored again
                done[(fields[0], fields[1])] = fields[2]
    unique = list({(p.query, p.product_uid): p for p in pairs}.values())
    todo = [p for p in unique if (p.query, p.product_uid) not in done]
    started = time.perf_counter()
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("a", encoding="utf-8") as handle, \
            tqdm(total=len(todo), desc=f"scoring into {out.name}", unit="pair", disable=not show_progress) as bar:
        for begin in range(0, len(todo), chunk):
            batch = todo[begin : begin + chunk]
            values = np.asarray(score(batch), dtype=np.float64)
            if values.shape != (len(batch),) or not np.isfinite(values).all():
                raise CommitteeError(f"the scorer returned {values.shape} scores, or non-finite ones, for "
                                     f"{len(batch)} pairs")
            lines = [f"{p.query}\t{p.product_uid}\t{v:.6f}" for p, v in zip(batch, values, strict=True)]
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            done.update(((p.query, p.product_uid), f"{v:.6f}") for p, v in zip(batch, values, strict=True))
            bar.update(len(batch))
    seconds = time.perf_counter() - started
    rows = _write_sorted([(query, uid, value) for (query, uid), value in done.items()], out)
    partial.unlink()
    return {"pairs": len(unique), "already_done": len(unique) - len(todo), "scored": len(todo), "rows": rows,
            "seconds": round(seconds, 1), "pairs_per_s": round(len(todo) / seconds, 1) if seconds else None,
            "out": str(out), "bytes": out.stat().st_size}


def expand_scores(scores_tsv: Path, pairs: Sequence[Pair], out: Path, annotator: Annotator, *,
                  show_progress: bool = True) -> dict[str, Any]:
    """Rebuild the teacher JSONL from a compact scores file and the pairs it keys (train split, pool): each
    (query, product_uid) found in ``pairs`` gets its row and verdict-consistent CoT, deterministically."""
    scores = read_scores(scores_tsv)
    by_key = {(p.query, p.product_uid): p for p in pairs}
    written = missing = 0
    with out.open("w", encoding="utf-8") as handle:
        for key, value in tqdm(scores.items(), desc="teacher rows", unit="row", disable=not show_progress):
            pair = by_key.get(key)
            if pair is None:
                missing += 1
                continue
            handle.write(json.dumps(teacher_row(pair, value, annotator)) + "\n")
            written += 1
    return {"rows": written, "not_in_pairs": missing, "out": str(out)}
