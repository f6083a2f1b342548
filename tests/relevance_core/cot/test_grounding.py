"""The grammar of grounded CoTs: its value alternatives are exactly the pair's word spans, trimmed as the parser
trims, so every value it admits is located by `parse`; literals are escaped; a side without words keeps only its
"no requirements" / "no attributes" form. (That llama.cpp decodes under it: tests/mkd/teacher.)"""

from __future__ import annotations

import re

from relevance_core.cot import ASPECTS, find_span
from relevance_core.cot.grounding import MAX_SPAN_WORDS, grounded_grammar, word_spans

TITLE = 'Simpson Strong-Tie 12-Gauge Angle (2-Pack), 1/4 in. "Heavy"'


def _rule(grammar: str, name: str) -> str:
    match = re.search(rf"^{name} ::= (.*)$", grammar, re.M)
    assert match, f"no rule {name}"
    return match[1]


def _literals(rule: str) -> list[str]:
    return [m.replace('\\"', '"').replace("\\\\", "\\") for m in re.findall(r'"((?:[^"\\]|\\.)*)"', rule)]


def test_word_spans_are_the_trimmed_runs_of_words_in_order() -> None:
    assert word_spans("angle bracket, galvanized") == ["angle", "angle bracket", "angle bracket, galvanized",
                                                      "bracket", "bracket, galvanized", "galvanized"]
    assert word_spans("a a") == ["a", "a a"]  # distinct only
    assert word_spans(" - , ") == []  # nothing but punctuation
    long = " ".join(f"w{i}" for i in range(12))
    assert max(len(span.split()) for span in word_spans(long)) == MAX_SPAN_WORDS


def test_every_admitted_value_is_located_in_its_side() -> None:
    query = "simpson angle 2 pack"
    grammar = grounded_grammar(query, TITLE)
    query_values = _literals(_rule(grammar, "query-value"))
    title_values = _literals(_rule(grammar, "title-value"))
    assert query_values == word_spans(query) and title_values == word_spans(TITLE)
    assert '1/4 in. "Heavy' in title_values  # a quote inside a value: escaped in the grammar, read back whole
    assert all(find_span(v, query) is not None for v in query_values)
    assert all(find_span(v, TITLE) is not None for v in title_values)
    assert _literals(_rule(grammar, "aspect")) == list(ASPECTS)
    assert _rule(grammar, "root").startswith('"Thinking: query has " requirements')


def test_a_side_without_words_admits_only_its_empty_form() -> None:
    grammar = grounded_grammar("--", TITLE)
    assert _rule(grammar, "requirements") == '"no requirements"'
    assert "query-value ::=" not in grammar and "title-value ::=" in grammar
