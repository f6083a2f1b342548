"""What an evaluation scores with: anything that maps pairs to one score each, higher meaning more relevant (a
probability of Good or any monotone score such as BM25). `mkd.scorers` builds them from a ``--model`` spec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from relevance_core.data import Pair


class PairScorer(Protocol):
    name: str

    def score(self, pairs: Sequence[Pair]) -> np.ndarray: ...
