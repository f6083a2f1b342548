"""The local teacher on llama.cpp: the GGUF LoRA conversion, the served judgement probabilities against the torch
path, the OpenAI client and `relevance teacher label --endpoint` against the real server process, and the child
process that `relevance serve` starts: health-gated, and never alive after its gateway (SIGTERM, SIGINT, SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from relevance_core.teacher.assets import SHIPPED_ADAPTER, SHIPPED_GGUF_ADAPTER
from relevance_core.teacher.openai_client import TeacherClient, TeacherUnavailable
from tests.conftest import REPO
from tests.ports import free_port

pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

PAIRS = [
    ("dewalt drill", "DEWALT 20-Volt Max Lithium-Ion Cordless Drill/Driver Kit"),
    ("3 in bottom mount nylon wheel", "Prime-Line 1-1/4 in. Bottom Mount Nylon Wheels"),
    ("pvc bracket dowels", "Carlon 3-Gang 49 cu. in. PVC Adjust-A-Box"),
    ("behr deck stain", "BEHR Premium 1 gal. Cedar Semi-Transparent Deck Stain"),
    ("white ceiling fan", "Hampton Bay 52 in. Brushed Nickel Ceiling Fan"),
]
PROBABILITY_TOLERANCE = 0.06
"""|p(llama.cpp) - p(torch)| at the judgement token, same CoT. Measured: at most 0.025. The torch path runs the
base dequantised to float32, llama.cpp on the Q4_1 blocks with 8-bit activations, so they differ a little."""


def _missing() -> list[str]:
    from relevance_core.teacher.process import missing_requirements

    return missing_requirements()


@pytest.fixture(scope="module")
def teacher_url() -> Iterator[str]:
    """`relevance teacher serve` (llama.cpp, the shipped adapter) as a real process, through the launcher the
    gateway uses."""
    from relevance_core.teacher.process import TeacherProcess, serve_command

    if _missing():
        pytest.skip(f"the local teacher needs {_missing()}")
    port = free_port()
    process = TeacherProcess(serve_command(port, threads=2), f"http://127.0.0.1:{port}/v1")
    try:
        assert process.wait_ready(180), "the llama.cpp teacher did not come up"
        yield process.base_url
    finally:
        process.stop()


def test_the_shipped_gguf_adapter_is_the_converted_peft_adapter(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from mkd.teacher.gguf_adapter import convert_adapter, permute_rows
    from relevance_core.teacher.assets import smollm2_gguf

    out = tmp_path / "adapter.gguf"
    summary = convert_adapter(SHIPPED_ADAPTER, smollm2_gguf(), out)
    assert summary["tensors"] == 420 and summary["r"] == 8 and summary["alpha"] == 16
    assert out.read_bytes() == SHIPPED_GGUF_ADAPTER.read_bytes(), "run `relevance teacher gguf` and commit it"

    reader = gguf.GGUFReader(out)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    tensors = {t.name: t for t in reader.tensors}
    peft = load_file(SHIPPED_ADAPTER / "adapter_model.safetensors")
    prefix = "base_model.model.model.layers.7."
    # llama.cpp's names; A as (r, in) and B as (out, r) (ggml lists dimensions innermost first)
    down_a, down_b = tensors["blk.7.ffn_down.weight.lora_a"], tensors["blk.7.ffn_down.weight.lora_b"]
    assert list(down_a.shape) == [1536, 8] and list(down_b.shape) == [8, 576]
    np.testing.assert_array_equal(np.asarray(down_b.data), peft[prefix + "mlp.down_proj.lora_B.weight"])
    # q and k: B's rows in llama.cpp's rotary order (9 query heads, 3 key-value heads), A as it was
    for module, name, heads in (("q_proj", "attn_q", 9), ("k_proj", "attn_k", 3)):
        original = peft[prefix + f"self_attn.{module}.lora_B.weight"]
        stored = np.asarray(tensors[f"blk.7.{name}.weight.lora_b"].data)
        np.testing.assert_array_equal(stored, permute_rows(original, heads))
        assert not np.array_equal(stored, original)
        np.testing.assert_array_equal(np.asarray(tensors[f"blk.7.{name}.weight.lora_a"].data),
                                      peft[prefix + f"self_attn.{module}.lora_A.weight"])


def test_permute_rows_interleaves_each_heads_rotary_halves() -> None:
    from mkd.teacher.gguf_adapter import permute_rows

    rows = np.arange(8)[:, None]  # 2 heads of dimension 4: halves (0, 1 | 2, 3) and (4, 5 | 6, 7)
    assert permute_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def _judge_many(url: str, pairs: list[tuple[str, str, str]], **settings: object) -> list:
    async def run() -> list:
        async with TeacherClient(url, "ellm-rele-local", timeout_s=120.0, **settings) as client:  # type: ignore[arg-type]
            return [await client.judge(q, t, prefill=prefill) for q, t, prefill in pairs]

    return asyncio.run(run())


@pytest.mark.slow  # the torch teacher's load and generation: about 90 s on the shared 2 cores
def test_served_judgement_probabilities_equal_the_torch_paths(teacher_url: str) -> None:
    """The same adapter in process (transformers + peft, the path SFT trained) and on llama.cpp: given the torch
    path's CoT as a prefill, llama.cpp's p(Good), p(Bad) at the judgement token agree within the tolerance; and
    the greedy CoT the server writes on its own is a scored, parsed judgement."""
    pytest.importorskip("peft")
    from mkd.teacher.torch_teacher import LocalTeacher

    torch_judgements = LocalTeacher(threads=2, max_new_tokens=96).judge(PAIRS)
    forced = [(j.query, j.title, j.cot[: j.cot.index("Final judgment:") + len("Final judgment:")])
              for j in torch_judgements]
    served = _judge_many(teacher_url, forced, endpoint="completions", max_tokens=3)
    differences = []
    for mine, reference in zip(served, torch_judgements, strict=True):
        assert mine.p_good is not None and reference.p_good is not None, (mine.score_reason, reference.cot)
        differences += [abs(mine.p_good - reference.p_good), abs(mine.p_bad - reference.p_bad)]
        assert mine.judgement == reference.parsed.explanation.judgement
    print(f"max |p(llama.cpp) - p(torch)| at the judgement token: {max(differences):.4f}")
    assert max(differences) <= PROBABILITY_TOLERANCE, differences

    greedy = _judge_many(teacher_url, [(q, t, "") for q, t in PAIRS], max_tokens=96)
    for result in greedy:
        assert result.parsed.ok and result.score is not None and result.model == "ellm-rele-local"
    # where both wrote the same CoT, the chat path read the same probabilities as the torch path
    same = [(r, j) for r, j in zip(greedy, torch_judgements, strict=True) if r.cot == j.cot]
    assert same
    for result, reference in same:
        assert abs(result.p_good - reference.p_good) <= PROBABILITY_TOLERANCE


def test_grounded_decoding_writes_only_values_of_the_pair(teacher_url: str) -> None:
    """Under each pair's grammar (structured_outputs.grammar, sent by the client) every value the teacher writes
    is located in the query or the title, where free decoding writes "bracket dowels" into a title without
    them; the probabilities are the model's own (where both decodings write the same CoT, the same score); a
    grammar llama.cpp cannot parse is a 400 and another structured-output kind a 422, each naming the field."""
    free = _judge_many(teacher_url, [(q, t, "") for q, t in PAIRS], max_tokens=96)
    grounded = _judge_many(teacher_url, [(q, t, "") for q, t in PAIRS], max_tokens=96, grounded=True)
    for result in grounded:
        explanation = result.parsed.explanation
        assert result.parsed.ok and explanation is not None and result.score is not None, result.cot
        assert all(r.span is not None for r in explanation.query_requirements), result.cot
        assert all(v.span is not None for v in explanation.item_values), result.cot
    unlocated = [v.value for r in free for v in r.parsed.explanation.item_values if v.span is None]
    assert "bracket dowels" in unlocated  # the shipped adapter, decoding freely (the reported example)
    same = [(f, g) for f, g in zip(free, grounded, strict=True) if f.cot == g.cot]
    assert same and all(f.score == pytest.approx(g.score, abs=1e-6) for f, g in same)

    from relevance_core.teacher.prompt import teacher_messages

    messages = teacher_messages("drill", "DEWALT Drill")
    bad = httpx.post(f"{teacher_url}/chat/completions", timeout=60, json={
        "messages": messages, "structured_outputs": {"grammar": "root ::= ("}})
    assert bad.status_code == 400 and "structured_outputs.grammar" in bad.text
    other = httpx.post(f"{teacher_url}/chat/completions", timeout=60, json={
        "messages": messages, "structured_outputs": {"json": {"type": "object"}}})
    assert other.status_code == 422 and "json" in other.text


def test_concurrent_requests_are_served_one_at_a_time_with_the_sequential_answers(teacher_url: str) -> None:
    """Requests that arrive together queue on the model's one thread: each gets the CoT and the probabilities it
    gets alone (one KV state, reset to the system prompt per request)."""
    pairs = [(q, t, "") for q, t in PAIRS[:3]]
    alone = _judge_many(teacher_url, pairs, max_tokens=48)

    async def together() -> list:
        async with TeacherClient(teacher_url, "ellm-rele-local", timeout_s=120.0, max_tokens=48) as client:
            return await asyncio.gather(*(client.judge(q, t) for q, t, _ in pairs))

    for one, other in zip(alone, asyncio.run(together()), strict=True):
        assert (one.cot, one.p_good, one.p_bad) == (other.cot, other.p_good, other.p_bad)


def test_only_the_teacher_prompt_is_served(teacher_url: str) -> None:
    from relevance_core.teacher.prompt import teacher_messages

    messages = teacher_messages("drill", "DEWALT Drill")
    ok = httpx.post(f"{teacher_url}/chat/completions", json={"messages": messages, "max_tokens": 4}, timeout=60)
    assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] == "length"
    wrong = [{"role": "system", "content": "You are a pirate."}, messages[1]]
    refused = httpx.post(f"{teacher_url}/chat/completions", json={"messages": wrong}, timeout=60)
    assert refused.status_code == 400 and "messages[0]" in refused.text
    refused = httpx.post(f"{teacher_url}/completions", json={"prompt": "Hello"}, timeout=60)
    assert refused.status_code == 400 and "prompt" in refused.text


def test_teacher_label_endpoint_writes_the_teacher_file(teacher_url: str, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("query\tproduct_title\trelevance\n" + "".join(f"{q}\t{t}\t3.0\n" for q, t in PAIRS[:3]))
    out = tmp_path / "teacher.jsonl"
    done = subprocess.run([sys.executable, "-m", "relevance.cli", "teacher", "label", "--pairs", str(pairs),
                           "--out", str(out), "--endpoint", f"ellm-rele-local={teacher_url}", "--concurrency", "2"],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["query"], r["product_title"]) for r in rows) == sorted(PAIRS[:3])
    assert all(r["score"] is not None and r["judgement"] in ("Good", "Bad") for r in rows)
    assert json.loads(done.stdout.strip().splitlines()[-1])["out"] == str(out)


def test_evaluate_explanations_on_a_small_file(teacher_url: str, tmp_path: Path) -> None:
    """The evaluator against the real server: 8 test-split pairs from whole queries, compared with the annotator
    and the shipped ColBERT; every output written and the numbers consistent with the rows."""
    from relevance_core.data import (
        build_catalogue,
        default_pairs_path,
        load_pairs,
        split_pairs,
        write_catalogue,
        write_pairs,
    )

    everything = load_pairs(default_pairs_path())
    pairs, catalogue = tmp_path / "pairs.tsv", tmp_path / "catalogue.tsv"
    write_pairs(pairs, split_pairs(everything)["test"][:40])
    write_catalogue(catalogue, build_catalogue(everything))
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "relevance.cli", "teacher", "evaluate-explanations", "--pairs",
                           str(pairs), "--limit", "8", "--endpoint", f"ellm-rele-local={teacher_url}", "--out",
                           str(out), "--max-tokens", "96", "--catalogue", str(catalogue)],
                          capture_output=True, text=True, cwd=REPO, timeout=600,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"report.md", "report.json", "results.jsonl", "explanations.png"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    n = report["pairs"]
    assert 8 <= n == len(rows) < 40 and "whole queries" in report["sample"]
    summary = report["endpoints"]["ellm-rele-local"]
    assert summary["answered"] == n and summary["latency_ms"]["p50"] > 0
    assert summary["judgement"]["accuracy"] == pytest.approx(
        sum(r["judgement"] == ("Good" if r["good"] else "Bad") for r in rows) / n)
    assert summary["grounding"]["fully_located"] == pytest.approx(sum(r["located"] for r in rows) / n)
    assert summary["grounding"]["hallucinated_values"] == sum(len(r["hallucinated"]) for r in rows)
    assert summary["student"]["pairs"] == n and report["student"].startswith("colbert:")
    assert all(0.0 <= r["student_score"] <= 1.0 for r in rows)
    assert report["with_reference"] == sum(r["reference"] is not None for r in rows)
    assert "| ellm-rele-local |" in (out / "report.md").read_text()


def test_explain_adds_the_students_view_and_picks_the_teacher(teacher_url: str, tmp_path: Path) -> None:
    """The analyst's view through the gateway: the teacher's explanation beside the served student's score (the
    same as /v1/score's for the pair) and token evidence, the disagreement flag, and the model field choosing
    among the configured teachers (a down one: 503; an unknown one: 422 naming the field)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.mkd.teacher.servers import refused_port

    query, title = PAIRS[0]
    with refused_port() as down:
        settings = Settings(model_repository=REPO / "model_repository", store="local",  # type: ignore[call-arg]
                            store_dir=tmp_path, grpc_port=None, teacher_url=teacher_url,
                            teacher_model="ellm-rele-local", teacher_models={"down": down}, teacher_retries=0,
                            teacher_timeout_s=60.0)
        with TestClient(create_app(settings)) as client:
            answer = client.post("/v1/explain", json={"query": query, "title": title})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            student = body["student"]
            assert student["model_version"].startswith("colbert:") and body["student_error"] is None
            scored = client.post("/v1/score", json={"query": query, "items": [{"id": "x", "title": title}],
                                                    "evidence": True}).json()["scores"][0]
            assert student["score"] == pytest.approx(scored["score"], abs=1e-6)
            assert student["label"] == scored["label"]
            assert [{k: e[k] for k in ("query_token", "title_token", "similarity")} for e in student["evidence"]] \
                == scored["evidence"]
            assert {e["query_token"] for e in student["evidence"]} >= {"drill"}
            assert body["mode"] == "teacher" and body["judgement"] in ("Good", "Bad")
            assert body["disagreement"] == (body["judgement"] != student["label"])

            chosen = client.post("/v1/explain", json={"query": query, "title": title, "model": "down"})
            assert chosen.status_code == 503 and "cannot reach" in chosen.json()["error"]["message"]
            unknown = client.post("/v1/explain", json={"query": query, "title": title, "model": "gpt-9"})
            assert unknown.status_code == 422 and unknown.json()["error"]["fields"][0]["loc"] == ["body", "model"]
            assert "down, ellm-rele-local" in unknown.json()["error"]["fields"][0]["msg"]


