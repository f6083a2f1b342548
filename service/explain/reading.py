"""The served student's reading of one (query, title) pair, in the words of the pair: which of the query's
requirements found a strong match in the title, where, and how strongly.

ColBERT's score is an average over query tokens of each token's best cosine with a title token (MaxSim), so the
score decomposes exactly into per-token terms. This module maps those terms back to text: query tokens to the
requirements the rule annotator reads off the query (brand, product, sizes, colours…: `relevance_core.annotation`)
and the matched title tokens to whole words of the title. A requirement's *support* is the mean MaxSim term of its
tokens; it is *met* when its support reaches the threshold, and its title evidence is the words its tokens matched
at or above it. Torch-free: the engine's `Interaction` and the tokenizer's character offsets are all it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from relevance_core.annotation import Annotator, Requirement
from relevance_core.cot.grammar import VALUE_TRIM
from service.core.engine import Interaction
from service.core.tokenization import StudentTokenizer

Span = tuple[int, int]


def words(text: str) -> list[Span]:
    """The whitespace-separated words of ``text`` as [start, end) spans, trimmed of the characters CoT values are
    trimmed of (`VALUE_TRIM`), so that each is a value the CoT grammar can cite and `parse` locates."""
    spans: list[Span] = []
    position = 0
    for raw in text.split():
        start = text.index(raw, position)
        position = start + len(raw)
        stripped = raw.strip(VALUE_TRIM)
        if stripped:
            offset = raw.index(stripped)
            spans.append((start + offset, start + offset + len(stripped)))
    return spans


def _word_of(span: Span, word_spans: list[Span]) -> int | None:
    """The index of the word that overlaps the token ``span`` (None for a token of trimmed punctuation only)."""
    return next((k for k, (s, e) in enumerate(word_spans) if s < span[1] and span[0] < e), None)


def runs(indices: set[int], word_spans: list[Span]) -> list[Span]:
    """Consecutive word indices merged into runs, as character spans of the text."""
    out: list[Span] = []
    for k in sorted(indices):
        if out and k - 1 in indices:
            out[-1] = (out[-1][0], word_spans[k][1])
        else:
            out.append(word_spans[k])
    return out


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """One query token's MaxSim term: the token, its span in the query, the title token it matched best (its span
    in the title; None when that is a special token) and the cosine."""

    query_token: str
    query_span: Span
    title_token: str
    title_span: Span | None
    similarity: float


@dataclass(frozen=True, slots=True)
class RequirementReading:
    """A query requirement as the student read it: ``support`` is the mean MaxSim term of its tokens, ``met`` is
    support >= the threshold, ``matched`` the title word runs its tokens matched at or above the threshold, and
    ``closest`` the title word run of its best-matching token (what the student compared it with)."""

    aspect: str
    span: Span
    value: str
    support: float
    met: bool
    matched: tuple[Span, ...]
    closest: Span | None


@dataclass(frozen=True, slots=True)
class PairReading:
    query: str
    title: str
    similarity: float
    tokens: tuple[TokenMatch, ...]
    requirements: tuple[RequirementReading, ...]


class TokensDiffer(ValueError):
    """The interaction's item tokens are not the given title's (the store holds another title under that id)."""


def read_pair(tokenizer: StudentTokenizer, annotator: Annotator, query: str, title: str, interaction: Interaction,
              threshold: float) -> PairReading:
    """The student's reading of (``query``, ``title``) from the ``interaction`` behind its score. Raises
    `TokensDiffer` when the interaction's item tokens are not ``title``'s."""
    q_ids, q_spans = tokenizer.side_offsets(query, "query")
    t_ids, t_spans = tokenizer.side_offsets(title, "item")
    if q_ids != interaction.query_ids.tolist():
        raise TokensDiffer("the query's tokens differ from the scored query's")
    if t_ids != interaction.item_ids.tolist():
        raise TokensDiffer("the stored item's tokens are not the given title's")
    live = np.flatnonzero(interaction.item_mask)
    best_rows = interaction.sim.argmax(axis=0)  # per query position, the best taking-part item token
    best_sims = interaction.sim.max(axis=0)
    # the best title *word* token per query position ([CLS] and [SEP] take part in MaxSim but are no words)
    textual = np.array([t_spans[int(p)] is not None for p in live])
    text_sim = np.where(textual[:, None], interaction.sim, -np.inf)
    text_rows, text_sims = text_sim.argmax(axis=0), text_sim.max(axis=0)
    title_words = words(title)
    query_tokens = tokenizer.tokens(q_ids)
    item_tokens = tokenizer.tokens(t_ids)
    tokens: list[TokenMatch] = []
    token_word: list[tuple[int | None, float]] = []  # per shown token: its best title word and that cosine
    for j, span in enumerate(q_spans):
        if span is None:
            continue
        position = int(live[best_rows[j]])
        tokens.append(TokenMatch(query_tokens[j], span, item_tokens[position], t_spans[position],
                                 round(float(best_sims[j]), 4)))
        word_span = t_spans[int(live[text_rows[j]])] if textual.any() else None
        token_word.append((None if word_span is None else _word_of(word_span, title_words), float(text_sims[j])))

    def reading(aspect: str, start: int, end: int) -> RequirementReading | None:
        inside = [k for k, t in enumerate(tokens) if t.query_span[0] < end and start < t.query_span[1]]
        if not inside:
            return None
        support = float(np.mean([tokens[k].similarity for k in inside]))
        matched = {w for k in inside if (w := token_word[k][0]) is not None and token_word[k][1] >= threshold}
        best = max(inside, key=lambda k: token_word[k][1])
        closest = token_word[best][0]
        return RequirementReading(aspect, (start, end), query[start:end], round(support, 4), support >= threshold,
                                  tuple(runs(matched, title_words)),
                                  None if closest is None else title_words[closest])

    requirements = annotator.requirements(query, complete=True) or [_whole(query)]
    read = [r for req in requirements if (r := reading(req.aspect, req.start, req.end)) is not None]
    if not read:  # the annotator's spans hold no token (e.g. cut by truncation): the query as one requirement
        whole = _whole(query)
        read = [r for r in [reading(whole.aspect, whole.start, whole.end)] if r is not None]
    return PairReading(query, title, interaction.similarity, tuple(tokens), tuple(read))


def _whole(query: str) -> Requirement:
    """The query as one product requirement (for a query the annotator finds no requirement in)."""
    spans = words(query) or [(0, len(query))]
    return Requirement("product", spans[0][0], spans[-1][1])
