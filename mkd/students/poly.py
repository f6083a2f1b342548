"""The Poly-encoder student (representation-based, Humeau et al. 2020, with the query as the context):
``n_codes`` learned codes attend over the query's token states to give m query vectors; the item's mean-pooled
vector attends over those to form one query vector; cosine similarity, calibrated to p(Good) = sigmoid(a·cos + b).
Item vectors do not depend on the query, so they can be encoded offline and cached."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from mkd.students.base import Batch, Calibration, Student, StudentOutput, cosine_matrix, mean_pool
from mkd.students.config import StudentConfig


class PolyEncoderStudent(Student):
    family = "poly"

    def __init__(self, config: StudentConfig, encoder: PreTrainedModel, tokenizer: Any) -> None:
        super().__init__(config, encoder, tokenizer)
        initializer_range = float(getattr(encoder.config, "initializer_range", 0.02))
        self.codes = nn.Parameter(torch.randn(config.n_codes, self.hidden_size) * initializer_range)
        self.calibration = Calibration(config.init_scale, config.init_bias)

    def _query_vectors(self, states: Tensor, attention_mask: Tensor) -> Tensor:
        scores = torch.einsum("mh,blh->bml", self.codes, states) / math.sqrt(self.hidden_size)
        scores = scores.masked_fill(~attention_mask.bool().unsqueeze(1), float("-inf"))
        return torch.einsum("bml,blh->bmh", scores.softmax(dim=-1), states)

    def encode_query(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The m query vectors, (B, n_codes, H)."""
        return self._query_vectors(self.encode_tokens(input_ids, attention_mask), attention_mask)

    def encode_item(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Item (title) vector, (B, H)."""
        return mean_pool(self.encode_tokens(input_ids, attention_mask), attention_mask)

    def score_from_embeddings(self, q: Tensor, d: Tensor) -> Tensor:
        """Logits of Good, (B,), from the query vectors (B, m, H) and item vectors (B, H)."""
        weights = torch.einsum("bmh,bh->bm", q, d).softmax(dim=-1)
        context = torch.einsum("bm,bmh->bh", weights, q)
        return self.calibration(nn.functional.cosine_similarity(context, d, dim=-1))

    def forward(self, batch: Batch) -> StudentOutput:
        q_mask, t_mask = batch["q_attention_mask"], batch["t_attention_mask"]
        q_states = self.encode_tokens(batch["q_input_ids"], q_mask)
        t_states = self.encode_tokens(batch["t_input_ids"], t_mask)
        logits = self.score_from_embeddings(self._query_vectors(q_states, q_mask), mean_pool(t_states, t_mask))
        return StudentOutput(logits, token_sim=cosine_matrix(q_states, t_states), q_mask=q_mask.bool(),
                             t_mask=t_mask.bool())
