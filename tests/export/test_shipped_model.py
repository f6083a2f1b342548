"""The committed model repository: version 1 of the ColBERT student is int8, at most 30 MB, its config parses as
Triton's ModelConfig, and it scores held-out pairs with ONNX Runtime alone, well above chance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from export.triton import read_config
from relevance_core.model_repository import resolve_model

REPO = Path(__file__).resolve().parents[2]
REPOSITORY = REPO / "model_repository"


def test_version_1_is_a_small_int8_colbert_with_a_card() -> None:
    version = resolve_model(REPOSITORY, version=1)
    assert version.meta.family == "colbert" and version.meta.precision == "int8"
    assert version.onnx_path.stat().st_size <= 30 * 1024 * 1024
    config = read_config(version.config_path)
    assert config.name == "colbert" and config.platform == "onnxruntime_onnx" and config.max_batch_size >= 1
    card = (version.directory / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "ROC-AUC cost vs fp32" in card and "relevance export triton" in card
    record = json.loads((version.directory / "export.json").read_text(encoding="utf-8"))
    assert record["variants"]["int8"]["roc_auc_cost"] <= 0.005


def test_it_scores_held_out_pairs_without_torch() -> None:
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from sklearn.metrics import roc_auc_score\n"
        "from relevance_core.data import default_pairs_path, load_pairs, split_pairs\n"
        "from mkd.evaluation.scorers import load_scorer\n"
        "test = split_pairs(load_pairs(default_pairs_path()))['test'][:400]\n"
        f"scores = load_scorer({str(REPOSITORY)!r}, version=1, show_progress=False).score(test)\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "print(json.dumps({'auc': roc_auc_score([p.good for p in test], scores), 'n': len(test)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 400 and result["auc"] > 0.65, result  # 0.74 on the whole test split
