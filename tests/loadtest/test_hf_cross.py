"""The cross-encoder as a Hugging Face sequence-classification folder for peer servers: same logits."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from loadtest.hf_cross import PARITY_PAIRS, export_hf_cross


def test_the_hf_folder_gives_the_students_logits(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cross-hf"
    record = export_hf_cross(tiny_checkpoints["cross"], out)
    assert record["parity_max_abs_logit_diff"] < 1e-4
    assert json.loads((out / "hf_cross.json").read_text())["architecture"] == "BertForSequenceClassification"
    # loaded back the way a peer server does (Auto classes, the folder alone)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.model_max_length == 48 and model.config.num_labels == 1
    batch = tokenizer([q for q, _ in PARITY_PAIRS], [t for _, t in PARITY_PAIRS], padding=True,
                      truncation="longest_first", return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits.squeeze(-1)
    assert torch.allclose(logits, torch.tensor(record["logits"]), atol=1e-4)
