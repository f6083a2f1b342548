"""A committee folder holds ``committee.json``:

- ``members``: ``[{"name", "model"}]``, each ``model`` a ``relevance evaluate --model`` spec (an exported model
  version or repository, a student checkpoint, a member's scores file), relative paths taken from the repository
  root (`Member.resolved`);
- ``combiner``: the standardised logistic regression over the members' logits (`mkd.committee.combiner`);
- ``fitted_on``: the pairs file (path, sha256, rows) and the members' and combiner's (out-of-fold, 5 folds by
  query) validation metrics.

The members' scorers are handed in by the caller (`relevance evaluate`'s model loader builds them), so a
committee never loads models itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mkd.committee.combiner import Combiner, fit_combiner, logit, out_of_fold
from relevance_core.data import Pair
from relevance_core.paths import REPO_ROOT
from relevance_core.provenance import sha256_file

COMMITTEE_FILE = "committee.json"


class CommitteeError(ValueError):
    """A committee folder or teacher-scores file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Member:
    name: str
    model: str

    @property
    def resolved(self) -> str:
        """``model`` with a relative path taken from the repository root (where committee files are written)."""
        path = Path(self.model)
        return self.model if path.is_absolute() or not (REPO_ROOT / path).exists() else str(REPO_ROOT / path)


MemberScorer = Callable[[Sequence[Pair]], np.ndarray]
"""A member's p(Good) of each pair."""


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



def member_features(scorers: Sequence[MemberScorer], pairs: Sequence[Pair]) -> np.ndarray:
    """(len(pairs), members) logits of the members' p(Good)."""
    return np.stack([logit(score(pairs)) for score in scorers], axis=1)


def fit_committee(members: Sequence[Member], scorers: Sequence[MemberScorer], valid_pairs: Path,
                  pairs: Sequence[Pair], out: Path) -> Committee:
    """Score ``pairs`` (the validation split, read from ``valid_pairs``) with every member's scorer, fit the
    combiner on them and write ``out/committee.json`` with the members' and the combiner's validation metrics."""
    from mkd.evaluation.metrics import compute_metrics

    if len(members) != len(scorers):
        raise CommitteeError(f"{len(members)} members but {len(scorers)} scorers")
    if any(p.relevance is None for p in pairs):
        raise CommitteeError(f"{valid_pairs}: a committee is fitted on labelled pairs; some have no relevance")
    started = time.time()
    features = member_features(scorers, pairs)
    labels = np.array([1.0 if p.good else 0.0 for p in pairs])
    queries = [p.query for p in pairs]
    ratings = np.array([p.relevance for p in pairs], dtype=np.float64)
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
    """``relevance evaluate --model committee:DIR``: the committee's calibrated p(Good) from its members' scorers."""

    def __init__(self, committee: Committee, scorers: Sequence[MemberScorer]) -> None:
        if len(committee.members) != len(scorers):
            raise CommitteeError(f"{len(committee.members)} members but {len(scorers)} scorers")
        self.committee = committee
        self.scorers = list(scorers)
        self.name = f"committee ({', '.join(m.name for m in committee.members)})"

    def member_features(self, pairs: Sequence[Pair]) -> np.ndarray:
        return member_features(self.scorers, pairs)

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self.committee.combiner(self.member_features(pairs))
