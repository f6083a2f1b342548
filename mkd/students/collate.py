"""From (query, title[, label, teacher score, CoT]) examples to the tensors a student and the MKD losses take.

Token layouts (lengths from :class:`StudentConfig`, sequences padded to the longest in the batch):

- two-tower students, each side on its own: ``[CLS] [marker] tokens… [SEP]``, the marker (ColBERT's [Q]/[D])
  only when configured; the text's tokens are truncated to fit ``query_len`` / ``title_len``.
- the cross-encoder: the tokenizer's pair encoding ``[CLS] query [SEP] title [SEP]`` truncated to ``pair_len``
  (longest first).

Batch keys: ``label`` and ``teacher_p_good`` (B,) float, NaN where absent (1.0 = Good). Two-tower:
``q_input_ids``, ``q_attention_mask``, ``t_input_ids``, ``t_attention_mask`` and the CoT attention factors
``q_factors`` / ``t_factors`` (+1 relevant, -1 irrelevant evidence, 0 no factor). Cross-encoder: ``input_ids``,
``attention_mask``, ``token_type_ids``, the BIO tag ids ``tags`` (relevance_core.cot.BIO_LABELS; "O" where untagged) and
the two CRF chains ``q_tag_mask`` / ``t_tag_mask`` (the query's and the title's tokens; all False without a CoT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mkd.students.config import StudentConfig
from relevance_core.cot import BIO_LABELS, EvidenceSpan, Explanation, attention_factors, evidence_spans, pair_labels

OUTSIDE = BIO_LABELS["O"]


@dataclass(frozen=True, slots=True)
class PairExample:
    """One training or scoring example. ``label``: 1.0 Good, 0.0 Bad, None unlabeled; ``teacher_p_good``: the
    teacher's score s_T; ``cot``: the teacher's parsed explanation, whose spans refer to this query and title."""

    query: str
    title: str
    label: float | None = None
    teacher_p_good: float | None = None
    cot: Explanation | None = None


def side_layout(token_ids: Sequence[int], max_len: int, cls_id: int, sep_id: int, marker_id: int | None,
                ) -> tuple[list[int], int]:
    """(``[CLS] [marker] tokens… [SEP]`` ids, number of leading special tokens) with the text's tokens
    truncated so the whole fits ``max_len``."""
    head = [cls_id] if marker_id is None else [cls_id, marker_id]
    room = max_len - len(head) - 1
    if room < 1:
        raise ValueError(f"length {max_len} leaves no room for text tokens")
    return [*head, *token_ids[:room], sep_id], len(head)


def _nan_or(values: Sequence[float | None]) -> Tensor:
    return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float32)


class StudentCollator:
    """Tokenizes a list of :class:`PairExample` for one student configuration (see the module docstring)."""

    def __init__(self, tokenizer: Any, config: StudentConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.marker_ids = (self._marker(config.query_marker), self._marker(config.item_marker))

    def _marker(self, token: str) -> int | None:
        if not token:
            return None
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"marker {token!r} is not in the tokenizer's vocabulary")
        return int(token_id)

    def __call__(self, examples: Sequence[PairExample]) -> dict[str, Tensor]:
        batch = {
            "label": _nan_or([e.label for e in examples]),
            "teacher_p_good": _nan_or([e.teacher_p_good for e in examples]),
        }
        spans = [evidence_spans(e.cot) if e.cot is not None else None for e in examples]
        if self.config.interaction:
            batch.update(self._pairs(examples, spans))
        else:
            for prefix, texts, max_len, marker, side in (
                ("q", [e.query for e in examples], self.config.query_len, self.marker_ids[0], 0),
                ("t", [e.title for e in examples], self.config.title_len, self.marker_ids[1], 1),
            ):
                side_spans = [None if s is None else s[side] for s in spans]
                batch.update(self._side(prefix, texts, max_len, marker, side_spans))
        return batch

    def _side(self, prefix: str, texts: list[str], max_len: int, marker: int | None,
              spans: list[list[EvidenceSpan] | None]) -> dict[str, Tensor]:
        encoded = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        rows, factor_rows = [], []
        for token_ids, offsets, text_spans in zip(encoded["input_ids"], encoded["offset_mapping"], spans,
                                                  strict=True):
            ids, n_head = side_layout(token_ids, max_len, self.tokenizer.cls_token_id,
                                      self.tokenizer.sep_token_id, marker)
            factors = [0] * len(ids)
            if text_spans is not None:
                n_text = len(ids) - n_head - 1
                for i, factor in enumerate(attention_factors(offsets[:n_text], text_spans)):
                    factors[n_head + i] = factor or 0
            rows.append(ids)
            factor_rows.append(factors)
        width = max(len(ids) for ids in rows)
        pad = self.tokenizer.pad_token_id
        return {
            f"{prefix}_input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids in rows]),
            f"{prefix}_attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in rows]),
            f"{prefix}_factors": torch.tensor([f + [0] * (width - len(f)) for f in factor_rows],
                                              dtype=torch.float32),
        }

    def _pairs(self, examples: Sequence[PairExample],
               spans: list[tuple[list[EvidenceSpan], list[EvidenceSpan]] | None]) -> dict[str, Tensor]:
        encoded = self.tokenizer(
            [e.query for e in examples], [e.title for e in examples], truncation="longest_first",
            max_length=self.config.pair_len, padding="longest", return_offsets_mapping=True, return_tensors="pt",
        )
        offsets = encoded.pop("offset_mapping")
        shape = encoded["input_ids"].shape
        tags = torch.full(shape, OUTSIDE, dtype=torch.long)
        q_tag_mask = torch.zeros(shape, dtype=torch.bool)
        t_tag_mask = torch.zeros(shape, dtype=torch.bool)
        for row, pair_spans in enumerate(spans):
            if pair_spans is None:
                continue
            sequence_ids = encoded.sequence_ids(row)
            labels = pair_labels(offsets[row].tolist(), sequence_ids, *pair_spans)
            tags[row] = torch.tensor(labels.label_ids)
            q_tag_mask[row] = torch.tensor([sid == 0 for sid in sequence_ids])
            t_tag_mask[row] = torch.tensor([sid == 1 for sid in sequence_ids])
        batch = dict(encoded)
        batch.setdefault("token_type_ids", torch.zeros(shape, dtype=torch.long))
        return {**batch, "tags": tags, "q_tag_mask": q_tag_mask, "t_tag_mask": t_tag_mask}
