"""The calibration map the gateway applies: strictly increasing (the ranking is the model's), fitted isotonic
knots read back from serving.json, and the expected calibration error as defined (10 equal-width bins)."""

from __future__ import annotations

import numpy as np
import pytest

from export.calibration import fit_map, out_of_fold
from relevance_core.calibration import CalibrationMap, expected_calibration_error, reliability


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true Good rate is a squashed version of the score: p0 = 0.9 means Good 70% of the time."""
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(0, 1, n)
    good = (rng.uniform(0, 1, n) < 0.2 + 0.6 * p0).astype(float)
    return p0, good


def test_ece_is_the_binned_gap_between_prediction_and_outcome() -> None:
    p = np.array([0.05, 0.05, 0.95, 0.95])
    good = np.array([0.0, 1.0, 1.0, 1.0])
    # bin 0: mean p 0.05, Good 0.5 (gap 0.45); bin 9: mean p 0.95, Good 1.0 (gap 0.05); each half the pairs
    assert expected_calibration_error(p, good) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    assert [r["n"] for r in reliability(p, good)] == [2, 2]
    assert expected_calibration_error(np.array([1.0]), np.array([1.0])) == 0.0  # p = 1 falls in the last bin


def test_a_fitted_map_calibrates_held_out_scores_and_keeps_their_order() -> None:
    p0, good = _overconfident(20_000, 0)
    fitted = fit_map(p0, good)
    held_p0, held_good = _overconfident(20_000, 1)
    assert expected_calibration_error(held_p0, held_good) > 0.09
    assert expected_calibration_error(fitted(held_p0), held_good) < 0.02
    grid = np.linspace(0, 1, 10_001)
    assert np.all(np.diff(fitted(grid)) > 0)  # strictly increasing: no ties, the ranking is p0's
    again = CalibrationMap.from_dict(fitted.to_dict())
    assert np.array_equal(again(held_p0), fitted(held_p0))
    groups = [f"q{i // 10}" for i in range(len(p0))]
    assert expected_calibration_error(out_of_fold(p0, good, groups), good) < 0.02


def test_a_malformed_map_is_refused() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        CalibrationMap(np.array([0.0, 1.0]), np.array([0.9, 0.1]), 0.01, {})
    with pytest.raises(ValueError, match="unknown kind"):
        CalibrationMap.from_dict({"kind": "platt", "x": [0, 1], "y": [0, 1], "blend": 0.01})
    with pytest.raises(ValueError, match="blend"):
        CalibrationMap(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 0.0, {})
