from __future__ import annotations

import json
from pathlib import Path

import pytest

from mkd.distill.teacher_file import TeacherFileError, TeacherRow, build_examples, load_teacher, sample_by_query
from relevance_core.data import Pair
from tests.mkd.students.tiny import QUERY, TITLE, example_cot


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _row(query: str, title: str, score: float, **extra: object) -> dict[str, object]:
    return {"query": query, "product_title": title, "cot": None, "p_good": score, "p_bad": 1 - score,
            "score": score, **extra}


def test_load_teacher_reads_rows_and_names_bad_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [_row("a", "b", 0.7, cot="Thinking: ... Final judgment: Good"), "",
                                         _row("c", "d", 0.2, relevance=1.5)])
    rows = load_teacher(path)
    assert rows == [TeacherRow("a", "b", "Thinking: ... Final judgment: Good", 0.7, 1 - 0.7, 0.7),
                    TeacherRow("c", "d", None, 0.2, 0.8, 0.2, 1.5)]
    for bad, message in (("{not json", "t.jsonl:2: not valid JSON"),
                         (json.dumps({**_row("a", "b", 0.5), "score": 1.5}), "t.jsonl:2: field 'score': 1.5 is not"),
                         (json.dumps({"query": "a", "product_title": "b"}), "t.jsonl:2: field 'score': missing"),
                         (json.dumps(_row("", "b", 0.5)), "t.jsonl:2: field 'query'")):
        _write(tmp_path / "t.jsonl", [_row("a", "b", 0.5), bad])
        with pytest.raises(TeacherFileError, match=message):
            load_teacher(tmp_path / "t.jsonl")


def test_build_examples_joins_labelled_pairs_and_keeps_a_clean_pool() -> None:
    from relevance_core.cot import render

    pairs = [Pair(QUERY, TITLE, 1.0, "p1"), Pair("deck over", "BEHR DeckOver", 3.0, "p2")]
    rows = [
        TeacherRow(QUERY, TITLE, render(example_cot()), 0.2, 0.8, 0.2),
        TeacherRow(QUERY, TITLE, None, 0.9, 0.1, 0.9),  # duplicate: the first row wins
        TeacherRow("angle bracket", "Simpson Angle", "no judgement here", 0.9, 0.1, 0.9),  # pool, CoT unparsable
        TeacherRow("valid query", "Some Title", None, 0.5, 0.5, 0.5),  # held out
        TeacherRow("other", "Other Title", None, 0.5, 0.5, 0.5, relevance=2.0),  # a labelled pair elsewhere
    ]
    examples, stats = build_examples(pairs, rows, held_out_queries={"valid query"})
    assert [(e.query, e.label, e.teacher_p_good) for e in examples] == [
        (QUERY, 0.0, 0.2), ("deck over", 1.0, None), ("angle bracket", None, 0.9)]
    assert examples[0].cot == example_cot() and examples[2].cot is None
    assert (stats.labelled, stats.labelled_with_teacher, stats.pool) == (2, 1, 1)
    assert (stats.cot_parsed, stats.cot_unparsed, stats.duplicate_teacher_rows) == (1, 1, 1)
    assert (stats.excluded_held_out_query, stats.excluded_labelled_elsewhere) == (1, 1)


def test_teacher_scores_of_labelled_pairs_can_be_left_out_keeping_their_cots() -> None:
    from relevance_core.cot import render

    pairs = [Pair(QUERY, TITLE, 2.33, "p1")]
    rows = [TeacherRow(QUERY, TITLE, render(example_cot()), 0.2, 0.8, 0.2),
            TeacherRow("angle bracket", "Simpson Angle", None, 0.9, 0.1, 0.9)]
    examples, _ = build_examples(pairs, rows, labelled_teacher=False, graded_weight=0.5)
    assert examples[0].teacher_p_good is None and examples[0].cot == example_cot()
    assert examples[0].label == pytest.approx(0.5 + 0.5 * (2.33 - 1) / 2)
    assert examples[1].teacher_p_good == 0.9 and examples[1].label is None


def test_samples_keep_whole_queries_until_the_size_is_reached() -> None:
    rows = [TeacherRow(f"query {q}", f"title {q}-{i}", None, 0.6, 0.4, 0.6) for q in range(10) for i in range(3)]
    examples, stats = build_examples([], rows, pool_sample=7)
    queries = {e.query for e in examples}
    assert len(examples) == 9 and len(queries) == 3 and stats.pool_queries_left_out == 7
    assert all(sum(e.query == q for e in examples) == 3 for q in queries)
    again, _ = build_examples([], rows, pool_sample=7)
    assert [e.title for e in again] == [e.title for e in examples]
    everything, stats = build_examples([], rows)
    assert len(everything) == 30 and stats.pool_queries_left_out == 0
    pairs = [Pair(f"query {q}", f"title {q}-{i}", 3.0, f"p{q}{i}") for q in range(10) for i in range(2)]
    labelled, stats = build_examples(pairs, train_sample=5)
    assert len(labelled) == 6 and stats.labelled == 6 and stats.train_queries_left_out == 7
    assert {e.query for e in labelled} == {e.query for e in sample_by_query(pairs, 5)[0]}