def test_the_llm_writer_reaches_the_students_verdict_under_the_decision_grammar(teacher_url: str,
                                                                              tmp_path: Path) -> None:
    """writer=llm: the teacher writes the CoT, but the decision grammar fixes the verdict to the student's (Good
    and Bad pairs alike), a Bad CoT names an unmet requirement and a Good one none, and every value is located."""
    from fastapi.testclient import TestClient

    from relevance_core.cot import parse
    from service.app import create_app
    from service.settings import Settings

    settings = Settings(model_repository=REPO / "model_repository", store="local",  # type: ignore[call-arg]
                        store_dir=tmp_path, grpc_port=None, teacher_url=teacher_url,
                        teacher_model="ellm-rele-local", explain_mode="decision", teacher_timeout_s=120.0)
    verdicts = set()
    with TestClient(create_app(settings)) as client:
        for query, title in [*PAIRS, ("simpson angle bracket", "BEHR Premium 1 gal. Deep Base Concrete Stain")]:
            body = client.post("/v1/explain", json={"query": query, "title": title, "writer": "llm"}).json()
            assert (body["mode"], body["writer"], body["model"]) == ("decision", "llm", "ellm-rele-local"), body
            served = client.post("/v1/score", json={"query": query, "items": [{"id": "x", "title": title}]}).json()
            assert body["verdict"] == body["judgement"] == served["scores"][0]["label"]
            parsed = parse(body["cot"], query, title)
            assert parsed.ok and parsed.explanation is not None, body["cot"]
            values = [*parsed.explanation.query_requirements, *parsed.explanation.item_values]
            assert all(v.span is not None for v in values), body["cot"]
            mismatches = [v for v in parsed.explanation.item_values if not v.matches]
            assert bool(mismatches or "is not met" in (body["note"] or "")) == (body["verdict"] == "Bad"), body["cot"]
            verdicts.add(body["verdict"])
    assert verdicts == {"Good", "Bad"}


