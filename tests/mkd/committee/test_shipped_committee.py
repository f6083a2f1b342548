"""The shipped release teacher, measured: its committee, scored on the whole test split with its members' own
probabilities (a member's calibration map is not the combiner's input), gives the ROC-AUC its committed report
records."""

from __future__ import annotations

import json

import pytest

from mkd.scorers import load_scorer
from relevance_core.data import default_pairs_path, load_pairs, split_pairs
from tests.conftest import REPO

RELEASE = REPO / "teachers" / "release"
RECORDED = REPO / "reports" / "teacher-committee-test" / "report.json"


def test_the_release_committee_scores_the_test_split_as_recorded() -> None:
    from sklearn.metrics import roc_auc_score

    test = split_pairs(load_pairs(default_pairs_path()))["test"]
    scores = load_scorer(f"committee:{RELEASE}", show_progress=False).score(test)
    recorded = json.loads(RECORDED.read_text())
    assert len(test) == recorded["n"] == 6659
    assert roc_auc_score([p.good for p in test], scores) == pytest.approx(recorded["roc_auc"], abs=0.002)
