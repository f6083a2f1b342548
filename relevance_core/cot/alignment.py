"""From a parsed explanation to token-level CoT distillation targets (paper §3.3.2): character spans → tokens →
BIO tags (sequence tagging, cross-encoders) or attention regulatory factors (late-interaction students).

Polarity rule (which evidence is relevant):

- an item-side value span (in the title) is relevant if it matches the query, irrelevant if it mismatches;
- a query-side requirement span is relevant if some item value of the same aspect matches, otherwise irrelevant
  (the requirement is not met);
- values without a span (not found in their text) give no evidence.

Tokens: a token is inside a span if its [start, end) character offsets overlap the span; tokens with empty offsets
(special and padding tokens: (0, 0)) are never inside one. A token inside both a relevant and an irrelevant span is
irrelevant (irrelevant wins). A labelled token gets B- unless the previous token has the same polarity and shares
a span of that polarity with it, then I-. Unlabelled tokens get "O" and factor None (excluded from the loss);
relevant tokens get factor +1, irrelevant ones -1.

Offsets are those of a Hugging Face tokenizer: ``tokenizers.Tokenizer.encode(...).offsets`` or a transformers fast
tokenizer's ``offset_mapping``. Query and title are encoded separately (two-tower students) by `align`, or as one
pair (cross-encoders) by `align_pair` / `pair_labels`, where each token's sequence id (0 query, 1 title, None
special) tells which text its offsets refer to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from relevance_core.cot.grammar import Explanation

BIO_LABELS: MappingProxyType[str, int] = MappingProxyType(
    {"B-rele": 0, "I-rele": 1, "B-irrele": 2, "I-irrele": 3, "O": 4}
)
"""BIO label → id, in this order."""

Offsets = Sequence[Sequence[int]]


class EvidenceSpan(NamedTuple):
    """A [start, end) character span of the query or title and whether it is relevant evidence."""

    start: int
    end: int
    relevant: bool


@dataclass(frozen=True)
class TokenLabels:
    """Per-token targets for one encoding."""

    offsets: list[tuple[int, int]]
    labels: list[str]
    factors: list[int | None]

    @property
    def label_ids(self) -> list[int]:
        return [BIO_LABELS[label] for label in self.labels]


@dataclass(frozen=True)
class Alignment:
    """Targets for the query and the title encoded separately."""

    query: TokenLabels
    title: TokenLabels


def evidence_spans(explanation: Explanation) -> tuple[list[EvidenceSpan], list[EvidenceSpan]]:
    """(query-side spans, title-side spans) with their polarity (see the module docstring)."""
    matched = {value.aspect for value in explanation.item_values if value.matches}
    query = [
        EvidenceSpan(*r.span, relevant=r.aspect in matched)
        for r in explanation.query_requirements
        if r.span is not None
    ]
    title = [EvidenceSpan(*v.span, relevant=v.matches) for v in explanation.item_values if v.span is not None]
    return query, title


def _token_evidence(offsets: Offsets, spans: Sequence[EvidenceSpan]) -> list[tuple[bool | None, frozenset[int]]]:
    """For each token: its polarity (None outside every span) and the spans of that polarity it overlaps."""
    result: list[tuple[bool | None, frozenset[int]]] = []
    for token_start, token_end in offsets:
        inside = [i for i, s in enumerate(spans) if max(token_start, s.start) < min(token_end, s.end)]
        irrelevant = frozenset(i for i in inside if not spans[i].relevant)
        if irrelevant:
            result.append((False, irrelevant))
        elif inside:
            result.append((True, frozenset(inside)))
        else:
            result.append((None, frozenset()))
    return result


def bio_labels(offsets: Offsets, spans: Sequence[EvidenceSpan]) -> list[str]:
    """One of "B-rele", "I-rele", "B-irrele", "I-irrele", "O" per token."""
    labels = []
    previous: tuple[bool | None, frozenset[int]] = (None, frozenset())
    for polarity, ids in _token_evidence(offsets, spans):
        if polarity is None:
            labels.append("O")
        else:
            continues = polarity == previous[0] and bool(ids & previous[1])
            labels.append(("I-" if continues else "B-") + ("rele" if polarity else "irrele"))
        previous = (polarity, ids)
    return labels


def attention_factors(offsets: Offsets, spans: Sequence[EvidenceSpan]) -> list[int | None]:
    """+1 (relevant evidence), -1 (irrelevant evidence) or None (no evidence: ignored) per token."""
    return [None if polarity is None else 1 if polarity else -1 for polarity, _ in _token_evidence(offsets, spans)]


def _token_labels(offsets: Offsets, spans: Sequence[EvidenceSpan]) -> TokenLabels:
    return TokenLabels(
        offsets=[(int(start), int(end)) for start, end in offsets],
        labels=bio_labels(offsets, spans),
        factors=attention_factors(offsets, spans),
    )


def pair_labels(
    offsets: Offsets,
    sequence_ids: Sequence[int | None],
    query_spans: Sequence[EvidenceSpan],
    title_spans: Sequence[EvidenceSpan],
) -> TokenLabels:
    """Targets for a cross-encoder pair encoding: tokens of sequence 0 are labelled against the query spans,
    tokens of sequence 1 against the title spans, special tokens (sequence id None) get "O" / None."""
    per_sequence = []
    for sequence, spans in ((0, query_spans), (1, title_spans)):
        masked = [
            (start, end) if sid == sequence else (0, 0) for (start, end), sid in zip(offsets, sequence_ids, strict=True)
        ]
        per_sequence.append(_token_labels(masked, spans))
    query, title = per_sequence
    return TokenLabels(
        offsets=[(int(start), int(end)) for start, end in offsets],
        labels=[t if sid == 1 else q for q, t, sid in zip(query.labels, title.labels, sequence_ids, strict=True)],
        factors=[t if sid == 1 else q for q, t, sid in zip(query.factors, title.factors, sequence_ids, strict=True)],
    )


def _encode(
    tokenizer: Any, text: str, pair: str | None, add_special_tokens: bool
) -> tuple[list[tuple[int, int]], list[int | None]]:
    """(offsets, sequence ids) from a transformers fast tokenizer (callable, ``return_offsets_mapping``) or a
    ``tokenizers.Tokenizer`` (``encode(...).offsets``), told apart by duck typing."""
    if callable(tokenizer):
        encoding = tokenizer(text, pair, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
        offsets, sequence_ids = encoding["offset_mapping"], encoding.sequence_ids()
    else:
        encoding = tokenizer.encode(text, pair=pair, add_special_tokens=add_special_tokens)
        offsets, sequence_ids = encoding.offsets, encoding.sequence_ids
    return [(int(start), int(end)) for start, end in offsets], list(sequence_ids)


def align(
    explanation: Explanation, query: str, title: str, tokenizer: Any, *, add_special_tokens: bool = True
) -> Alignment:
    """BIO labels and attention factors for the query's and the title's tokens, each text encoded on its own
    (as a two-tower / late-interaction student encodes them). The explanation's spans must refer to these texts
    (as `relevance_core.cot.grammar.parse` gives them)."""
    query_spans, title_spans = evidence_spans(explanation)
    query_offsets, _ = _encode(tokenizer, query, None, add_special_tokens)
    title_offsets, _ = _encode(tokenizer, title, None, add_special_tokens)
    return Alignment(query=_token_labels(query_offsets, query_spans), title=_token_labels(title_offsets, title_spans))


def align_pair(
    explanation: Explanation, query: str, title: str, tokenizer: Any, *, add_special_tokens: bool = True
) -> TokenLabels:
    """BIO labels and attention factors for the cross-encoder encoding of (query, title) as one pair."""
    query_spans, title_spans = evidence_spans(explanation)
    offsets, sequence_ids = _encode(tokenizer, query, title, add_special_tokens)
    return pair_labels(offsets, sequence_ids, query_spans, title_spans)
