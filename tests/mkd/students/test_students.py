from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mkd.students import (
    FAMILIES,
    ColBERTStudent,
    CrossEncoderStudent,
    PairExample,
    Student,
    StudentCollator,
    StudentConfig,
    load_student,
)
from mkd.students.config import CONFIG_FILE
from tests.mkd.students.tiny import QUERY, TITLE, example_cot, minilm_tokenizer, tiny_student

EXAMPLES = [
    PairExample(QUERY, TITLE, label=1.0, cot=example_cot()),
    PairExample("deck over", "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating",
                teacher_p_good=0.3),
    PairExample("ceiling fan with remote control and light kit", "Hampton Bay 52 in. Ceiling Fan"),
]


def _batch(family: str, examples: list[PairExample] = EXAMPLES, **options: object) -> tuple:
    torch.manual_seed(0)
    student = tiny_student(family, **options).eval()  # type: ignore[arg-type]
    return student, StudentCollator(student.tokenizer, student.config)(examples)


@pytest.mark.parametrize("family", FAMILIES)
def test_output_shapes(family: str) -> None:
    student, batch = _batch(family)
    with torch.no_grad():
        output = student(batch)
    assert output.logits_good.shape == (3,)
    assert ((output.p_good > 0) & (output.p_good < 1)).all()
    if family == "cross":
        assert output.emissions is not None and output.emissions.shape == (*batch["input_ids"].shape, 5)
        assert output.token_sim is None
    else:
        assert output.token_sim is not None and output.emissions is None
        assert output.token_sim.shape == (3, batch["q_input_ids"].shape[1], batch["t_input_ids"].shape[1])
        assert batch["q_input_ids"].shape[1] <= 16 and batch["t_input_ids"].shape[1] <= 32


def test_colbert_scores_from_separately_encoded_sides() -> None:
    student, batch = _batch("colbert")
    assert isinstance(student, ColBERTStudent)
    with torch.no_grad():
        output = student(batch)
        q = student.encode_query(batch["q_input_ids"], batch["q_attention_mask"])
        # The item side encoded in another batch, one item at a time, as from an offline cache.
        items = [student.encode_item(batch["t_input_ids"][i : i + 1], batch["t_attention_mask"][i : i + 1])
                 for i in range(3)]
        d = torch.cat(items)
        d_mask = student.item_mask(batch["t_input_ids"], batch["t_attention_mask"])
        logits, sim = student.score_from_embeddings(q, batch["q_attention_mask"], d, d_mask)
    assert q.shape == (3, batch["q_input_ids"].shape[1], 128)
    assert torch.allclose(q.norm(dim=-1)[batch["q_attention_mask"].bool()], torch.ones(()), atol=1e-5)
    assert torch.allclose(logits, output.logits_good, atol=1e-5)
    assert torch.allclose(sim, output.token_sim, atol=1e-5)
    # MaxSim normalised by the real query tokens lies in [-1, 1].
    normalised = (logits - student.calibration.bias) / student.calibration.scale
    assert (normalised.abs() <= 1 + 1e-5).all()


def test_colbert_layout_markers_and_punctuation_skip_list() -> None:
    student, batch = _batch("colbert")
    tokenizer = minilm_tokenizer()
    assert batch["q_input_ids"][0, :2].tolist() == [tokenizer.cls_token_id,
                                                    tokenizer.convert_tokens_to_ids("[unused0]")]
    assert batch["t_input_ids"][0, 1] == tokenizer.convert_tokens_to_ids("[unused1]")
    tokens = tokenizer.convert_ids_to_tokens(batch["t_input_ids"][0])
    kept = student.item_mask(batch["t_input_ids"], batch["t_attention_mask"])[0]
    assert [t for t, k in zip(tokens, kept, strict=True) if not k and t != "[PAD]"] == ["-", "-"]
    plain, _ = _batch("colbert", mask_punctuation=False)
    assert plain.config.skip_token_ids == []


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_does_not_change_the_score(family: str) -> None:
    short = PairExample("angle bracket", "Simpson Angle")
    long = PairExample("ceiling fan with remote control and light kit",
                       "Hampton Bay 52 in. Ceiling Fan with Light Kit and Remote Control, Brushed Nickel")
    student, alone = _batch(family, [short])
    padded = StudentCollator(student.tokenizer, student.config)([short, long])
    key = "input_ids" if family == "cross" else "t_input_ids"
    assert padded[key].shape[1] > alone[key].shape[1]
    with torch.no_grad():
        assert torch.allclose(student(alone).logits_good[0], student(padded).logits_good[0], atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(family: str, tmp_path: Path) -> None:
    student, batch = _batch(family, query_len=12, title_len=24)
    directory = student.save_pretrained(tmp_path / family)
    assert {CONFIG_FILE, "config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in directory.iterdir()}
    loaded = load_student(directory).eval()
    assert type(loaded) is type(student)
    assert loaded.config == student.config and loaded.config.query_len == 12
    assert StudentConfig.load(directory).family == family
    assert type(Student.load(directory)) is type(student) is type(type(student).load(directory))
    other = ColBERTStudent if family != "colbert" else CrossEncoderStudent
    with pytest.raises(ValueError, match="holds a"):
        other.load(directory)
    reloaded_batch = StudentCollator(loaded.tokenizer, loaded.config)(EXAMPLES)
    assert all(torch.equal(reloaded_batch[k], v) for k, v in batch.items() if v.dtype != torch.float32)
    with torch.no_grad():
        assert torch.equal(loaded(batch).logits_good, student(batch).logits_good)


def test_cross_encoder_decodes_tags_per_chain() -> None:
    student, batch = _batch("cross")
    assert isinstance(student, CrossEncoderStudent)
    with torch.no_grad():
        output = student(batch)
        tags = student.decode_tags(output, batch["q_tag_mask"])
    assert ((tags >= 0) == batch["q_tag_mask"]).all()
    assert tags.max() < 5


def test_unknown_family_and_missing_tokenizer_are_rejected() -> None:
    from mkd.students import build_student
    from tests.mkd.students.tiny import tiny_config

    with pytest.raises(ValueError, match="unknown student family"):
        tiny_student("bm25")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokenizer"):
        build_student("colbert", tiny_config())
