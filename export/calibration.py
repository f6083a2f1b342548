"""``relevance export calibrate``: fit a version's calibration map (`relevance_core.calibration`) on held-out
labelled pairs (the validation split) and store it in the version's ``serving.json``. The map is an isotonic
regression of Good on the version's own probability p0, blended with p0 so that the ranking is unchanged. Its
honest figure is out of fold: the expected calibration error of maps fitted on the other folds (by query)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relevance_core.calibration import CalibrationMap, expected_calibration_error, reliability
from relevance_core.data import load_pairs
from relevance_core.model_repository import load_version_directory
from relevance_core.provenance import sha256_file

BLEND = 0.01
FOLDS = 5


def fit_map(p0: np.ndarray, good: np.ndarray, *, blend: float = BLEND, fitted_on: dict[str, Any] | None = None,
            ) -> CalibrationMap:
    """The isotonic regression of Good on p0 (clipped to [0, 1] outside the fitted range) as a map."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p0, good)
    x, y = np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)
    if len(x) < 2:  # a constant fit: one knot
        x, y = np.array([0.0, 1.0]), np.array([y[0], y[0]])
    return CalibrationMap(x, y, blend, fitted_on or {})


def out_of_fold(p0: np.ndarray, good: np.ndarray, groups: Sequence[str], *, blend: float = BLEND,
                folds: int = FOLDS) -> np.ndarray:
    """Each pair's calibrated probability from a map fitted on the other folds (folds by query)."""
    from sklearn.model_selection import GroupKFold

    out = np.zeros(len(p0), dtype=np.float64)
    for fit_rows, held_rows in GroupKFold(n_splits=folds).split(p0, good, groups=list(groups)):
        out[held_rows] = fit_map(p0[fit_rows], good[fit_rows], blend=blend)(p0[held_rows])
    return out


def calibrate_version(directory: Path, pairs_path: Path, *, blend: float = BLEND) -> dict[str, Any]:
    """Score ``pairs_path`` with the version in ``directory`` (ONNX Runtime, without any map it has), fit the map,
    write it into ``serving.json``; returns the record (ECE before, out of fold, and in sample; the reliability
    bins before and out of fold)."""
    from sklearn.metrics import roc_auc_score

    from service.core.runtime import runtime_model

    version = load_version_directory(directory)
    pairs = load_pairs(pairs_path)
    p0 = runtime_model(version.uncalibrated()).score_pairs([p.query for p in pairs], [p.product_title for p in pairs])
    good = np.array([p.good for p in pairs], dtype=np.float64)
    oof = out_of_fold(p0, good, [p.query for p in pairs], blend=blend)
    fitted_on = {"path": str(pairs_path), "sha256": sha256_file(pairs_path), "rows": len(pairs),
                 "method": "isotonic", "blend": blend, "folds": FOLDS}
    chosen = fit_map(p0, good, blend=blend, fitted_on=fitted_on)
    record = {
        "version": str(directory), "pairs": len(pairs), "fitted_on": fitted_on, "knots": len(chosen.x),
        "ece_before": expected_calibration_error(p0, good),
        "ece_out_of_fold": expected_calibration_error(oof, good),
        "ece_in_sample": expected_calibration_error(chosen(p0), good),
        "roc_auc_before": float(roc_auc_score(good, p0)),
        "roc_auc_after": float(roc_auc_score(good, chosen(p0))),
        "reliability_before": reliability(p0, good), "reliability_out_of_fold": reliability(oof, good),
    }
    dataclasses.replace(version.meta, calibration_map=chosen.to_dict()).save(directory)
    _card_section(directory / "MODEL_CARD.md", record, pairs_path)
    return record


CARD_HEADING = "## Calibration"


def _card_section(card: Path, record: dict[str, Any], pairs_path: Path) -> None:
    """Write (or replace) the model card's calibration section, before "Reproduce" where the card has one."""
    if not card.is_file():
        return
    section = (f"{CARD_HEADING}\n\nThe served score is calibrated: an isotonic map of the model's own probability, "
               f"blended {record['fitted_on']['blend']:g} with it (ranking unchanged), fitted on {record['pairs']} "
               f"held-out pairs ({pairs_path}). Expected calibration error (10 bins) {record['ece_before']:.3f} "
               f"before, {record['ece_out_of_fold']:.3f} out of fold ({FOLDS} query folds). Command: "
               f"`relevance export calibrate --version-dir {record['version']} --pairs {pairs_path}`.\n\n")
    text = card.read_text(encoding="utf-8")
    if CARD_HEADING in text:
        start = text.index(CARD_HEADING)
        end = text.find("\n## ", start + len(CARD_HEADING))
        text = text[:start] + section + (text[end + 1:] if end != -1 else "")
    elif "\n## Reproduce" in text:
        at = text.index("\n## Reproduce") + 1
        text = text[:at] + section + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    card.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def write_report(out: Path, record: dict[str, Any]) -> None:
    """``calibration.json`` (the record) and ``reliability.png`` (before, and out of fold)."""
    import json

    from mkd.evaluation.report import plot_reliability

    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    plot_reliability(out / "reliability.png", {
        f"before (ECE {record['ece_before']:.3f})": record["reliability_before"],
        f"calibrated, out of fold (ECE {record['ece_out_of_fold']:.3f})": record["reliability_out_of_fold"]},
        title=f"{record['version']} on {record['pairs']} held-out pairs")
