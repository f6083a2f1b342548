"""The Sentence-BERT student (representation-based): query and title encoded separately by one shared encoder,
mean-pooled, cosine similarity, calibrated to p(Good) = sigmoid(a·cos + b) with learned a, b."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import PreTrainedModel

from mkd.students.base import Batch, Calibration, Student, StudentOutput, cosine_matrix, mean_pool
from mkd.students.config import StudentConfig


class SentenceBertStudent(Student):
    family = "sbert"

    def __init__(self, config: StudentConfig, encoder: PreTrainedModel, tokenizer: Any) -> None:
        super().__init__(config, encoder, tokenizer)
        self.calibration = Calibration(config.init_scale, config.init_bias)

    def encode_query(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Query vector, (B, H)."""
        return mean_pool(self.encode_tokens(input_ids, attention_mask), attention_mask)

    def encode_item(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Item (title) vector, (B, H)."""
        return mean_pool(self.encode_tokens(input_ids, attention_mask), attention_mask)

    def score_from_embeddings(self, q: Tensor, d: Tensor) -> Tensor:
        """Logits of Good, (B,), from query and item vectors."""
        return self.calibration(nn.functional.cosine_similarity(q, d, dim=-1))

    def forward(self, batch: Batch) -> StudentOutput:
        q_mask, t_mask = batch["q_attention_mask"], batch["t_attention_mask"]
        q_states = self.encode_tokens(batch["q_input_ids"], q_mask)
        t_states = self.encode_tokens(batch["t_input_ids"], t_mask)
        logits = self.score_from_embeddings(mean_pool(q_states, q_mask), mean_pool(t_states, t_mask))
        return StudentOutput(logits, token_sim=cosine_matrix(q_states, t_states), q_mask=q_mask.bool(),
                             t_mask=t_mask.bool())
