from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from relevance_core.cot import ASPECTS, parse, render
from relevance_core.teacher.prompt import (
    EXAMPLES,
    SYSTEM_PROMPT,
    annotation_messages,
    chatml_prompt,
    teacher_messages,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e["query"])
def test_examples_are_in_the_grammar_with_every_value_found(example: dict) -> None:
    result = parse(render(example["explanation"]), example["query"], example["title"])
    assert result.ok and not result.warnings, result
    assert result.explanation == example["explanation"].model_copy(
        update={
            "query_requirements": result.explanation.query_requirements,
            "item_values": result.explanation.item_values,
        }
    )
    assert all(r.span is not None for r in result.explanation.query_requirements)
    assert all(v.span is not None for v in result.explanation.item_values)


def test_examples_come_from_the_catalogue_with_its_labels() -> None:
    labels = {}
    for line in (REPO / "data" / "homedepot" / "pairs.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        _, query, _, title, relevance = line.split("\t")
        labels[query, title] = "Good" if float(relevance) > 2.0 else "Bad"
    for example in EXAMPLES:
        assert labels[example["query"], example["title"]] == example["explanation"].judgement
    assert {e["explanation"].judgement for e in EXAMPLES} == {"Good", "Bad"}


def test_system_prompt_states_task_aspects_grammar_and_rater_rules() -> None:
    for aspect, definition in ASPECTS.items():
        assert f"- {aspect}: {definition}" in SYSTEM_PROMPT
    assert "Final judgment: Bad-brand mismatch" in SYSTEM_PROMPT
    assert "Brand is as important as function" in SYSTEM_PROMPT
    example = next(line for line in SYSTEM_PROMPT.splitlines() if line.startswith("Thinking: query has product"))
    assert parse(example, "simpson angle bracket", "Simpson Strong-Tie 12-Gauge Angle").ok


def test_teacher_messages_are_s_q_t() -> None:
    messages = teacher_messages("dewalt drill", "DEWALT 20-Volt Max Drill")
    assert messages == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Query: dewalt drill\nProduct title: DEWALT 20-Volt Max Drill"},
    ]


def test_annotation_messages_are_s_e_q_t() -> None:
    messages = annotation_messages("dewalt drill", "DEWALT 20-Volt Max Drill")
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * len(EXAMPLES) + ["user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert messages[-1] == teacher_messages("dewalt drill", "DEWALT 20-Volt Max Drill")[-1]
    for example, user, assistant in zip(EXAMPLES, messages[1:-1:2], messages[2:-1:2], strict=True):
        assert user["content"] == f"Query: {example['query']}\nProduct title: {example['title']}"
        assert assistant["content"] == render(example["explanation"])


def test_chatml_prompt_opens_the_assistant_turn_and_continues_the_prefill() -> None:
    prompt = chatml_prompt(teacher_messages("q", "t"), prefill="Thinking:")
    assert re.fullmatch(
        r"<\|im_start\|>system\n.+<\|im_end\|>\n<\|im_start\|>user\nQuery: q\nProduct title: t<\|im_end\|>\n"
        r"<\|im_start\|>assistant\nThinking:",
        prompt,
        flags=re.DOTALL,
    )


def test_teacher_client_side_imports_without_torch() -> None:
    """The teacher's prompt, score, client and assets load without torch even through third-party imports (which
    import-linter does not follow)."""
    code = ("import sys, relevance_core.teacher.openai_client, relevance_core.teacher.prompt, "
            "relevance_core.teacher.score, relevance_core.teacher.assets; "
            "assert not {'torch', 'transformers'} & set(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
