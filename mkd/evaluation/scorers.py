"""Models that ``relevance evaluate`` can score with. Each maps a list of pairs to one score per pair; higher
means more relevant. A scorer may be a probability of Good or any monotone score (BM25)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from mkd.bm25 import BM25Index
from mkd.data import Pair


class PairScorer(Protocol):
    name: str

    def score(self, pairs: Sequence[Pair]) -> np.ndarray: ...


class BM25Scorer:
    """BM25 of each query against the catalogue of distinct titles in the evaluated file."""

    name = "bm25"

    def __init__(self, show_progress: bool = True) -> None:
        self.show_progress = show_progress

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        titles = sorted({pair.product_title for pair in pairs})
        position = {title: i for i, title in enumerate(titles)}
        index = BM25Index(titles)
        by_query: dict[str, list[int]] = {}
        for i, pair in enumerate(pairs):
            by_query.setdefault(pair.query, []).append(i)
        out = np.zeros(len(pairs), dtype=np.float64)
        for query, rows in tqdm(by_query.items(), desc="BM25 scoring", unit="query", disable=not self.show_progress):
            all_scores = index.scores(query)
            out[rows] = all_scores[[position[pairs[i].product_title] for i in rows]]
        return out


class UnknownModelError(ValueError):
    """The ``--model`` argument names nothing this build can score with."""


def load_scorer(model: str, *, show_progress: bool = True) -> PairScorer:
    """Resolve ``--model``: ``bm25`` or a student checkpoint directory (``student.json`` inside; needs torch)."""
    if model == "bm25":
        return BM25Scorer(show_progress=show_progress)
    if (Path(model) / "student.json").is_file():
        from mkd.students.scoring import CheckpointScorer  # torch is imported only on this path

        return CheckpointScorer(model, show_progress=show_progress)
    raise UnknownModelError(f"--model {model!r}: unknown model; expected 'bm25' or a student checkpoint directory "
                            "(with student.json)")
