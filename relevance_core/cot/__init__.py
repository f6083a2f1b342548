"""The CoT grammar of ELLM-rele, defined once: the teacher produces it, the distillation turns it into token
labels (`align`), the explain API returns it parsed (`parse`). Pure Python: no torch, no transformers."""

from __future__ import annotations

from relevance_core.cot.alignment import (
    BIO_LABELS,
    Alignment,
    EvidenceSpan,
    TokenLabels,
    align,
    align_pair,
    attention_factors,
    bio_labels,
    evidence_spans,
    pair_labels,
)
from relevance_core.cot.aspects import ASPECTS, canonical_aspect, lookup_aspect
from relevance_core.cot.grammar import (
    Explanation,
    ItemValue,
    Judgement,
    ParseResult,
    QueryRequirement,
    find_span,
    judgement_of,
    parse,
    render,
)

__all__ = [
    "ASPECTS",
    "BIO_LABELS",
    "Alignment",
    "EvidenceSpan",
    "Explanation",
    "ItemValue",
    "Judgement",
    "ParseResult",
    "QueryRequirement",
    "TokenLabels",
    "align",
    "align_pair",
    "attention_factors",
    "bio_labels",
    "canonical_aspect",
    "evidence_spans",
    "find_span",
    "judgement_of",
    "lookup_aspect",
    "pair_labels",
    "parse",
    "render",
]
