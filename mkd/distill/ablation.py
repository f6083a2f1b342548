"""``relevance ablate``: the MKD ablations of paper Table 4 for one student family, trained and evaluated the same
way one after another, into one table (JSON, Markdown and a bar plot).

Variants (λ1 score KL, λ2 CoT, λ3 CE; the family's defaults otherwise):

- ``full MKD``: the teacher file (scores and CoTs of the labelled pairs and of the unlabeled pool);
- ``w/o score distillation``: λ1 = 0, so the pool teaches through the teacher's hard labels in the CE;
- ``w/o CoT distillation``: λ2 = 0;
- ``w/o score & CoT``: λ1 = λ2 = 0 (CE on human labels and the teacher's hard labels);
- ``w/o MKD``: no teacher and no unlabeled data (label-only).

Each variant keeps its best checkpoint on the validation pairs and is then scored on the test pairs with
``relevance evaluate``'s code path; every variant sees the same data order (same seed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mkd.distill.losses import default_lambdas
from mkd.evaluation.report import run_evaluation
from mkd.students.scoring import CheckpointScorer

METRICS = ("roc_auc", "neg_pr_auc", "ndcg10")


@dataclass(frozen=True)
class Variant:
    name: str
    slug: str
    lambdas: tuple[float, float, float]
    teacher: bool


def variants(family: str) -> list[Variant]:
    score, cot, ce = default_lambdas(family)
    return [
        Variant("full MKD", "full", (score, cot, ce), True),
        Variant("w/o score distillation", "no-score", (0.0, cot, ce), True),
        Variant("w/o CoT distillation", "no-cot", (score, 0.0, ce), True),
        Variant("w/o score & CoT", "no-score-cot", (0.0, 0.0, ce), True),
        Variant("w/o MKD (label-only)", "label-only", (0.0, 0.0, ce), False),
    ]


def run_ablation(family: str, *, train_pairs: Path, valid_pairs: Path, test_pairs: Path, teacher: Path,
                 out: Path, only: list[str] | None = None, **train_settings: Any) -> dict[str, Any]:
    """Train and evaluate every variant (or those whose slug is in ``only``); returns the table (also written to
    ``out/ablation.json``, ``out/ablation.md``, ``out/ablation.png``). A variant already trained and evaluated
    in ``out`` is read back, so a stopped run resumes."""
    from mkd.distill.train import BEST_DIR
    from mkd.distill.train import train as run_training

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in variants(family):
        if only and variant.slug not in only:
            continue
        directory = out / variant.slug
        report_path = directory / "test" / "report.json"
        if not report_path.is_file():
            record = run_training(family, train_pairs, valid_pairs, teacher if variant.teacher else None,
                                  out_dir=directory, lambdas=variant.lambdas, resume=True, **train_settings)
            best = str(directory / BEST_DIR)
            run_evaluation(test_pairs, CheckpointScorer(best), directory / "test", model=best)
            (directory / "variant.json").write_text(json.dumps({"variant": variant.name, "steps": record[
                "total_steps"], "examples": record["examples"], "seconds": record["seconds"]}, indent=2) + "\n")
        report = json.loads(report_path.read_text())
        meta = json.loads((directory / "variant.json").read_text())
        rows.append({"variant": variant.name, "slug": variant.slug, "lambdas": list(variant.lambdas),
                     "teacher": variant.teacher, **{m: report[m] for m in METRICS},
                     "long_tail_roc_auc": report["long_tail"]["roc_auc"], "head_roc_auc": report["head"]["roc_auc"],
                     "steps": meta["steps"],
                     "examples": meta["examples"]["total"], "pool": meta["examples"]["pool"],
                     "train_seconds": meta["seconds"]})
    full = next((r for r in rows if r["slug"] == "full"), None)
    for row in rows:
        row["delta_roc_auc_vs_full"] = None if full is None else round(row["roc_auc"] - full["roc_auc"], 4)
    table = {"family": family, "train_pairs": str(train_pairs), "valid_pairs": str(valid_pairs),
             "test_pairs": str(test_pairs), "teacher": str(teacher), "rows": rows,
             "settings": {k: v for k, v in train_settings.items() if isinstance(v, int | float | str | None)}}
    (out / "ablation.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    (out / "ablation.md").write_text(markdown(table), encoding="utf-8")
    _plot(rows, out / "ablation.png", family)
    return table


def markdown(table: dict[str, Any]) -> str:
    lines = [f"| {table['family']} variant | λ (score, CoT, CE) | ROC-AUC | Neg PR-AUC | NDCG@10 | long-tail ROC-AUC "
             "| head ROC-AUC | Δ ROC-AUC vs full |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in table["rows"]:
        delta = "" if r["delta_roc_auc_vs_full"] is None else f"{r['delta_roc_auc_vs_full']:+.4f}"
        lambdas = ", ".join(f"{v:g}" for v in r["lambdas"])
        lines.append(f"| {r['variant']} | {lambdas} | {r['roc_auc']:.4f} | {r['neg_pr_auc']:.4f} | "
                     f"{r['ndcg10']:.4f} | {r['long_tail_roc_auc']:.4f} | {r['head_roc_auc']:.4f} | {delta} |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path, family: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    names = [r["variant"] for r in rows]
    for k, metric in enumerate(("roc_auc", "neg_pr_auc")):
        ax.barh([i + k * 0.4 for i in range(len(rows))], [r[metric] for r in rows], height=0.4,
                label={"roc_auc": "ROC-AUC", "neg_pr_auc": "Neg PR-AUC"}[metric])
    ax.set_yticks([i + 0.2 for i in range(len(rows))], names)
    ax.invert_yaxis()
    low = min(min(r["roc_auc"], r["neg_pr_auc"]) for r in rows)
    ax.set_xlim(max(0.0, low - 0.05), None)
    ax.set_title(f"MKD ablations, {family} student, test split")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
