"""Calibrated scores: search backends threshold the served score as a probability, so a version may carry a
monotone map fitted on held-out pairs (``relevance export calibrate``) from the model's own probability p0 to
p(Good): an isotonic regression read with linear interpolation, blended with a small share of p0 itself so the
map stays strictly increasing (ranking, hence ROC-AUC, is exactly that of p0). Torch- and scikit-learn-free: the
gateway applies it; fitting lives on the export side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BINS = 10
"""Equal-width probability bins of the expected calibration error and the reliability diagram."""


@dataclass(frozen=True)
class CalibrationMap:
    """p = (1 - blend) · interp(p0; x, y) + blend · p0, with ``x`` ascending in [0, 1] and ``y`` non-decreasing."""

    x: np.ndarray
    y: np.ndarray
    blend: float
    fitted_on: dict[str, Any]

    def __post_init__(self) -> None:
        if self.x.shape != self.y.shape or self.x.ndim != 1 or len(self.x) < 2:
            raise ValueError("calibration map: x and y must be 1-D of the same length (at least 2 knots)")
        if np.any(np.diff(self.x) < 0) or np.any(np.diff(self.y) < 0):
            raise ValueError("calibration map: x must be ascending and y non-decreasing")
        if not 0.0 < self.blend <= 1.0:
            raise ValueError(f"calibration map: blend {self.blend} outside (0, 1]")

    def __call__(self, p0: np.ndarray) -> np.ndarray:
        p0 = np.asarray(p0, dtype=np.float64)
        return (1.0 - self.blend) * np.interp(p0, self.x, self.y) + self.blend * p0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "isotonic", "x": [float(v) for v in self.x],
                "y": [float(v) for v in self.y], "blend": self.blend, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationMap:
        if data.get("kind") != "isotonic":
            raise ValueError(f"calibration map: unknown kind {data.get('kind')!r} (expected isotonic)")
        return cls(np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"], dtype=np.float64),
                   float(data["blend"]), dict(data.get("fitted_on", {})))


def reliability(p: np.ndarray, good: np.ndarray, bins: int = BINS) -> list[dict[str, float | int]]:
    """Per equal-width bin of the predicted p(Good): how many pairs, their mean prediction, the share Good."""
    p = np.asarray(p, dtype=np.float64)
    good = np.asarray(good, dtype=np.float64)
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    return [{"bin": b, "n": int((which == b).sum()), "mean_p": float(p[which == b].mean()),
             "good_rate": float(good[which == b].mean())} for b in range(bins) if (which == b).any()]


def expected_calibration_error(p: np.ndarray, good: np.ndarray, bins: int = BINS) -> float:
    """Σ_bins (n_b / n) · |mean p_b - Good rate_b| over equal-width bins of the predicted p(Good)."""
    rows = reliability(p, good, bins)
    n = sum(int(r["n"]) for r in rows)
    return float(sum(int(r["n"]) / n * abs(float(r["mean_p"]) - float(r["good_rate"])) for r in rows)) if n else 0.0
