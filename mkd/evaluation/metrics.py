"""Offline relevance metrics (scikit-learn): ROC-AUC, Neg PR-AUC and graded NDCG@10 per query.

- ``roc_auc``: Good (relevance > 2.0) is the positive class, ranked by the score (p(Good) or any monotone score).
- ``neg_pr_auc``: average precision with **Bad** as the positive class, ranked by the negated score (the
  paper's Neg PR-AUC, §4.2.2).
- ``ndcg10``: per query, the pairs ranked by score with graded gain ``relevance - 1`` (0 irrelevant .. 2
  perfect), NDCG@10 averaged over queries. Queries with fewer than two pairs, or whose pairs all have gain 0,
  have no defined ranking quality and are left out; how many queries counted is reported as ``ndcg10_queries``.
A metric that is undefined on the given data (e.g. only one class present) is reported as ``None``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score


def roc_auc(good: np.ndarray, scores: np.ndarray) -> float | None:
    good = np.asarray(good, dtype=bool)
    if good.all() or not good.any():
        return None
    return float(roc_auc_score(good, scores))


def neg_pr_auc(good: np.ndarray, scores: np.ndarray) -> float | None:
    bad = ~np.asarray(good, dtype=bool)
    if bad.all() or not bad.any():
        return None
    return float(average_precision_score(bad, -np.asarray(scores, dtype=np.float64)))


def ndcg_at_k(queries: Sequence[str], ratings: np.ndarray, scores: np.ndarray, k: int = 10,
              ) -> tuple[float | None, int]:
    """Mean NDCG@k over queries with a defined ranking, and the number of such queries."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, query in enumerate(queries):
        groups[query].append(i)
    gains = np.asarray(ratings, dtype=np.float64) - 1.0
    scores = np.asarray(scores, dtype=np.float64)
    # ndcg_score wants a rectangular matrix: batch the queries by their number of pairs.
    by_size: dict[int, list[list[int]]] = defaultdict(list)
    for rows in groups.values():
        if len(rows) >= 2 and gains[rows].max() > 0:
            by_size[len(rows)].append(rows)
    total, count = 0.0, 0
    for rows_list in by_size.values():
        idx = np.asarray(rows_list)
        per_query = ndcg_score(gains[idx], scores[idx], k=k) * len(rows_list)
        total += float(per_query)
        count += len(rows_list)
    return (total / count if count else None), count


def compute_metrics(queries: Sequence[str], ratings: np.ndarray, scores: np.ndarray) -> dict[str, float | int | None]:
    """All headline metrics for one set of labelled pairs."""
    ratings = np.asarray(ratings, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(queries) != len(ratings) or len(ratings) != len(scores):
        raise ValueError(f"length mismatch: {len(queries)} queries, {len(ratings)} ratings, {len(scores)} scores")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    good = ratings > 2.0
    ndcg10, ndcg_queries = ndcg_at_k(queries, ratings, scores, k=10)
    return {
        "roc_auc": roc_auc(good, scores),
        "neg_pr_auc": neg_pr_auc(good, scores),
        "ndcg10": ndcg10,
        "n": len(scores),
        "n_queries": len(set(queries)),
        "ndcg10_queries": ndcg_queries,
        "good_rate": float(good.mean()) if len(good) else None,
    }
