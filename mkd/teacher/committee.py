"""The release teacher: a committee of trained relevance models whose scores a logistic regression, fitted on the
validation split, combines into one calibrated p(Good). It plays the role of eq. 4's teacher score s_T in MKD
(paper §3.3): the LLM's judgement is replaced by models that rank better than any single student, because
distillation only transfers what the teacher knows better.

A committee lives in a folder with ``committee.json``:

- ``members``: ``[{"name", "model"}]``, each ``model`` a ``relevance evaluate --model`` spec (an exported model
  version or repository, a student checkpoint), relative paths taken from the repository root;
- ``combiner``: the standardised logistic regression over the members' logits (``mean``, ``scale``, ``coef``,
  ``intercept``);
- ``fitted_on``: the pairs file (path, sha256, rows) and the combiner's out-of-fold validation metrics (5 folds by
  query).

`relevance evaluate --model committee:DIR` scores any pairs file with it; `relevance teacher committee label`
writes the MKD teacher file (score, p_good/p_bad, and a CoT consistent with the committee's verdict from the
programmatic annotator, the paper's label-consistent selection).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mkd.jsonl import pending_pairs
from relevance_core.annotation import Annotator
from relevance_core.data import Pair
from relevance_core.paths import REPO_ROOT
from relevance_core.provenance import sha256_file

COMMITTEE_FILE = "committee.json"
EPS = 1e-6


class CommitteeError(ValueError):
    """A committee folder or teacher-scores file that cannot be used; the message says which and why."""


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _resolve(model: str) -> str:
    path = Path(model)
    return model if path.is_absolute() or not (REPO_ROOT / path).exists() else str(REPO_ROOT / path)


@dataclass(frozen=True)
class Member:
    name: str
    model: str


@dataclass(frozen=True)
class Combiner:
    """p(Good) = sigmoid(intercept + Σ coef_i · (x_i - mean_i) / scale_i), x_i the i-th member's logit."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        z = self.intercept + ((features - self.mean) / self.scale) @ self.coef
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "logistic", "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept}


def fit_combiner(features: np.ndarray, labels: np.ndarray, c: float = 1.0) -> Combiner:
    """A logistic regression (L2, ``c`` as scikit-learn's C) on standardised member logits."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(C=c, max_iter=1000).fit((features - mean) / scale, labels)
    return Combiner(mean=mean, scale=scale, coef=model.coef_[0].astype(np.float64),
                    intercept=float(model.intercept_[0]))


def out_of_fold(features: np.ndarray, labels: np.ndarray, groups: Sequence[str], folds: int = 5) -> np.ndarray:
    """Each pair's committee score from a combiner fitted on the other folds (folds by query): the honest
    validation figure of a combiner fitted on the validation split."""
    from sklearn.model_selection import GroupKFold

    scores = np.zeros(len(labels), dtype=np.float64)
    for fit_rows, held_rows in GroupKFold(n_splits=folds).split(features, labels, groups=list(groups)):
        scores[held_rows] = fit_combiner(features[fit_rows], labels[fit_rows])(features[held_rows])
    return scores


@dataclass
class Committee:
    members: list[Member]
    combiner: Combiner
    record: dict[str, Any]

    @classmethod
    def load(cls, directory: str | Path) -> Committee:
        path = Path(directory) / COMMITTEE_FILE
        if not path.is_file():
            raise CommitteeError(f"{directory}: no {COMMITTEE_FILE} (fit one with `relevance teacher committee fit`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            members = [Member(m["name"], m["model"]) for m in data["members"]]
            c = data["combiner"]
            combiner = Combiner(np.asarray(c["mean"], float), np.asarray(c["scale"], float),
                                np.asarray(c["coef"], float), float(c["intercept"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CommitteeError(f"{path}: not a committee file ({exc})") from None
        if not (len(members) == len(combiner.mean) == len(combiner.scale) == len(combiner.coef)):
            raise CommitteeError(f"{path}: {len(members)} members but a combiner of {len(combiner.coef)} inputs")
        return cls(members=members, combiner=combiner, record=data)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = {**self.record, "members": [{"name": m.name, "model": m.model} for m in self.members],
                "combiner": self.combiner.to_dict()}
        path = directory / COMMITTEE_FILE
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path


MemberScorer = Callable[[Sequence[Pair]], np.ndarray]


def member_scorers(members: Sequence[Member], show_progress: bool = True) -> list[MemberScorer]:
    """Each member's p(Good) scorer (`relevance evaluate`'s model loader)."""
    from mkd.evaluation.scorers import load_scorer

    return [load_scorer(_resolve(m.model), show_progress=show_progress).score for m in members]


def member_features(scorers: Sequence[MemberScorer], pairs: Sequence[Pair]) -> np.ndarray:
    """(len(pairs), members) logits of the members' p(Good)."""
    return np.stack([logit(score(pairs)) for score in scorers], axis=1)


