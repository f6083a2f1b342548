"""`relevance ablate` (paper Table 4) on a tiny student: the chosen variants train with their λ and data, land in
one table (JSON, Markdown, plot), and a second run reads finished variants back instead of training again."""

from __future__ import annotations

import json
from pathlib import Path

from mkd.distill.ablation import run_ablation
from mkd.distill.losses import default_lambdas
from tests.mkd.students.tiny import minilm_tokenizer, tiny_config


def test_ablation_table_of_two_variants_and_its_resume(small_data: tuple[Path, Path, Path],
                                                       tmp_path: Path) -> None:
    train_path, valid_path, teacher_path = small_data
    out = tmp_path / "ablation"
    settings = {"max_steps": 3, "batch_size": 16, "backbone": tiny_config(), "tokenizer": minilm_tokenizer(),
                "show_progress": False, "layers": 1}
    table = run_ablation("colbert", train_pairs=train_path, valid_pairs=valid_path, test_pairs=valid_path,
                         teacher=teacher_path, out=out, only=["full", "label-only"], **settings)
    rows = {r["slug"]: r for r in table["rows"]}
    assert set(rows) == {"full", "label-only"}
    assert rows["full"]["lambdas"] == list(default_lambdas("colbert")) and rows["full"]["teacher"]
    assert rows["label-only"]["lambdas"][:2] == [0.0, 0.0] and not rows["label-only"]["teacher"]
    assert rows["full"]["pool"] == 16 and rows["label-only"]["pool"] == 0  # no teacher, no unlabeled pairs
    assert rows["full"]["delta_roc_auc_vs_full"] == 0.0
    assert rows["label-only"]["delta_roc_auc_vs_full"] == round(rows["label-only"]["roc_auc"]
                                                                - rows["full"]["roc_auc"], 4)
    assert all(0.0 <= r["roc_auc"] <= 1.0 and r["steps"] == 3 for r in rows.values())
    report_path = out / "full" / "test" / "report.json"
    report = json.loads(report_path.read_text())
    assert (rows["full"]["long_tail_roc_auc"], rows["full"]["head_roc_auc"]) == (report["long_tail"]["roc_auc"],
                                                                                 report["head"]["roc_auc"])
    assert table["settings"] == {"max_steps": 3, "batch_size": 16, "show_progress": False, "layers": 1}
    training = json.loads((out / "full" / "training.json").read_text())
    assert training["config"]["layers"] == 1
    assert json.loads((out / "ablation.json").read_text()) == table
    markdown = (out / "ablation.md").read_text()
    assert "| full MKD |" in markdown and "| w/o MKD (label-only) |" in markdown
    assert (out / "ablation.png").stat().st_size > 0

    written = report_path.stat().st_mtime_ns
    again = run_ablation("colbert", train_pairs=train_path, valid_pairs=valid_path, test_pairs=valid_path,
                         teacher=teacher_path, out=out, only=["full"], **settings)
    assert report_path.stat().st_mtime_ns == written  # read back, not trained again
    assert again["rows"] == [rows["full"]]
