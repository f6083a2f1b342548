"""The ColBERT-like student (the served model): one shared encoder for both sides, [Q]/[D] marker tokens, a
linear projection to ``dim`` (128) and L2-normalised token embeddings, MaxSim late interaction and a calibrated
probability of Good.

Score: s = (1/n_q) Σ_i max_j cos(q_i, d_j) over the real query tokens i and the interacting item tokens j (padding
and, if configured, punctuation excluded), so s ∈ [-1, 1]; p(Good) = sigmoid(a·s + b) with learned a, b.
Query and item encoding are separate methods: items are encoded offline and served from a cache, and
:meth:`ColBERTStudent.score_from_embeddings` scores a query against cached item embeddings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from mkd.students.base import Batch, Calibration, Student, StudentOutput
from mkd.students.config import StudentConfig


class ColBERTStudent(Student):
    family = "colbert"

    def __init__(self, config: StudentConfig, encoder: PreTrainedModel, tokenizer: Any) -> None:
        super().__init__(config, encoder, tokenizer)
        self.projection = nn.Linear(self.hidden_size, config.dim, bias=False)
        self.calibration = Calibration(config.init_scale, config.init_bias)
        self.register_buffer("skip_ids", torch.tensor(config.skip_token_ids, dtype=torch.long), persistent=False)

    def _embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        states = self.encode_tokens(input_ids, attention_mask)
        embeddings = nn.functional.normalize(self.projection(states), dim=-1)
        return embeddings * attention_mask.unsqueeze(-1).to(embeddings.dtype)

    def encode_query(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Query token embeddings, (B, Lq, dim), unit length (zero at padding)."""
        return self._embed(input_ids, attention_mask)

    def encode_item(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Item (title) token embeddings, (B, Lt, dim), unit length (zero at padding)."""
        return self._embed(input_ids, attention_mask)

    def item_mask(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The item tokens that take part in MaxSim: real tokens not on the skip-list, (B, Lt) bool."""
        return attention_mask.bool() & ~torch.isin(input_ids, self.skip_ids)

    def score_from_embeddings(self, q: Tensor, q_mask: Tensor, d: Tensor, d_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(logits of Good (B,), token cosine matrix (B, Lq, Lt)) from unit-length token embeddings."""
        q_mask, d_mask = q_mask.bool(), d_mask.bool()
        sim = torch.einsum("bqh,bth->bqt", q, d)
        best = sim.masked_fill(~d_mask.unsqueeze(1), float("-inf")).amax(dim=2)
        best = best.masked_fill(~q_mask, 0.0)
        normalised = best.sum(dim=1) / q_mask.sum(dim=1).clamp_min(1)
        return self.calibration(normalised), sim

    def forward(self, batch: Batch) -> StudentOutput:
        q_mask = batch["q_attention_mask"]
        q = self.encode_query(batch["q_input_ids"], q_mask)
        d = self.encode_item(batch["t_input_ids"], batch["t_attention_mask"])
        d_mask = self.item_mask(batch["t_input_ids"], batch["t_attention_mask"])
        logits, sim = self.score_from_embeddings(q, q_mask, d, d_mask)
        return StudentOutput(logits, token_sim=sim, q_mask=q_mask.bool(), t_mask=d_mask)