def fit_committee(members: Sequence[Member], valid_pairs: Path, pairs: Sequence[Pair], out: Path, *,
                  show_progress: bool = True) -> Committee:
    """Score ``pairs`` (the validation split, read from ``valid_pairs``) with every member, fit the combiner on
    them and write ``out/committee.json`` with the members' and the combiner's validation metrics."""
    from mkd.evaluation.metrics import compute_metrics

    started = time.time()
    features = member_features(member_scorers(members, show_progress), pairs)
    labels = np.array([1.0 if p.good else 0.0 for p in pairs])
    queries = [p.query for p in pairs]
    ratings = [float(p.relevance) for p in pairs]  # type: ignore[arg-type]
    oof = out_of_fold(features, labels, queries)
    combiner = fit_combiner(features, labels)

    def metrics(scores: np.ndarray) -> dict[str, Any]:
        m = compute_metrics(queries, ratings, scores)
        return {k: m[k] for k in ("roc_auc", "neg_pr_auc", "ndcg10")}

    record = {
        "fitted_on": {"path": str(valid_pairs), "sha256": sha256_file(valid_pairs), "rows": len(pairs)},
        "valid": {"members": {m.name: metrics(features[:, i]) for i, m in enumerate(members)},
                  "committee_out_of_fold": metrics(oof), "folds": 5},
        "seconds": round(time.time() - started, 1),
    }
    committee = Committee(list(members), combiner, record)
    committee.save(out)
    return committee


class CommitteeScorer:
    """``relevance evaluate --model committee:DIR``: the committee's calibrated p(Good)."""

    def __init__(self, directory: str | Path, *, show_progress: bool = True) -> None:
        self.committee = Committee.load(directory)
        self.scorers = member_scorers(self.committee.members, show_progress)
        self.name = f"committee ({', '.join(m.name for m in self.committee.members)})"

    def member_features(self, pairs: Sequence[Pair]) -> np.ndarray:
        return member_features(self.scorers, pairs)

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self.committee.combiner(self.member_features(pairs))


def teacher_row(pair: Pair, score: float, annotator: Annotator, members: dict[str, float] | None = None,
                ) -> dict[str, Any]:
    """One teacher-file row: s_T = the committee's p(Good) (p_good = s_T, p_bad = 1 - s_T), the verdict
    (Good iff s_T > 0.5) and a CoT from the annotator's first route that reaches that verdict; ``cot`` is null
    with ``cot_reason`` when no route does (a Bad verdict on a pair whose words all match, mostly)."""
    verdict = score > 0.5
    cot = annotator.cot(pair.query, pair.product_title, verdict)
    row: dict[str, Any] = {"query": pair.query, "product_title": pair.product_title,
                           "product_uid": pair.product_uid, "score": round(score, 6), "p_good": round(score, 6),
                           "p_bad": round(1.0 - score, 6), "judgement": "Good" if verdict else "Bad",
                           "cot": None if cot is None else cot[1]}
    if cot is None:
        row["cot_reason"] = "no annotator route reaches the teacher's verdict"
    else:
        row["cot_route"] = cot[0]
    if pair.relevance is not None:
        row["relevance"] = pair.relevance
    if members is not None:
        row["members"] = {name: round(value, 6) for name, value in members.items()}
    return row