def test_the_shadow_teacher_judges_live_pairs_and_feeds_the_agreement_series(teacher_url: str,
                                                                           tmp_path: Path) -> None:
    """Every scored pair sampled to the real teacher: pairs sent with titles, and by id with the title from
    the catalogue (catalog); the judgements fill the agreement counters and the score histograms."""
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from service.app import create_app
    from service.settings import Settings

    catalogue = tmp_path / "catalogue.tsv"
    catalogue.write_text("product_uid\tproduct_title\n100001\t" + PAIRS[3][1] + "\n")
    settings = Settings(model_repository=REPO / "model_repository", store="local",  # type: ignore[call-arg]
                        store_dir=tmp_path / "index", grpc_port=None, teacher_url=teacher_url,
                        teacher_model="ellm-rele-local", shadow_rate=1.0, shadow_queue_size=8,
                        catalog=catalogue)

    def metrics(client: TestClient) -> dict[tuple[str, str], float]:
        return {(s.name, next(iter(s.labels.values()), "")): s.value for family in text_string_to_metric_families(
            client.get("/metrics").text) for s in family.samples}

    with TestClient(create_app(settings)) as client:
        for query, title in PAIRS[:2]:
            assert client.post("/v1/score", json={"query": query, "items": [{"id": "t", "title": title}]}
                               ).status_code == 200
        # by id from the store: 100001 is in the catalogue (its title is looked up), 100002 is not (skipped)
        stored = {"items": [{"id": "100001", "title": PAIRS[3][1]}, {"id": "100002", "title": PAIRS[4][1]}]}
        assert client.put("/v1/items", json=stored).status_code == 200
        by_id = client.post("/v1/score", json={"query": PAIRS[3][0], "items": [{"id": "100001"}, {"id": "100002"}]})
        assert [s["source"] for s in by_id.json()["scores"]] == ["store", "store"]
        deadline = time.monotonic() + 120
        while metrics(client)[("relevance_shadow_judgements_total", "ok")] < 3:
            assert time.monotonic() < deadline, {k: v for k, v in metrics(client).items() if "shadow" in k[0]}
            time.sleep(0.2)
        seen = metrics(client)
    assert seen[("relevance_shadow_pairs_total", "queued")] == 3 and seen[("relevance_shadow_pairs_total",
                                                                          "no_title")] == 1
    compared = seen[("relevance_shadow_comparisons_total", "agree")] + seen[("relevance_shadow_comparisons_total",
                                                                           "disagree")]
    assert compared == 3
    assert seen[("relevance_shadow_score_count", "teacher")] == seen[("relevance_shadow_score_count", "student")] == 3
    assert 0.0 < seen[("relevance_shadow_score_sum", "teacher")] < 3.0


