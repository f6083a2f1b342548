from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mkd.commands.train import train as train_command
from mkd.distill.train import BEST_DIR, RECORD_FILE, train
from mkd.students import load_student
from mkd.students.scoring import CheckpointScorer
from relevance_core.data import Pair, load_pairs
from tests.mkd.students.tiny import minilm_tokenizer, tiny_config


@pytest.mark.parametrize("family", ["colbert", "cross"])
def test_training_smoke_writes_record_and_checkpoint(family: str, small_data: tuple[Path, Path, Path],
                                                     tmp_path: Path) -> None:
    train_path, valid_path, teacher_path = small_data
    out = tmp_path / "run"
    record = train(family, train_path, valid_path, teacher_path, out_dir=out, epochs=2, batch_size=16,
                   max_steps=5, backbone=tiny_config(), tokenizer=minilm_tokenizer(), show_progress=False)
    assert json.loads((out / RECORD_FILE).read_text()) == record
    assert record["examples"]["labelled"] == 64 and record["examples"]["pool"] == 16
    assert record["examples"]["labelled_with_teacher"] == 32 and record["examples"]["cot_parsed"] == 48
    assert record["total_steps"] == 5 and [e["steps"] for e in record["epochs"]] == [5, 5][: len(record["epochs"])]
    assert len(record["data"]["train"]["sha256"]) == 64 and record["data"]["teacher"]["rows"] == 48
    assert record["config"]["lambdas"] == ([1.0, 0.1, 0.5] if family == "cross" else [1.0, 0.01, 0.5])
    for epoch in record["epochs"]:
        assert {"score", "cot", "ce", "total"} <= epoch["train_loss"].keys()
        assert all(math.isfinite(v) for v in epoch["train_loss"].values())
        assert epoch["valid"]["n"] == 32 and 0.0 <= epoch["valid"]["roc_auc"] <= 1.0
    assert record["best"]["checkpoint"] == str(out / BEST_DIR)
    assert load_student(out / BEST_DIR).config.family == family
    scores = CheckpointScorer(out / BEST_DIR, show_progress=False).score(load_pairs(valid_path))
    assert scores.shape == (32,) and ((scores > 0) & (scores < 1)).all()


