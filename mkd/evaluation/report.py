"""``relevance evaluate``: score a labelled pairs file, compute overall and long-tail metrics, write the report
(JSON, per-pair scores, ROC and PR curve plots)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mkd.evaluation.longtail import LongTail
from mkd.evaluation.metrics import compute_metrics
from mkd.evaluation.scorer import PairScorer
from relevance_core.calibration import expected_calibration_error, reliability
from relevance_core.data import Pair, default_pairs_path, load_pairs, split_pairs, write_pairs


def reference_long_tail(min_queries: int = 3) -> LongTail:
    """The long-tail definition against the train split of the vendored data."""
    train = split_pairs(load_pairs(default_pairs_path()))["train"]
    return LongTail((pair.query for pair in train), min_queries=min_queries)


def evaluate_scores(pairs: Sequence[Pair], scores: np.ndarray, long_tail: LongTail,
                    ) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics overall, on the long-tail slice and on the rest (head); also returns the long-tail mask."""
    queries = [pair.query for pair in pairs]
    ratings = np.array([pair.relevance for pair in pairs], dtype=np.float64)
    result: dict[str, Any] = compute_metrics(queries, ratings, scores)
    mask = np.array([long_tail.is_long_tail(q) for q in queries], dtype=bool)
    tail = compute_metrics([q for q, m in zip(queries, mask, strict=True) if m], ratings[mask], scores[mask])
    head = compute_metrics([q for q, m in zip(queries, mask, strict=True) if not m], ratings[~mask], scores[~mask])
    result["long_tail"] = {"definition": long_tail.definition, "share": float(mask.mean()), **tail}
    result["head"] = head
    return result, mask


def write_plots(out: Path, good: np.ndarray, scores: np.ndarray, tail_mask: np.ndarray, title: str) -> list[Path]:
    """ROC curve (Good positive) and PR curve (Bad positive), overall and on the long-tail slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    slices = [("all", np.ones_like(tail_mask)), ("long tail", tail_mask), ("head", ~tail_mask)]
    paths = []
    for kind in ("roc", "pr_bad"):
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for name, mask in slices:
            y, s = good[mask], scores[mask]
            if len(np.unique(y)) < 2:
                continue
            if kind == "roc":
                RocCurveDisplay.from_predictions(y, s, name=f"{name} (n={mask.sum()})", ax=ax)
            else:
                PrecisionRecallDisplay.from_predictions(~y, -s, name=f"{name} (n={mask.sum()})", ax=ax)
        ax.set_title(f"{title}: {'ROC (Good positive)' if kind == 'roc' else 'Precision-recall (Bad positive)'}")
        ax.grid(alpha=0.3)
        path = out / f"{kind}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_reliability(path: Path, curves: dict[str, list[dict[str, Any]]], title: str) -> Path:
    """Reliability diagram: the Good rate against the mean predicted p(Good) per bin, one curve per entry of
    ``curves`` (`relevance_core.calibration.reliability` bins, labelled with their ECE by the caller), the
    diagonal for perfect calibration, and the pairs per bin below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for offset, (name, bins) in enumerate(curves.items()):
        mean_p = [b["mean_p"] for b in bins]
        top.plot(mean_p, [b["good_rate"] for b in bins], marker="o", label=name)
        bottom.bar([m + (offset - 0.5) * 0.02 for m in mean_p], [b["n"] for b in bins], width=0.02, label=name)
    top.set_ylabel("share Good")
    top.set_title(title)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_xlabel("predicted p(Good)")
    bottom.set_ylabel("pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_evaluation(pairs_path: Path, scorer: PairScorer, out: Path | None = None, *, model: str | None = None,
                   long_tail_min_queries: int = 3) -> dict[str, Any]:
    """Score ``pairs_path`` with ``scorer`` (``model``: the spec it was loaded from, for the report); returns the
    JSON-ready report, also written under ``out``. The per-pair scores are written first, so an error in the
    metrics or the plots never loses them."""
    model = model or scorer.name
    pairs = load_pairs(pairs_path)
    started = time.perf_counter()
    scores = np.asarray(scorer.score(pairs), dtype=np.float64)
    seconds = time.perf_counter() - started
    if scores.shape != (len(pairs),):
        raise RuntimeError(f"model {model!r} returned {scores.shape} scores for {len(pairs)} pairs")
    long_tail = reference_long_tail(long_tail_min_queries)
    mask = np.array([long_tail.is_long_tail(p.query) for p in pairs], dtype=bool)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_pairs(out / "scores.tsv", pairs, extra={"score": [f"{s:.6g}" for s in scores],
                                                      "long_tail": [int(m) for m in mask]})
    report, _ = evaluate_scores(pairs, scores, long_tail)
    report = {"model": model, "scorer": scorer.name, "pairs": str(pairs_path), **report,
              "scoring_seconds": round(seconds, 3), "pairs_per_second": round(len(pairs) / max(seconds, 1e-9), 1)}
    if hasattr(scorer, "unscored"):  # the teacher: pairs without a readable judgement (scored 0.5)
        report["unscored"] = scorer.unscored
    for name, alternative in getattr(scorer, "alternatives", {}).items():  # the teacher's other eq. 4
        metrics, _ = evaluate_scores(pairs, alternative, long_tail)
        report.setdefault("alternatives", {})[name] = {k: metrics[k] for k in ("roc_auc", "neg_pr_auc", "ndcg10")}
    good = np.array([pair.good for pair in pairs], dtype=bool)
    if np.all((scores >= 0.0) & (scores <= 1.0)):  # a probability of Good: how well calibrated
        bins = reliability(scores, good)
        report["calibration"] = {"ece": expected_calibration_error(scores, good), "bins": bins}
    if out is not None:
        report["plots"] = [str(p) for p in write_plots(out, good, scores, mask, title=model)]
        if "calibration" in report:
            curve = {f"ECE {report['calibration']['ece']:.3f}": report["calibration"]["bins"]}
            report["plots"].append(str(plot_reliability(out / "reliability.png", curve, title=model)))
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
