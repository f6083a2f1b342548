"""The unlabeled pool: BM25 top-k catalogue products per train query that no rater judged for that query.

It stands in for the paper's sampled search-log pairs (§3.3.1): plausible, unjudged candidates on which the
teacher's pseudo-labels add knowledge the human labels do not cover.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm import tqdm

from mkd.bm25 import BM25Index
from relevance_core.data import Pair, Product


@dataclass(frozen=True, slots=True)
class PoolPair:
    pair: Pair
    bm25_score: float
    rank: int


def build_pool(train: Sequence[Pair], catalogue: Sequence[Product], *, k: int = 20,
               batch_size: int = 512, show_progress: bool = True) -> list[PoolPair]:
    """For each distinct train query, up to ``k`` unlabelled catalogue products with a positive BM25 score."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    labelled: dict[str, set[str]] = defaultdict(set)
    for pair in train:
        labelled[pair.query].add(pair.product_uid)
    queries = list(labelled)
    index = BM25Index([product.product_title for product in catalogue])
    # Over-fetch by the most products labelled for one query, so that k remain after filtering.
    fetch = k + max(len(uids) for uids in labelled.values())
    pool: list[PoolPair] = []
    for start in tqdm(range(0, len(queries), batch_size), desc="BM25 pool", unit="batch",
                      disable=not show_progress):
        batch = queries[start:start + batch_size]
        doc_ids, scores = index.top_k(batch, fetch)
        for query, ids, row_scores in zip(batch, doc_ids, scores, strict=True):
            rank = 0
            for doc_id, score in zip(ids, row_scores, strict=True):
                product = catalogue[int(doc_id)]
                if score <= 0 or product.product_uid in labelled[query]:
                    continue
                rank += 1
                pool.append(PoolPair(Pair(query, product.product_title, None, product.product_uid,
                                          f"pool-{len(pool) + 1}"), float(score), rank))
                if rank == k:
                    break
    return pool