# ---- the child process of the gateway ----------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_gate_says_starting_then_exited() -> None:
    from relevance_core.teacher.process import TeacherProcess

    port = free_port()
    never_ready = TeacherProcess([sys.executable, "-c", "import time; time.sleep(60)"], f"http://127.0.0.1:{port}/v1",
                                 nice=7)
    try:
        with pytest.raises(TeacherUnavailable, match="starting") as starting:
            never_ready.check()
        assert starting.value.retry_after_s == 2.0
        # below the gateway in CPU priority, so that scoring goes first
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, never_ready.process.pid) == min(own + 7, 19)
    finally:
        assert never_ready.stop(grace_s=2) == -signal.SIGTERM
    crashed = TeacherProcess([sys.executable, "-c", "raise SystemExit(3)"], f"http://127.0.0.1:{port}/v1")
    crashed.process.wait(timeout=30)
    with pytest.raises(TeacherUnavailable, match="exited with code 3"):
        crashed.check()
    assert not crashed.wait_ready(1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_the_local_teacher_never_outlives_the_gateway(sig: signal.Signals, tmp_path: Path) -> None:
    """`relevance serve` with the embedded defaults starts the llama.cpp teacher as its child; scoring is up at
    once, /v1/explain in teacher mode answers 503 "starting" and then the teacher's explanation (decision mode
    needs no teacher: it answers at once); whatever signal stops the gateway, the child is gone right after."""
    from tests.service.gateway_process import GatewayProcess, local_settings

    if _missing():
        pytest.skip(f"the local teacher needs {_missing()}")
    gateway = GatewayProcess(local_settings(REPO / "model_repository", tmp_path / "index", teacher_local="true",
                                            teacher_local_threads=2))
    with gateway:
        assert gateway.process is not None
        children = _children(gateway.process.pid)
        assert len(children) == 1, children
        (teacher,) = children
        score = httpx.post(f"{gateway.url}/v1/score", json={"query": "drill", "items": [{"id": "x", "title":
                                                                                         "DEWALT Drill"}]})
        assert score.status_code == 200
        decision = httpx.post(f"{gateway.url}/v1/explain", json={"query": PAIRS[0][0], "title": PAIRS[0][1]})
        assert decision.status_code == 200 and decision.json()["mode"] == "decision", decision.text
        deadline = time.monotonic() + 180
        while True:
            answer = httpx.post(f"{gateway.url}/v1/explain", json={"query": PAIRS[0][0], "title": PAIRS[0][1],
                                                                  "mode": "teacher"}, timeout=120)
            if answer.status_code == 200:
                break
            assert answer.status_code == 503 and "starting" in answer.json()["error"]["message"], answer.text
            assert int(answer.headers["Retry-After"]) >= 1
            assert time.monotonic() < deadline, "the local teacher did not become ready"
            time.sleep(0.5)
        assert answer.json()["model"] == "ellm-rele-local" and answer.json()["score"] is not None
        os.kill(gateway.process.pid, sig)
        gateway.process.wait(timeout=60)
        deadline = time.monotonic() + 15
        while _alive(teacher):
            assert time.monotonic() < deadline, f"the teacher (pid {teacher}) outlived the gateway ({sig.name})"
            time.sleep(0.1)
