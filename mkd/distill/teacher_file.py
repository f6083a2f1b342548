"""The teacher's pseudo-labels (JSONL, one object per pair) and their join with the labelled training pairs.

Row fields: ``query``, ``product_title``, ``cot`` (the CoT text, may be empty or null), ``p_good``, ``p_bad``
(the judgement token's probabilities), ``score`` (s_T in [0, 1], the value distilled; null where the teacher
gave no judgement: such rows are skipped) and optionally ``relevance``. A labelled pair takes the row with the
same (query, product_title); the remaining rows are the unlabeled pool.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mkd.jsonl import read_jsonl
from mkd.students.collate import PairExample
from relevance_core.cot import parse
from relevance_core.data import Pair


class TeacherFileError(ValueError):
    """A teacher JSONL that cannot be used; the message names the file, the line and the field."""


@dataclass(frozen=True, slots=True)
class TeacherRow:
    query: str
    product_title: str
    cot: str | None
    p_good: float | None
    p_bad: float | None
    score: float
    relevance: float | None = None


def _probability(row: dict[str, Any], name: str, where: str, *, required: bool) -> float | None:
    value = row.get(name)
    if value is None:
        if required:
            raise TeacherFileError(f"{where}: field {name!r}: missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise TeacherFileError(f"{where}: field {name!r}: {value!r} is not a probability in [0, 1]")
    return float(value)


def load_teacher(path: str | os.PathLike[str]) -> list[TeacherRow]:
    """Read and validate a teacher JSONL file (blank lines allowed)."""
    rows = []
    for where, row in read_jsonl(Path(path), TeacherFileError):
        texts = []
        for name in ("query", "product_title"):
            text = row.get(name)
            if not isinstance(text, str) or not text.strip():
                raise TeacherFileError(f"{where}: field {name!r}: missing or empty")
            texts.append(text.strip())
        if "score" in row and row["score"] is None:  # the teacher gave no judgement (score_reason says why)
            continue
        cot = row.get("cot")
        if cot is not None and not isinstance(cot, str):
            raise TeacherFileError(f"{where}: field 'cot': expected a string")
        relevance = row.get("relevance")
        if relevance not in (None, "") and (isinstance(relevance, bool) or not isinstance(relevance, int | float)):
            raise TeacherFileError(f"{where}: field 'relevance': {relevance!r} is not a number")
        rows.append(TeacherRow(
            query=texts[0], product_title=texts[1], cot=cot or None,
            p_good=_probability(row, "p_good", where, required=False),
            p_bad=_probability(row, "p_bad", where, required=False),
            score=_probability(row, "score", where, required=True),  # type: ignore[arg-type]
            relevance=None if relevance in (None, "") else float(relevance),
        ))
    return rows


class _HasQuery(Protocol):
    @property
    def query(self) -> str: ...


_Q = TypeVar("_Q", bound=_HasQuery)


@dataclass
class JoinStats:
    """Counts from :func:`build_examples`, for the training record."""

    labelled: int = 0
    labelled_with_teacher: int = 0
    pool: int = 0
    cot_parsed: int = 0
    cot_unparsed: int = 0
    duplicate_teacher_rows: int = 0
    excluded_held_out_query: int = 0
    excluded_labelled_elsewhere: int = 0
    train_queries_left_out: int = 0
    pool_queries_left_out: int = 0


def _example(query: str, title: str, label: float | None, row: TeacherRow | None, stats: JoinStats, *,
             use_score: bool = True) -> PairExample:
    if row is None:
        return PairExample(query, title, label=label)
    explanation = None
    if row.cot is not None:
        result = parse(row.cot, query, title)
        if result.ok and result.explanation is not None:
            explanation = result.explanation
            stats.cot_parsed += 1
        else:
            stats.cot_unparsed += 1
    return PairExample(query, title, label=label, teacher_p_good=row.score if use_score else None, cot=explanation)


def label_target(pair: Pair, graded_weight: float = 0.0) -> float:
    """The CE target of a labelled pair: the binary label (1.0 Good, 0.0 Bad) mixed with the graded rating as a
    soft target, ``(1 - w)·[Good] + w·(relevance - 1)/2`` for ``graded_weight`` w in [0, 1] (w = 0: the label)."""
    binary = 1.0 if pair.good else 0.0
    if not graded_weight:
        return binary
    graded = min(1.0, max(0.0, (float(pair.relevance) - 1.0) / 2.0))  # type: ignore[arg-type]
    return (1.0 - graded_weight) * binary + graded_weight * graded


SAMPLE_SEED = 0
"""Seed of the ``train_sample``/``pool_sample`` draws: fixed, so runs of other training seeds see the same data."""


def sample_by_query(items: Sequence[_Q], size: int) -> tuple[list[_Q], int]:
    """Whole queries, in an order seeded by :data:`SAMPLE_SEED`, until ``size`` items are reached; the items keep
    their order. Returns the kept items and the number of queries left out."""
    per_query: dict[str, int] = {}
    for item in items:
        per_query[item.query] = per_query.get(item.query, 0) + 1
    queries = sorted(per_query)
    random.Random(SAMPLE_SEED).shuffle(queries)
    kept: set[str] = set()
    total = 0
    for query in queries:
        if total < size:
            kept.add(query)
            total += per_query[query]
    return [item for item in items if item.query in kept], len(queries) - len(kept)


def build_examples(train_pairs: Sequence[Pair], teacher_rows: Iterable[TeacherRow] = (),
                   held_out_queries: Iterable[str] = (), *, graded_weight: float = 0.0,
                   labelled_teacher: bool = True, train_sample: int | None = None,
                   pool_sample: int | None = None) -> tuple[list[PairExample], JoinStats]:
    """Labelled examples (with their teacher row, if any), then the unlabeled pool of teacher-only rows.

    Teacher-only rows are left out when their query is held out (validation or test: training on their pseudo
    labels would leak) or when they carry a ``relevance`` (a labelled pair of another split). ``graded_weight``:
    see :func:`label_target`. With ``labelled_teacher`` False the teacher's scores for labelled pairs are not used
    (a teacher trained on those pairs is overconfident on them): its score then teaches through the pool only, while
    its CoTs still serve every pair. ``train_sample``/``pool_sample`` N keep about N labelled/pool pairs, whole
    queries drawn by :func:`sample_by_query` (a smaller regime, e.g. for the ablations).
    """
    stats = JoinStats()
    by_pair: dict[tuple[str, str], TeacherRow] = {}
    for row in teacher_rows:
        key = (row.query, row.product_title)
        if key in by_pair:
            stats.duplicate_teacher_rows += 1
        else:
            by_pair[key] = row
    if train_sample is not None:
        train_pairs, stats.train_queries_left_out = sample_by_query(train_pairs, train_sample)
    examples = []
    for pair in train_pairs:
        row = by_pair.pop((pair.query, pair.product_title), None)
        examples.append(_example(pair.query, pair.product_title, label_target(pair, graded_weight), row, stats,
                                 use_score=labelled_teacher))
        stats.labelled += 1
        stats.labelled_with_teacher += row is not None
    held_out = set(held_out_queries)
    pool: list[TeacherRow] = []
    for (query, _), row in by_pair.items():
        if query in held_out:
            stats.excluded_held_out_query += 1
        elif row.relevance is not None:
            stats.excluded_labelled_elsewhere += 1
        else:
            pool.append(row)
    if pool_sample is not None:
        pool, stats.pool_queries_left_out = sample_by_query(pool, pool_sample)
    for row in pool:
        examples.append(_example(row.query, row.product_title, None, row, stats))
        stats.pool += 1
    return examples, stats
