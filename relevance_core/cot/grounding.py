"""Grounded decoding of a CoT: a grammar, per pair, that admits only chains of thought in the project's CoT
grammar (`render`'s form) whose query-side values are spans of the query's words and whose item-side values are
spans of the title's words. A teacher decoding under it cannot write a value that is not in the pair ("ad in
product: bracket dowels" for a title without those words), whatever its weights; the judgement after
``Final judgment: `` stays free (Good, or Bad with a short lowercase reason), so the score of eq. 4 is still read
from the model's own probabilities at that token.

The grammar is GBNF, the format of llama.cpp's grammar sampler; vLLM takes the same text as a structured-output
grammar (``{"structured_outputs": {"grammar": ...}}`` in the request body, since vLLM 0.10.2). Spans are runs of
1 to `MAX_SPAN_WORDS` whitespace-separated words, trimmed of the punctuation the parser trims (`VALUE_TRIM`), so
that every value the grammar admits is one `parse` locates.
"""

from __future__ import annotations

from relevance_core.cot.aspects import ASPECTS
from relevance_core.cot.grammar import VALUE_TRIM

MAX_SPAN_WORDS = 8
MAX_REASON_CHARS = 40


def word_spans(text: str, max_words: int = MAX_SPAN_WORDS) -> list[str]:
    """The distinct runs of 1 to ``max_words`` consecutive words of ``text``, each trimmed of `VALUE_TRIM`, in
    order of first appearance; runs that trim to nothing are dropped."""
    words = text.split()
    spans: dict[str, None] = {}
    for start in range(len(words)):
        for end in range(start + 1, min(len(words), start + max_words) + 1):
            span = " ".join(words[start:end]).strip(VALUE_TRIM)
            if span:
                spans.setdefault(span)
    return list(spans)


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _alternatives(options: list[str]) -> str:
    return " | ".join(literal(option) for option in options)


def grounded_grammar(query: str, title: str) -> str:
    """The GBNF grammar of the CoTs for (``query``, ``title``) whose values are spans of the pair (see the
    module docstring). A side without words admits only its "no requirements" / "no attributes" form."""
    query_spans, title_spans = word_spans(query), word_spans(title)
    requirements = '"no requirements"' + (' | requirement (", " requirement)*' if query_spans else "")
    items = '"ad has no attributes"' + (' | item ("; " item)*' if title_spans else "")
    rules = [
        'root ::= "Thinking: query has " requirements "; " items ". Final judgment: " judgement',
        f"requirements ::= {requirements}",
        f"items ::= {items}",
        'judgement ::= "Good" | "Bad-" reason',
        f"reason ::= [a-z] [a-z ]{{0,{MAX_REASON_CHARS - 1}}}",
        f"aspect ::= {_alternatives(list(ASPECTS))}",
    ]
    if query_spans:
        rules += ['requirement ::= aspect " requirement: " query-value',
                  f"query-value ::= {_alternatives(query_spans)}"]
    if title_spans:
        rules += ['item ::= "ad in " aspect ": " title-value ", " ("matches" | "mismatches")',
                  f"title-value ::= {_alternatives(title_spans)}"]
    return "\n".join(rules) + "\n"
