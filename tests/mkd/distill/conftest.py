"""Shared data of the distillation tests: a small labelled split, a validation split and a teacher file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relevance_core.cot import Explanation, ItemValue, QueryRequirement, render
from relevance_core.data import Pair, load_pairs, write_pairs


def _cot(pair: Pair, good: bool) -> str:
    """A CoT in the grammar: the query's first word as the product requirement, the title's first word as the
    item's product, matching iff the pair is Good."""
    return render(Explanation(
        query_requirements=[QueryRequirement(aspect="product", value=pair.query.split()[0])],
        item_values=[ItemValue(aspect="product", value=pair.product_title.split()[0], matches=good)],
        judgement="Good" if good else "Bad",
        reason=None if good else "product mismatch",
    ))


@pytest.fixture
def small_data(tmp_path: Path, vendored_pairs: Path) -> tuple[Path, Path, Path]:
    """64 train pairs, 32 validation pairs and a teacher file: rows for half the train pairs plus 16 pool pairs
    (unlabeled: the ratings of rows 96..111 are not given to the teacher file)."""
    pairs = load_pairs(vendored_pairs)[:112]
    train_path, valid_path = tmp_path / "train.tsv", tmp_path / "valid.tsv"
    write_pairs(train_path, pairs[:64])
    write_pairs(valid_path, pairs[64:96])
    rows = []
    for i, pair in enumerate([*pairs[:64:2], *pairs[96:112]]):
        good = pair.good if i % 5 else not pair.good  # a teacher that is sometimes wrong
        score = 0.8 if good else 0.25
        rows.append({"query": pair.query, "product_title": pair.product_title, "cot": _cot(pair, good),
                     "p_good": score, "p_bad": 1 - score, "score": score})
    teacher_path = tmp_path / "teacher.jsonl"
    teacher_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return train_path, valid_path, teacher_path
