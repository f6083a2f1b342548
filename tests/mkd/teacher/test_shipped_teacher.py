"""The released local teacher (`mkd/teacher/adapter/`): small, documented, loadable offline on its base, and it
writes the project's grammar with a readable judgement."""

from __future__ import annotations

import json

import pytest

from mkd.teacher.local import SHIPPED_ADAPTER

pytest.importorskip("peft")


def test_the_release_is_small_and_says_what_it_is() -> None:
    files = {p.name: p.stat().st_size for p in SHIPPED_ADAPTER.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "sft.json", "MODEL_CARD.md"} <= set(files)
    assert sum(files.values()) < 8_000_000
    config = json.loads((SHIPPED_ADAPTER / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2" and config["peft_type"] == "LORA"
    record = json.loads((SHIPPED_ADAPTER / "sft.json").read_text())
    assert record["loss_last"] < record["loss_first"]
    card = (SHIPPED_ADAPTER / "MODEL_CARD.md").read_text()
    assert "stand-in" in card and "relevance teacher sft" in card


def test_the_shipped_teacher_writes_a_scored_cot() -> None:
    from mkd.teacher.local import LocalTeacher

    teacher = LocalTeacher(max_new_tokens=72)
    judged = teacher.judge([("dewalt drill", "DEWALT 20-Volt Max Lithium-Ion Cordless Drill/Driver Kit"),
                            ("toro snow blower", "Ariens Deluxe 28 in. Two-Stage Gas Snow Blower")])
    for judgement in judged:
        assert judgement.parsed.ok, (judgement.cot, judgement.parsed.errors)
        assert judgement.score is not None and 0.0 < judgement.score < 1.0
        assert judgement.p_good is not None and judgement.p_bad is not None
        assert judgement.p_good + judgement.p_bad > 0.5  # the judgement position holds Good or Bad
    aspects = {r.aspect for j in judged for r in j.parsed.explanation.query_requirements}  # type: ignore[union-attr]
    assert "product" in aspects
