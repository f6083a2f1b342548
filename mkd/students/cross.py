"""The BERT cross-encoder (interaction-based student): ``[CLS] query [SEP] title [SEP]`` through one encoder,
a one-logit head on [CLS] for Good, and a BIO tagger (emission projection + linear-chain CRF) over the query and
title tokens, the paper's CoT distillation by sequence tagging (§3.3.2)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import PreTrainedModel

from mkd.students.base import Batch, Student, StudentOutput
from mkd.students.config import StudentConfig
from mkd.students.crf import LinearChainCRF


class CrossEncoderStudent(Student):
    family = "cross"

    def __init__(self, config: StudentConfig, encoder: PreTrainedModel, tokenizer: Any) -> None:
        super().__init__(config, encoder, tokenizer)
        dropout = float(getattr(encoder.config, "hidden_dropout_prob", 0.1))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.hidden_size, 1)
        self.tagger = nn.Linear(self.hidden_size, config.num_tags)
        self.crf = LinearChainCRF(config.num_tags)

    def forward(self, batch: Batch) -> StudentOutput:
        states = self.encode_tokens(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        states = self.dropout(states)
        logits = self.classifier(states[:, 0]).squeeze(-1)
        return StudentOutput(logits, emissions=self.tagger(states), crf=self.crf)

    def decode_tags(self, output: StudentOutput, mask: Tensor) -> Tensor:
        """Viterbi BIO tag ids over the positions of ``mask`` (one chain), -1 elsewhere, (B, L)."""
        if output.emissions is None:
            raise ValueError("the output has no emissions")
        return self.crf.decode(output.emissions, mask.bool())
