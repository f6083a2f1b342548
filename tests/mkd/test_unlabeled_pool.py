from __future__ import annotations

from mkd.unlabeled_pool import build_pool
from relevance_core.data import Pair, Product

CATALOGUE = [
    Product("1", "Simpson Strong-Tie 12-Gauge Angle"),
    Product("2", "Simpson Strong-Tie Angle Bracket Zinc"),
    Product("3", "Everbilt Corner Brace Angle Bracket"),
    Product("4", "BEHR Premium Deck Stain"),
    Product("5", "Delta Shower Head in Chrome"),
]


def test_pool_excludes_labelled_products_and_keeps_top_k() -> None:
    train = [Pair("angle bracket", "Simpson Strong-Tie 12-Gauge Angle", 3.0, "1"),
             Pair("shower head", "Delta Shower Head in Chrome", 3.0, "5")]
    pool = build_pool(train, CATALOGUE, k=2, show_progress=False)
    by_query: dict[str, list] = {}
    for item in pool:
        by_query.setdefault(item.pair.query, []).append(item)
    angle = by_query["angle bracket"]
    assert sorted(p.pair.product_uid for p in angle) == ["2", "3"]
    assert [p.rank for p in angle] == [1, 2]
    assert angle[0].bm25_score >= angle[1].bm25_score > 0
    # the only other product sharing a token with "shower head" is the labelled one: nothing left to pool
    assert "shower head" not in by_query
    assert all(item.pair.relevance is None for item in pool)
    assert len({item.pair.pair_id for item in pool}) == len(pool)
