"""The committed model repository: versions 1 (label-only) and 2 (MKD from the release teacher) of the ColBERT
student are int8, at most 30 MB each, the config parses as Triton's ModelConfig, and each scores the test split
with ONNX Runtime alone as its committed report says; version 2, the highest, is what serving picks by default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from export.triton import read_config
from relevance_core.model_repository import resolve_model

REPO = Path(__file__).resolve().parents[2]
REPOSITORY = REPO / "model_repository"


@pytest.mark.parametrize("number", [1, 2])
def test_each_version_is_a_small_int8_colbert_with_a_card(number: int) -> None:
    version = resolve_model(REPOSITORY, version=number)
    assert version.meta.family == "colbert" and version.meta.precision == "int8"
    assert version.onnx_path.stat().st_size <= 30 * 1024 * 1024
    config = read_config(version.config_path)
    assert config.name == "colbert" and config.platform == "onnxruntime_onnx" and config.max_batch_size >= 1
    card = (version.directory / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "ROC-AUC cost vs fp32" in card and "relevance export triton" in card
    record = json.loads((version.directory / "export.json").read_text(encoding="utf-8"))
    assert record["variants"]["int8"]["roc_auc_cost"] <= 0.005


def test_version_2_is_the_default_and_was_distilled_from_the_teacher_file() -> None:
    default = resolve_model(REPOSITORY)
    assert default.version == 2
    card = (default.directory / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "--teacher" in card and "--no-teacher-labelled" in card and "unlabeled pool pairs" in card
    config = read_config(default.config_path)
    assert config.version_policy.latest.num_versions == 2  # Triton serves both during a switch


RECORDED = {1: REPO / "reports" / "colbert-v1-int8-test" / "report.json",
            2: REPO / "reports" / "colbert-v2-int8-test" / "report.json"}
"""The test-split evaluations the README reports for each shipped version."""


@pytest.mark.parametrize("number", [1, 2])
def test_it_scores_the_test_split_as_recorded_without_torch(number: int) -> None:
    """Measured, not read back: the whole test split (6,659 pairs of queries never trained on) scored through ONNX
    Runtime alone gives the ROC-AUC the committed report records, within what another CPU's int8 kernels change,
    and its served scores are calibrated probabilities (ECE at most 0.02; the map was fitted on the validation
    split)."""
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from sklearn.metrics import roc_auc_score\n"
        "from relevance_core.calibration import expected_calibration_error\n"
        "from relevance_core.data import default_pairs_path, load_pairs, split_pairs\n"
        "from mkd.scorers import load_scorer\n"
        "test = split_pairs(load_pairs(default_pairs_path()))['test']\n"
        f"scores = load_scorer({str(REPOSITORY)!r}, version={number}, show_progress=False).score(test)\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "good = np.array([p.good for p in test], dtype=float)\n"
        "print(json.dumps({'auc': roc_auc_score(good, scores), 'ece': expected_calibration_error(scores, good), "
        "'n': len(test)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    recorded = json.loads(RECORDED[number].read_text())
    assert result["n"] == recorded["n"] == 6659
    assert result["auc"] == pytest.approx(recorded["roc_auc"], abs=0.002), (result, recorded["roc_auc"])
    assert result["ece"] <= 0.02, result
    assert result["ece"] == pytest.approx(recorded["calibration"]["ece"], abs=0.003)
