"""Student input layouts rebuilt with Hugging Face ``tokenizers`` alone (no transformers, no torch), id for id
the same as the training collator (:mod:`mkd.students.collate`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Tokenizer

from relevance_core.model_repository import ServingMeta

Side = Literal["query", "item"]


class Encoded:
    """A padded batch: ``input_ids``, ``attention_mask`` and, for pairs, ``token_type_ids``, all (B, L) int64."""

    __slots__ = ("attention_mask", "input_ids", "token_type_ids")

    def __init__(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                 token_type_ids: np.ndarray | None = None) -> None:
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.token_type_ids = token_type_ids

    def feed(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The arrays an ONNX graph with inputs ``names`` takes."""
        values = {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                  "token_type_ids": self.token_type_ids}
        feed: dict[str, np.ndarray] = {}
        for name in names:
            value = values[name]
            if value is None:
                raise ValueError(f"the graph takes {name}, which this tokenizer does not produce")
            feed[name] = value
        return feed


def _pad(rows: list[list[int]], pad_id: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    width = width or max((len(r) for r in rows), default=1)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


class StudentTokenizer:
    """Tokenizes text for one exported student (:class:`ServingMeta` gives lengths, markers and special ids)."""

    def __init__(self, tokenizer_file: Path, meta: ServingMeta) -> None:
        self.meta = meta
        self._plain = Tokenizer.from_file(str(tokenizer_file))
        self._plain.no_truncation()
        self._plain.no_padding()
        self._pair = Tokenizer.from_file(str(tokenizer_file))
        self._pair.enable_truncation(meta.pair_len, strategy="longest_first")
        self._pair.enable_padding(pad_id=meta.pad_id, pad_token=self._pair.id_to_token(meta.pad_id) or "[PAD]")

    def _layout(self, side: Side) -> tuple[list[int], int]:
        """The side's leading special ids (``[CLS] [marker]``) and how many text tokens fit before ``[SEP]``."""
        meta = self.meta
        max_len, marker = ((meta.query_len, meta.query_marker_id) if side == "query"
                           else (meta.title_len, meta.item_marker_id))
        head = [meta.cls_id] if marker is None else [meta.cls_id, marker]
        return head, max_len - len(head) - 1

    def side_rows(self, texts: Sequence[str], side: Side) -> list[list[int]]:
        """Unpadded ``[CLS] [marker] tokens… [SEP]`` ids per text, truncated to the side's length."""
        head, room = self._layout(side)
        encodings = self._plain.encode_batch(list(texts), add_special_tokens=False)
        return [[*head, *encoding.ids[:room], self.meta.sep_id] for encoding in encodings]

    def side_offsets(self, text: str, side: Side) -> tuple[list[int], list[tuple[int, int] | None]]:
        """One text's row as `side_rows` builds it, and each position's [start, end) character span in ``text``
        (None for the special tokens): where the token-level evidence of a score points in the text."""
        head, room = self._layout(side)
        encoding = self._plain.encode(text, add_special_tokens=False)
        spans: list[tuple[int, int] | None] = [None] * len(head)
        spans += [(int(s), int(e)) for s, e in encoding.offsets[:room]]
        return [*head, *encoding.ids[:room], self.meta.sep_id], [*spans, None]

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` up to the end of its ``max_tokens``-th token (the whole text when it has no more)."""
        offsets = self._plain.encode(text, add_special_tokens=False).offsets
        return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]

    def encode_side(self, texts: Sequence[str], side: Side, *, width: int | None = None) -> Encoded:
        """A two-tower side, padded to the longest row (or to ``width``, e.g. the side's full length)."""
        return Encoded(*_pad(self.side_rows(texts, side), self.meta.pad_id, width))

    def encode_pairs(self, queries: Sequence[str], titles: Sequence[str]) -> Encoded:
        """The cross-encoder's ``[CLS] query [SEP] title [SEP]``, truncated longest-first, padded to the longest."""
        encodings = self._pair.encode_batch(list(zip(queries, titles, strict=True)))
        return Encoded(np.array([e.ids for e in encodings], dtype=np.int64),
                       np.array([e.attention_mask for e in encodings], dtype=np.int64),
                       np.array([e.type_ids for e in encodings], dtype=np.int64))

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """Token strings of ids (for the evidence a response shows)."""
        return [self._plain.id_to_token(i) or "" for i in ids]