def label_with_committee(pairs: Sequence[Pair], out: Path, scorer: CommitteeScorer, annotator: Annotator, *,
                         chunk: int = 4096, show_progress: bool = True) -> dict[str, Any]:
    """Append a teacher row for every pair of ``pairs`` not yet in ``out``, ``chunk`` pairs at a time (each chunk
    written and flushed before the next: a stopped run resumes at the last whole chunk)."""
    pending = pending_pairs(pairs, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [m.name for m in scorer.committee.members]
    counts = {"Good": 0, "Bad": 0, "with_cot": 0}
    started = time.perf_counter()
    with out.open("a", encoding="utf-8") as handle, \
            tqdm(total=len(pending), desc="committee labelling", unit="pair", disable=not show_progress) as bar:
        for start in range(0, len(pending), chunk):
            batch = pending[start : start + chunk]
            features = scorer.member_features(batch)
            scores = scorer.committee.combiner(features)
            probabilities = 1.0 / (1.0 + np.exp(-features))
            for i, pair in enumerate(batch):
                row = teacher_row(pair, float(scores[i]), annotator, dict(zip(names, probabilities[i], strict=True)))
                counts[row["judgement"]] += 1
                counts["with_cot"] += row["cot"] is not None
                handle.write(json.dumps(row) + "\n")
            handle.flush()
            bar.update(len(batch))
    seconds = time.perf_counter() - started
    return {"pairs": len(pairs), "already_done": len(pairs) - len(pending), "labelled": len(pending), **counts,
            "seconds": round(seconds, 1), "pairs_per_s": round(len(pending) / seconds, 1) if seconds else None}


SCORES_COLUMNS = ("query", "product_uid", "score")


def write_scores(teacher_jsonl: Path, out: Path) -> int:
    """The compact, committable copy of a teacher file: gzip TSV ``query, product_uid, score`` (6 decimals),
    sorted, so the same scores give the same bytes. CoTs are not kept: `expand_scores` regenerates them."""
    rows = []
    with teacher_jsonl.open(encoding="utf-8") as handle:
        for line in filter(str.strip, handle):
            row = json.loads(line)
            if row.get("score") is not None:
                rows.append((row["query"], str(row["product_uid"]), f"{row['score']:.6f}"))
    rows.sort()
    with gzip.GzipFile(out, "wb", mtime=0) as raw:
        raw.write(("\t".join(SCORES_COLUMNS) + "\n").encode())
        raw.write("".join("\t".join(r) + "\n" for r in rows).encode("utf-8"))
    return len(rows)


def expand_scores(scores_tsv: Path, pairs: Sequence[Pair], out: Path, annotator: Annotator, *,
                  show_progress: bool = True) -> dict[str, Any]:
    """Rebuild the teacher JSONL from a compact scores file and the pairs it keys (train split, pool): each
    (query, product_uid) found in ``pairs`` gets its row and verdict-consistent CoT, deterministically."""
    by_key = {(p.query, p.product_uid): p for p in pairs}
    written = missing = 0
    with gzip.open(scores_tsv, "rt", encoding="utf-8") as source, out.open("w", encoding="utf-8") as handle:
        header = source.readline().rstrip("\n").split("\t")
        if tuple(header) != SCORES_COLUMNS:
            raise CommitteeError(f"{scores_tsv}: expected the columns {', '.join(SCORES_COLUMNS)}, got {header}")
        for line_number, line in enumerate(tqdm(source, desc="teacher rows", unit="row",
                                                disable=not show_progress), start=2):
            query, uid, score = line.rstrip("\n").split("\t")
            pair = by_key.get((query, uid))
            if pair is None:
                missing += 1
                continue
            try:
                value = float(score)
            except ValueError:
                raise CommitteeError(f"{scores_tsv}:{line_number}: field 'score': {score!r} is not a number") from None
            handle.write(json.dumps(teacher_row(pair, value, annotator)) + "\n")
            written += 1
    return {"rows": written, "not_in_pairs": missing, "out": str(out)}