def test_train_command_with_a_backbone_folder(small_data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from transformers import AutoModel

    backbone = tmp_path / "tiny-backbone"
    AutoModel.from_config(tiny_config()).save_pretrained(backbone)
    minilm_tokenizer().save_pretrained(backbone)
    train_path, valid_path, _ = small_data
    app = typer.Typer()
    app.command()(train_command)
    out = tmp_path / "cli-run"
    result = CliRunner().invoke(app, ["--student", "sbert", "--lambda-score", "0", "--max-steps", "2",
                                      "--batch-size", "16", "--train-pairs", str(train_path), "--valid-pairs",
                                      str(valid_path), "--backbone", str(backbone), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["student"] == "sbert" and summary["steps"] == 2 and summary["n"] == 32
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["config"]["lambdas"] == [0.0, 0.01, 0.5] and record["student"]["backbone"] == str(backbone)
    failed = CliRunner().invoke(app, ["--student", "poly", "--lambda-score", "0", "--lambda-cot", "0",
                                      "--lambda-ce", "0", "--out", str(out)])
    assert failed.exit_code == 2


def test_interrupted_run_resumes_to_the_same_weights(small_data: tuple[Path, Path, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped mid-epoch after its step-8 checkpoint and resumed ends with the weights of an uninterrupted
    run (80 examples in batches of 16: 5 steps an epoch; checkpoints every 2 steps and at each epoch's end)."""
    import torch

    import mkd.distill.train as training

    train_path, valid_path, teacher_path = small_data
    settings = {"epochs": 2, "batch_size": 16, "checkpoint_every": 2, "backbone": tiny_config(),
                "tokenizer": minilm_tokenizer(), "show_progress": False, "graded_weight": 0.5}
    whole = train("colbert", train_path, valid_path, teacher_path, out_dir=tmp_path / "whole", **settings)

    calls = {"n": 0}
    real_loss = training.mkd_loss

    def failing_loss(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 9:  # step 9 of 10: the last checkpoint is step 8, the third of epoch 2
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(training, "mkd_loss", failing_loss)
    with pytest.raises(KeyboardInterrupt):
        train("colbert", train_path, valid_path, teacher_path, out_dir=tmp_path / "cut", **settings)
    monkeypatch.setattr(training, "mkd_loss", real_loss)
    state = torch.load(tmp_path / "cut" / training.CHECKPOINT_DIR / training.STATE_FILE, weights_only=False)
    assert state["step"] == 8 and state["epoch"] == 2 and state["step_in_epoch"] == 3
    resumed = train("colbert", train_path, valid_path, teacher_path, out_dir=tmp_path / "cut", resume=True,
                    **settings)
    assert resumed["total_steps"] == whole["total_steps"] == 10
    assert [e["steps"] for e in resumed["epochs"]] == [5, 10] and resumed["resumed"][0]["at_step"] == 8
    a, b = load_student(tmp_path / "whole" / BEST_DIR), load_student(tmp_path / "cut" / BEST_DIR)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-6), name


def test_resume_refuses_a_checkpoint_of_other_settings(small_data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    train_path, valid_path, teacher_path = small_data
    settings = {"batch_size": 16, "checkpoint_every": 2, "backbone": tiny_config(), "tokenizer": minilm_tokenizer(),
                "show_progress": False}
    train("colbert", train_path, valid_path, teacher_path, out_dir=tmp_path / "run", max_steps=3, **settings)
    with pytest.raises(ValueError, match="other settings"):
        train("colbert", train_path, valid_path, teacher_path, out_dir=tmp_path / "run", max_steps=4, resume=True,
              **settings)


def test_graded_target_mixes_rating_and_label() -> None:
    from mkd.distill.teacher_file import label_target

    good, bad = Pair("q", "t", 2.33, "1"), Pair("q", "t", 2.0, "2")
    assert label_target(good) == 1.0 and label_target(bad) == 0.0
    assert label_target(good, 0.5) == pytest.approx(0.5 + 0.5 * 0.665)
    assert label_target(bad, 1.0) == pytest.approx(0.5)


def test_smaller_student_keeps_the_first_layers(small_data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    train_path, valid_path, _ = small_data
    record = train("colbert", train_path, valid_path, out_dir=tmp_path / "small", max_steps=2, batch_size=16,
                   backbone=tiny_config(), tokenizer=minilm_tokenizer(), show_progress=False, layers=1)
    assert record["config"]["layers"] == 1
    student = load_student(tmp_path / "small" / BEST_DIR)
    assert student.encoder.config.num_hidden_layers == 1 and len(student.encoder.encoder.layer) == 1


def _synonym_pairs(products: list[str], seed: int) -> list[Pair]:
    """A task lexical overlap cannot solve: the query asks for a colour, every title has the query's product and
    a colour word of its own, and the pair is Good when that word is the colour's catalogue synonym (blue ↔ navy),
    Bad when it is another colour's."""
    import random

    synonyms = {"blue": "navy", "red": "crimson", "white": "ivory", "black": "ebony", "green": "olive",
                "yellow": "amber"}
    rng = random.Random(seed)
    pairs = []
    for k in range(160):
        colour, product = rng.choice(list(synonyms)), rng.choice(products)
        good = k % 2 == 0
        other = rng.choice([c for c in synonyms if c != colour])
        word = synonyms[colour] if good else synonyms[other]
        pairs.append(Pair(f"{colour} {product}", f"Acme {product} in {word}", 3.0 if good else 1.0,
                          f"{seed}-{k}"))
    return pairs


def test_a_few_hundred_steps_learn_what_an_untrained_student_cannot(tmp_path: Path) -> None:
    """Measured, not read back: the student learns the synonym task (validation ROC-AUC well above chance on
    products it never trained on) in 240 steps, while the untrained student of the same seed stays near chance."""
    from relevance_core.data import write_pairs

    train_path, valid_path = tmp_path / "train.tsv", tmp_path / "valid.tsv"
    write_pairs(train_path, _synonym_pairs(["lamp", "rug", "chair", "towel", "vase", "shelf"], seed=0))
    valid = _synonym_pairs(["curtain", "pillow", "mat"], seed=1)
    write_pairs(valid_path, valid)
    settings = {"batch_size": 16, "backbone": tiny_config(), "tokenizer": minilm_tokenizer(),
                "show_progress": False, "threads": 1, "lr": 1e-3}
    untrained = train("colbert", train_path, valid_path, out_dir=tmp_path / "untrained", max_steps=1, **settings)
    trained = train("colbert", train_path, valid_path, out_dir=tmp_path / "trained", epochs=24, **settings)
    assert trained["total_steps"] == 240
    before, after = untrained["epochs"][0]["valid"]["roc_auc"], trained["best"]["roc_auc"]
    assert before < 0.7 and after > 0.9, (before, after)
