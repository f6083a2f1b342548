"""`relevance export calibrate` on a tiny exported version: the map lands in serving.json, the runtime (hence the
gateway and `relevance evaluate`) applies it, the ranking stays the model's, and a broken map is refused at load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from relevance.cli import app
from relevance_core.data import load_pairs, write_pairs
from relevance_core.model_repository import ModelRepositoryError, load_version_directory
from service.core.runtime import runtime_model


def test_calibrate_stores_the_map_and_the_runtime_applies_it(tiny_model_repository: Path, vendored_pairs: Path,
                                                             tmp_path: Path) -> None:
    version_dir = tmp_path / "colbert" / "1"
    shutil.copytree(tiny_model_repository / "colbert" / "1", version_dir)
    pairs = load_pairs(vendored_pairs)[:300]
    write_pairs(tmp_path / "valid.tsv", pairs)
    texts = ([p.query for p in pairs], [p.product_title for p in pairs])
    before = runtime_model(load_version_directory(version_dir)).score_pairs(*texts)
    result = CliRunner().invoke(app, ["export", "calibrate", "--version-dir", str(version_dir), "--pairs",
                                      str(tmp_path / "valid.tsv"), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["roc_auc_after"] == pytest.approx(record["roc_auc_before"])
    assert record["ece_in_sample"] < record["ece_before"]
    assert (tmp_path / "report" / "reliability.png").stat().st_size > 1000
    version = load_version_directory(version_dir)
    assert version.meta.calibration_map is not None and version.meta.calibration_map["fitted_on"]["rows"] == 300
    after = runtime_model(version).score_pairs(*texts)
    assert np.allclose(after, version.meta.probability_map()(before))  # type: ignore[misc]
    assert np.array_equal(np.argsort(after, kind="stable"), np.argsort(before, kind="stable"))
    # a second calibration fits on the model's own probability again, not on the calibrated one
    again = CliRunner().invoke(app, ["export", "calibrate", "--version-dir", str(version_dir), "--pairs",
                                     str(tmp_path / "valid.tsv")])
    assert json.loads(again.stdout.strip().splitlines()[-1])["ece_before"] == pytest.approx(record["ece_before"])
    card = (version_dir / "MODEL_CARD.md").read_text()
    assert card.count("## Calibration") == 1 and "relevance export calibrate" in card  # replaced, not appended
    serving = json.loads((version_dir / "serving.json").read_text())
    serving["calibration_map"]["y"] = serving["calibration_map"]["y"][::-1]
    (version_dir / "serving.json").write_text(json.dumps(serving))
    with pytest.raises(ModelRepositoryError, match="calibration_map"):
        load_version_directory(version_dir)
