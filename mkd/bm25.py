"""BM25 over product titles (bm25s, Lucene variant, English stop words and Snowball stemming).

Used twice: as the ``bm25`` baseline of ``relevance evaluate`` and to retrieve the unlabeled pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np
import Stemmer

# Keep one-character tokens: sizes and counts ("2 x 4", "1/2 in.") matter in this catalogue.
TOKEN_PATTERN = r"(?u)\b\w+\b"


class BM25Index:
    """An in-memory BM25 index over a list of titles; document ids are list positions."""

    def __init__(self, titles: Sequence[str], *, show_progress: bool = False) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        self._retriever = bm25s.BM25()
        self._retriever.index(self.tokenize(titles, show_progress=show_progress), show_progress=show_progress)
        self.size = len(titles)

    def tokenize(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        return bm25s.tokenize(list(texts), token_pattern=TOKEN_PATTERN, stopwords="en", stemmer=self._stemmer,
                              return_ids=False, show_progress=show_progress)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of ``query`` against every indexed title (float32, length ``size``)."""
        return self._retriever.get_scores(self.tokenize([query])[0])

    def top_k(self, queries: Sequence[str], k: int, *, show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Document ids and scores of the ``k`` best titles per query, best first (zero scores included)."""
        k = min(k, self.size)
        result = self._retriever.retrieve(self.tokenize(queries), k=k, show_progress=show_progress)
        return result.documents, result.scores
