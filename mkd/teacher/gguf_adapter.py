"""``relevance teacher gguf``: the shipped peft LoRA adapter as a GGUF LoRA adapter, which llama.cpp applies on top
of the base GGUF (`mkd.teacher.llama_server`), the way llama.cpp's ``convert_lora_to_gguf.py`` writes one.

- Names: peft's ``base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`` becomes llama.cpp's
  ``blk.N.attn_q.weight.lora_a`` (the tensor name map of the `gguf` package), ``lora_B`` ``….lora_b``.
- Shapes: kept as peft stores them, A (r, in) and B (out, r): llama.cpp computes ``B @ (A @ x)`` with the
  adapter's scale ``alpha / r``.
- Rotary layout: llama.cpp's converter permutes the rows of the q and k projections of a Llama model
  (``LlamaModel.permute``: each head's two rotary halves interleaved), and the base GGUF's weights are stored so;
  the Hugging Face model that the adapter was trained on (transformers undoes the permutation when it reads the
  GGUF) has them in the original order. The rows of ``lora_b`` of q and k, the output side, get the same
  permutation; ``lora_a`` (the input side) is unchanged.
- Metadata: ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and the base's
  architecture (llama.cpp refuses an adapter of another architecture).

Needs numpy, safetensors and gguf (the `training` extra), not torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

_PEFT = re.compile(r"\Abase_model\.model\.(?P<module>.+)\.lora_(?P<side>[AB])\.weight\Z")


class AdapterConversionError(ValueError):
    """The adapter cannot be written as a llama.cpp LoRA adapter."""


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` of a q or k projection's rows (``n_head``: the heads of that projection,
    the key-value heads for k)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _base_config(base_gguf: Path) -> tuple[str, int, int, int]:
    """(architecture, blocks, attention heads, key-value heads) of the base GGUF."""
    reader = gguf.GGUFReader(base_gguf)

    def field(key: str) -> object:
        if key not in reader.fields:
            raise AdapterConversionError(f"{base_gguf}: no {key} in its metadata")
        return reader.fields[key].contents()

    arch = str(field(gguf.Keys.General.ARCHITECTURE))
    n_head = int(field(gguf.Keys.Attention.HEAD_COUNT.format(arch=arch)))  # type: ignore[call-overload]
    kv_key = gguf.Keys.Attention.HEAD_COUNT_KV.format(arch=arch)
    n_head_kv = int(reader.fields[kv_key].contents()) if kv_key in reader.fields else n_head  # type: ignore[call-overload]
    return arch, int(field(gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch))), n_head, n_head_kv  # type: ignore[call-overload]


def convert_adapter(adapter_dir: Path, base_gguf: Path, out: Path) -> dict[str, object]:
    """Write ``adapter_dir`` (peft LoRA: adapter_config.json + adapter_model.safetensors) as a GGUF LoRA adapter of
    ``base_gguf`` to ``out``; returns a summary (tensors, rank, alpha, bytes)."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("use_rslora"):
        raise AdapterConversionError(f"{adapter_dir}: only plain LoRA adapters (no DoRA, no rsLoRA) convert")
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("modules_to_save"):
        raise AdapterConversionError(f"{adapter_dir}: per-module ranks, alphas or saved modules do not convert")
    arch_name, n_blocks, n_head, n_head_kv = _base_config(base_gguf)
    arch = next((a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch_name), None)
    if arch is None:
        raise AdapterConversionError(f"{base_gguf}: unknown architecture {arch_name!r}")
    names = gguf.get_tensor_name_map(arch, n_blocks)
    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    writer = gguf.GGUFWriter(out, arch_name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    written = 0
    for key in sorted(tensors):
        match = _PEFT.match(key)
        if match is None:
            raise AdapterConversionError(f"{adapter_dir}: unexpected tensor {key!r}")
        target = names.get_name(match["module"] + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise AdapterConversionError(f"{adapter_dir}: no llama.cpp tensor for {match['module']!r}")
        data = tensors[key]
        if match["side"] == "B" and match["module"].endswith(("self_attn.q_proj", "self_attn.k_proj")):
            data = permute_rows(data, n_head if match["module"].endswith("q_proj") else n_head_kv)
        writer.add_tensor(f"{target}.lora_{match['side'].lower()}", np.ascontiguousarray(data))
        written += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"out": str(out), "tensors": written, "r": config["r"], "alpha": config["lora_alpha"],
            "bytes": out.stat().st_size, "base": str(base_gguf)}
