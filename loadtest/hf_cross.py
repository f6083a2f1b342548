"""The project's cross-encoder student as a Hugging Face ``BertForSequenceClassification`` folder, so that peer
rerank servers (infinity-emb, text-embeddings-inference, sentence-transformers' ``CrossEncoder``) can serve the
same weights on the same candidates.

The heads differ: the student scores ``Linear(h_CLS)`` (a linear layer on the last hidden state of [CLS]), while
BERT's sequence-classification head is ``Linear(tanh(W_p · h_CLS + b_p))`` (the pooler). We keep BERT's
architecture and make its pooler an almost-identity map: ``W_p = ε·I``, ``b_p = 0`` and the classifier's weights
divided by ε, so ``tanh(ε·h)/ε ≈ h`` (relative error ≈ (ε·|h|)²/3; ε = 1e-3 gives about 1e-5 on the logit,
measured and returned as ``parity_max_abs_logit_diff``). The compute is the student's plus one HxH product per
pair on [CLS] (0.1% of the encoder's). The BIO tagger and CRF are training-only heads and are left out, as in
the ONNX export. The tokenizer's ``model_max_length`` is set to the student's pair length (48), so a peer that
truncates to it feeds the same tokens as our tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PARITY_PAIRS = [
    ("simpson angle bracket", "Simpson Strong-Tie 12-Gauge Angle"),
    ("deck stain", "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating"),
    ("shower faucet", "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Stainless (Valve Not Included)"),
    ("cordless drill 20v", "DEWALT 20-Volt MAX Lithium-Ion Cordless 1/2 in. Drill/Driver Kit"),
]


def export_hf_cross(checkpoint: Path, out: Path, *, epsilon: float = 1e-3) -> dict[str, Any]:
    """Write ``out`` (config.json, model.safetensors, tokenizer files, ``hf_cross.json``) and return the record,
    with the largest logit difference to the student on a few pairs."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from mkd.students.cross import CrossEncoderStudent

    student = CrossEncoderStudent.load(checkpoint)
    assert isinstance(student, CrossEncoderStudent)
    student.eval()
    encoder_config = student.encoder.config
    if encoder_config.model_type != "bert":
        raise ValueError(f"{checkpoint}: backbone {encoder_config.model_type!r} is not BERT; only BERT backbones "
                         "map onto BertForSequenceClassification here")
    values = encoder_config.to_dict()
    values.update(num_labels=1, architectures=["BertForSequenceClassification"], problem_type="regression")
    values.pop("id2label", None)
    values.pop("label2id", None)
    config = BertConfig(**{k: v for k, v in values.items() if k not in ("transformers_version", "model_type")})
    model = BertForSequenceClassification(config).eval()
    state = {k: v for k, v in student.encoder.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    if unexpected or sorted(missing) != ["pooler.dense.bias", "pooler.dense.weight"]:
        raise ValueError(f"backbone weights do not map onto BertModel: missing {missing}, unexpected {unexpected}")
    hidden = int(config.hidden_size)
    with torch.no_grad():
        model.bert.pooler.dense.weight.copy_(torch.eye(hidden) * epsilon)
        model.bert.pooler.dense.bias.zero_()
        model.classifier.weight.copy_(student.classifier.weight / epsilon)
        model.classifier.bias.copy_(student.classifier.bias)

    tokenizer = student.tokenizer
    pair_len = student.config.pair_len
    queries, titles = [q for q, _ in PARITY_PAIRS], [t for _, t in PARITY_PAIRS]
    batch = tokenizer(queries, titles, truncation="longest_first", max_length=pair_len, padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        ours = student.classifier(student.encode_tokens(batch["input_ids"], batch["attention_mask"],
                                                        batch["token_type_ids"])[:, 0]).squeeze(-1)
        theirs = model(**batch).logits.squeeze(-1)
    diff = float((ours - theirs).abs().max())

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.model_max_length = pair_len
    tokenizer.save_pretrained(out)
    record = {"checkpoint": str(checkpoint), "architecture": "BertForSequenceClassification", "num_labels": 1,
              "pooler": f"identity emulation: W = {epsilon:g}*I, b = 0; classifier weights / {epsilon:g}",
              "model_max_length": pair_len, "parity_max_abs_logit_diff": diff,
              "parity_pairs": len(PARITY_PAIRS), "logits": [round(float(x), 6) for x in ours]}
    (out / "hf_cross.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="cross-encoder student checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="Hugging Face model folder to write")
    args = parser.parse_args(argv)
    print(json.dumps(export_hf_cross(args.checkpoint, args.out)))


if __name__ == "__main__":
    main()
