from __future__ import annotations

import math

import pytest
import torch

from mkd.students import PairExample, StudentCollator, StudentConfig
from mkd.students.collate import side_layout
from mkd.students.config import family_defaults
from relevance_core.cot import BIO_LABELS
from tests.mkd.students.tiny import QUERY, TITLE, example_cot, minilm_tokenizer

# The MiniLM tokenizer splits the pair as
#   query: simpson | angle | bracket | gal ##vani ##zed
#   title: simpson strong - tie | 12 - gauge | angle | stainless
# The CoT: brand simpson ~ Simpson Strong-Tie (match), product angle bracket ~ Angle (match),
# material galvanized ~ Stainless (mismatch: the query's galvanized requirement is not met).


def _collate(family: str, examples: list[PairExample]) -> dict[str, torch.Tensor]:
    config = StudentConfig(family=family, **family_defaults(family))  # type: ignore[arg-type]
    return StudentCollator(minilm_tokenizer(), config)(examples)


def test_two_tower_factors_line_up_with_the_cot_spans() -> None:
    batch = _collate("colbert", [PairExample(QUERY, TITLE, cot=example_cot()), PairExample(QUERY, TITLE)])
    tokenizer = minilm_tokenizer()
    q_tokens = tokenizer.convert_ids_to_tokens(batch["q_input_ids"][0])
    t_tokens = tokenizer.convert_ids_to_tokens(batch["t_input_ids"][0])
    assert q_tokens == ["[CLS]", "[unused0]", "simpson", "angle", "bracket", "gal", "##vani", "##zed", "[SEP]"]
    assert batch["q_factors"][0].tolist() == [0, 0, 1, 1, 1, -1, -1, -1, 0]
    assert t_tokens == ["[CLS]", "[unused1]", "simpson", "strong", "-", "tie", "12", "-", "gauge", "angle",
                        "stainless", "[SEP]"]
    assert batch["t_factors"][0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 1, -1, 0]
    # The same pair without a CoT has no factors.
    assert batch["q_factors"][1].abs().sum() == 0 and batch["t_factors"][1].abs().sum() == 0


def test_cross_encoder_bio_tags_line_up_with_the_cot_spans() -> None:
    batch = _collate("cross", [PairExample(QUERY, TITLE, label=0.0, cot=example_cot()), PairExample("a", "b")])
    tokens = minilm_tokenizer().convert_ids_to_tokens(batch["input_ids"][0])
    names = {i: name for name, i in BIO_LABELS.items()}
    tagged = [(token, names[int(tag)], "q" if q else "t" if t else "-") for token, tag, q, t in
              zip(tokens, batch["tags"][0], batch["q_tag_mask"][0], batch["t_tag_mask"][0], strict=True)]
    assert tagged == [
        ("[CLS]", "O", "-"),
        ("simpson", "B-rele", "q"), ("angle", "B-rele", "q"), ("bracket", "I-rele", "q"),
        ("gal", "B-irrele", "q"), ("##vani", "I-irrele", "q"), ("##zed", "I-irrele", "q"),
        ("[SEP]", "O", "-"),
        ("simpson", "B-rele", "t"), ("strong", "I-rele", "t"), ("-", "I-rele", "t"), ("tie", "I-rele", "t"),
        ("12", "O", "t"), ("-", "O", "t"), ("gauge", "O", "t"), ("angle", "B-rele", "t"),
        ("stainless", "B-irrele", "t"),
        ("[SEP]", "O", "-"),
    ]
    assert batch["token_type_ids"][0].tolist() == [0] * 8 + [1] * 10
    assert not batch["q_tag_mask"][1].any() and not batch["t_tag_mask"][1].any()
    assert batch["label"][0] == 0.0 and math.isnan(batch["label"][1])


def test_truncation_keeps_specials_and_factors_of_kept_tokens() -> None:
    config = StudentConfig(family="colbert", query_len=5, title_len=6, **family_defaults("colbert"))
    batch = StudentCollator(minilm_tokenizer(), config)([PairExample(QUERY, TITLE, cot=example_cot())])
    assert batch["q_input_ids"].shape == (1, 5) and batch["t_input_ids"].shape == (1, 6)
    assert batch["q_factors"][0].tolist() == [0, 0, 1, 1, 0]
    assert batch["t_factors"][0].tolist() == [0, 0, 1, 1, 1, 0]
    assert batch["q_input_ids"][0, -1] == minilm_tokenizer().sep_token_id


def test_side_layout() -> None:
    assert side_layout([7, 8, 9], 5, cls_id=1, sep_id=2, marker_id=3) == ([1, 3, 7, 8, 2], 2)
    assert side_layout([7, 8, 9], 8, cls_id=1, sep_id=2, marker_id=None) == ([1, 7, 8, 9, 2], 1)
    with pytest.raises(ValueError, match="no room"):
        side_layout([7], 2, cls_id=1, sep_id=2, marker_id=3)
    with pytest.raises(ValueError, match="not in the tokenizer"):
        StudentCollator(minilm_tokenizer(), StudentConfig(family="colbert", query_marker="[Q]"))
