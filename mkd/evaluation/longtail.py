"""The long-tail slice.

A query is **long-tail** when at least one of its tokens (lower-cased runs of letters and digits) occurs in
fewer than ``min_queries`` (default 3) distinct queries of the project's train split. This catches what makes a
query rare here: typos ("refridgerator"), rare brands and model numbers, unusual sizes. It plays the role of
the paper's UV <= 10 long-tail set (Appendix B), which needs search logs that this data set does not have.
The reference vocabulary is always the train split of the vendored data, whatever file is evaluated.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from relevance_core.data import normalise_query

_TOKEN = re.compile(r"[a-z0-9]+")


def query_tokens(query: str) -> set[str]:
    return set(_TOKEN.findall(normalise_query(query)))


class LongTail:
    """Long-tail membership against the token document frequencies of a set of reference queries."""

    def __init__(self, reference_queries: Iterable[str], min_queries: int = 3) -> None:
        self.min_queries = min_queries
        self.document_frequency: Counter[str] = Counter()
        for query in {normalise_query(q) for q in reference_queries}:
            self.document_frequency.update(query_tokens(query))

    @property
    def definition(self) -> str:
        return (f"queries with a token seen in fewer than {self.min_queries} distinct train-split queries "
                f"({len(self.document_frequency)} token types in the reference vocabulary)")

    def is_long_tail(self, query: str) -> bool:
        return any(self.document_frequency[token] < self.min_queries for token in query_tokens(query))
