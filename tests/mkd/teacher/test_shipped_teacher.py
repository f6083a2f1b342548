"""The released local teacher (`teachers/ellm-rele/`): small, documented, loadable offline on its base, and it
writes the project's grammar with a readable judgement."""

from __future__ import annotations

import json

import pytest

from relevance_core.teacher.assets import SHIPPED_ADAPTER


def test_the_release_is_small_and_says_what_it_is() -> None:
    files = {p.name: p.stat().st_size for p in SHIPPED_ADAPTER.iterdir()}
    expected = {"adapter_config.json", "adapter_model.safetensors", "adapter.gguf", "sft.json", "MODEL_CARD.md"}
    assert expected <= set(files)
    assert sum(files.values()) < 11_000_000
    config = json.loads((SHIPPED_ADAPTER / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2" and config["peft_type"] == "LORA"
    record = json.loads((SHIPPED_ADAPTER / "sft.json").read_text())
    assert record["loss_last"] < record["loss_first"]
    card = (SHIPPED_ADAPTER / "MODEL_CARD.md").read_text()
    assert "stand-in" in card and "relevance teacher sft" in card


def test_relevance_serve_starts_the_shipped_teacher_and_explain_reads_it() -> None:
    """What `relevance serve` does with no teacher URL: `relevance teacher serve` (llama.cpp) in a child process
    with the shipped adapter; the gateway's teacher handle then gets a parsed, scored CoT from it over HTTP."""
    import asyncio

    from relevance_core.teacher.process import missing_requirements
    from service.cli import _start_local_teacher
    from service.explain import Teachers
    from service.settings import Settings

    if missing_requirements():
        pytest.skip(f"the local teacher needs {missing_requirements()}")
    assert _start_local_teacher(Settings(teacher_url="http://vllm:8000/v1")) is None  # type: ignore[call-arg]
    assert _start_local_teacher(Settings(teacher_local=False)) is None  # type: ignore[call-arg]
    started = _start_local_teacher(Settings(teacher_local_threads=2))  # type: ignore[call-arg]
    assert started is not None
    try:
        assert started.wait_ready(300), "the local teacher did not come up"

        async def explain() -> list:
            teachers = Teachers(started.base_url, started.model, timeout_s=120.0, max_tokens=72,
                                gate=started.check)
            try:
                return [await teachers.judge(q, t) for q, t in (
                    ("dewalt drill", "DEWALT 20-Volt Max Lithium-Ion Cordless Drill/Driver Kit"),
                    ("toro snow blower", "Ariens Deluxe 28 in. Two-Stage Gas Snow Blower"))]
            finally:
                await teachers.aclose()

        results = asyncio.run(explain())
    finally:
        started.stop()
    for result in results:
        assert result.parsed.ok, (result.cot, result.parsed.errors)
        assert result.score is not None and 0.0 < result.score < 1.0
        assert result.p_good is not None and result.p_bad is not None and result.p_good + result.p_bad > 0.5
        assert result.model == "ellm-rele-local"
    assert any(v.aspect == "product" for r in results if r.parsed.explanation
               for v in r.parsed.explanation.item_values)
