"""The CoT grammar of ELLM-rele (docs/architecture.md, "The CoT grammar"; paper §3.1 and Fig. 3): the
`Explanation` model, its canonical rendering and a tolerant parser.

Rendered form (one line)::

    Thinking: query has product requirement: angle bracket, brand requirement: simpson; ad in product: angle,
    matches; ad in brand: Simpson Strong-Tie, matches. Final judgment: Good

    ... Final judgment: Bad-brand mismatch

- no query requirements render as ``query has no requirements``, no item values as ``ad has no attributes``;
- an optional free-text note goes between the item values and ``Final judgment``, as in Fig. 3
  (``... ad in gender: female, matches. material requirement in query is not met. Final judgment: Bad-...``);
- the judgement word comes right after ``Final judgment: ``: the teacher's score is read from that token.

The parser splits on the grammar's keywords (``requirement:``, ``ad in <aspect>:``, ``, matches`` /
``, mismatches``, ``Final judgment``), never naively on commas, so values may hold commas, hyphens, slashes, dots
and digits. It tolerates case, spacing and "judgement" spelling, full-width punctuation, the paper's braces
(``ad in {material: cotton, mismatches}``), verdict variants (match/matched/mismatch/does not match), extra
sentences (kept as the note) and unknown aspects ("other properties", with a warning). It then locates every
query-side value in the query and every item-side value in the title; a value not found is a warning (span None).
Malformed text gives ``ok=False`` with readable errors, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from relevance_core.cot.aspects import canonical_aspect, lookup_aspect

Judgement = Literal["Good", "Bad"]


def judgement_of(score: float, threshold: float = 0.5) -> Judgement:
    """The judgement a score stands for: Good at or above ``threshold``."""
    return "Good" if score >= threshold else "Bad"

Span = tuple[int, int]
Value = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Aspected(BaseModel):
    model_config = ConfigDict(frozen=True)

    aspect: str = Field(description="Canonical aspect name (see relevance_core.cot.aspects.ASPECTS).")
    value: Value

    @field_validator("aspect")
    @classmethod
    def _canonical(cls, aspect: str) -> str:
        return canonical_aspect(aspect)


class QueryRequirement(_Aspected):
    """An attribute the query asks for, e.g. brand requirement: simpson."""

    span: Span | None = Field(default=None, description="[start, end) character offsets of value in the query.")


class ItemValue(_Aspected):
    """The item's value for an aspect and whether it matches the query, e.g. ad in brand: Simpson, matches."""

    matches: bool
    span: Span | None = Field(default=None, description="[start, end) character offsets of value in the title.")


class Explanation(BaseModel):
    """A parsed (or to-be-rendered) ELLM-rele chain of thought."""

    model_config = ConfigDict(frozen=True)

    query_requirements: list[QueryRequirement] = Field(default_factory=list)
    item_values: list[ItemValue] = Field(default_factory=list)
    judgement: Judgement
    reason: str | None = Field(default=None, description='Text after "Bad-", e.g. "material mismatch".')
    note: str | None = Field(default=None, description="Free text between the item values and the judgement.")

    @field_validator("reason")
    @classmethod
    def _one_line(cls, reason: str | None) -> str | None:
        return " ".join(reason.split()) or None if reason is not None else None

    @field_validator("note")
    @classmethod
    def _sentence(cls, note: str | None) -> str | None:
        """A note is rendered as a sentence before "Final judgment", so it ends with a full stop."""
        note = " ".join(note.split()) if note is not None else ""
        return None if not note else note if note[-1] in ".!?" else note + "."

    @model_validator(mode="after")
    def _reason_only_if_bad(self) -> Explanation:
        if self.judgement == "Good" and self.reason:
            raise ValueError("a Good judgement has no reason")
        return self


class ParseResult(BaseModel):
    """What `parse` found. ``ok`` is False iff there are errors; ``explanation`` is then a best effort
    (None when no judgement could be read). Warnings never make the result not ok."""

    ok: bool
    explanation: Explanation | None = None
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (spans as lists)."""
        return self.model_dump(mode="json")


def render(explanation: Explanation) -> str:
    """The canonical CoT text of ``explanation`` (see the module docstring)."""
    if explanation.query_requirements:
        query = ", ".join(f"{r.aspect} requirement: {r.value}" for r in explanation.query_requirements)
    else:
        query = "no requirements"
    if explanation.item_values:
        item = "; ".join(
            f"ad in {v.aspect}: {v.value}, {'matches' if v.matches else 'mismatches'}" for v in explanation.item_values
        )
    else:
        item = "ad has no attributes"
    text = f"Thinking: query has {query}; {item}."
    if explanation.note:
        text += f" {explanation.note}"
    text += f" Final judgment: {explanation.judgement}"
    if explanation.judgement == "Bad" and explanation.reason:
        text += f"-{explanation.reason}"
    return text


# ---------------------------------------------------------------------------------------------------- parsing

# Full-width punctuation as a teacher trained on Chinese data may write it, mapped one to one onto ASCII.
_FULLWIDTH = str.maketrans("\uff0c\uff1b\uff1a\u3002\uff08\uff09\uff5b\uff5d", ",;:.(){}")
_FINAL_RE = re.compile(r"final[\s_-]*judge?ment\s*(?:is\s*)?:?\s*", re.IGNORECASE)
_WORD_RE = re.compile(r"[\s*_\"'`]*([^\W\d_]+)")
_REASON_RE = re.compile(r"[\s*_\"'`]*[-\u2013\u2014:,(]\s*([^\n]*)")
_THINKING_RE = re.compile(r"\s*thinking\s*:?", re.IGNORECASE)
_QUERY_HAS_RE = re.compile(r"(?:the\s+)?query\s+(?:has|have|requires|contains)\b\s*:?", re.IGNORECASE)
_NO_REQUIREMENTS_RE = re.compile(r"\s*no\b", re.IGNORECASE)
_REQUIREMENT_RE = re.compile(r"\brequirements?\s*:", re.IGNORECASE)
_ITEM_RE = re.compile(r"(?<![^\W_])(?:ad|item)\s+in\s*[{(\[]?\s*(?P<aspect>[^:{}()\[\]\n;,]{1,40}?)\s*:", re.IGNORECASE)
_ITEM_NONE_RE = re.compile(r"(?<![^\W_])(?:ad|item)\s+has\s+no\b[^.;\n]*", re.IGNORECASE)
_VERDICT = (
    r"(?P<verdict>does\s*n[o']?t\s+match(?:es)?|do(?:es)?\s+not\s+match|not\s+match(?:ed|es|ing)?|no\s+match"
    r"|un-?matched|mis-?match(?:es|ed|ing)?|match(?:es|ed|ing)?)\b"
)
# The grammar puts a comma before the verdict; a verdict without one is accepted only if none has one.
_VERDICT_COMMA_RE = re.compile(r",\s*" + _VERDICT, re.IGNORECASE)
_VERDICT_SPACE_RE = re.compile(r"(?<![^\W_])\s*" + _VERDICT, re.IGNORECASE)
_POSITIVE_VERDICTS = re.compile(r"match(?:es|ed|ing)?", re.IGNORECASE)
VALUE_TRIM = " \t\r\n{}()[]\"'`.,;:-*"


def parse(text: str, query: str, title: str) -> ParseResult:
    """Parse ELLM-rele CoT ``text`` for the pair (``query``, ``title``). Never raises on any string input."""
    errors: list[str] = []
    warnings: list[str] = []
    if not text.strip():
        return ParseResult(ok=False, errors=["empty text"])
    text = text.translate(_FULLWIDTH)
    finals = list(_FINAL_RE.finditer(text))
    if not finals:
        return ParseResult(ok=False, errors=["no 'Final judgment:' found"])
    final = finals[0]
    if len(finals) > 1:
        warnings.append(f"'Final judgment' appears {len(finals)} times; the first one is used")
    judgement, reason = _judgement(text[final.end() :], errors, warnings)
    if judgement is None:
        return ParseResult(ok=False, errors=errors, warnings=warnings)

    body = text[: final.start()]
    thinking = _THINKING_RE.match(body)
    if thinking:
        body = body[thinking.end() :]
    if not body.strip():
        warnings.append("no reasoning before 'Final judgment'")
    items = list(_ITEM_RE.finditer(body))
    no_items = _ITEM_NONE_RE.search(body, 0, items[0].start() if items else len(body))
    query_end = no_items.start() if no_items else items[0].start() if items else len(body)
    requirements = _requirements(body[:query_end], query, errors, warnings)
    notes: list[str] = []
    if no_items:
        notes.append(_leftover(body[no_items.end() : items[0].start() if items else len(body)]))
    values = _item_values(body, items, title, notes, errors, warnings)
    for value in values:
        if judgement == "Good" and not value.matches:
            warnings.append(f"judgement is Good but ad in {value.aspect}: {value.value!r} mismatches")
    explanation = Explanation(
        query_requirements=requirements,
        item_values=values,
        judgement=judgement,
        reason=reason,
        note=" ".join(n for n in notes if n) or None,
    )
    return ParseResult(ok=not errors, explanation=explanation, errors=errors, warnings=warnings)


def _judgement(after: str, errors: list[str], warnings: list[str]) -> tuple[Judgement | None, str | None]:
    """Read the judgement word and, for Bad, the reason from the text after "Final judgment:"."""
    word = _WORD_RE.match(after)
    if not word:
        errors.append(f"no judgement word after 'Final judgment:' (found {after[:20]!r})")
        return None, None
    judgement: Judgement
    if word.group(1).lower() == "good":
        judgement = "Good"
    elif word.group(1).lower() == "bad":
        judgement = "Bad"
    else:
        errors.append(f"judgement word {word.group(1)!r} is not Good or Bad")
        return None, None
    rest = after[word.end() :]
    reason_match = _REASON_RE.match(rest)
    reason = reason_match.group(1).strip().rstrip(".)").strip() if reason_match else ""
    if judgement == "Good" and reason:
        warnings.append(f"reason {reason!r} after a Good judgement is ignored")
        reason = ""
    return judgement, reason or None


def _requirements(segment: str, query: str, errors: list[str], warnings: list[str]) -> list[QueryRequirement]:
    """The query-side part: "query has <aspect> requirement: <value>, <aspect> requirement: <value>..."."""
    start = _QUERY_HAS_RE.search(segment)
    if start:
        if segment[: start.start()].strip():
            warnings.append(f"ignored text before 'query has': {segment[: start.start()].strip()!r}")
        segment = segment[start.end() :]
    markers = list(_REQUIREMENT_RE.finditer(segment))
    if not markers:
        if segment.strip() and not _NO_REQUIREMENTS_RE.match(segment):
            warnings.append(f"no query requirements found in {segment.strip()!r}")
        return []
    # Each marker's preceding text is "<previous value>, <aspect> " (for the first: "<aspect> ").
    raw: list[tuple[str, str]] = []  # (aspect as written, value)
    previous_end = 0
    for marker in markers:
        value, aspect = _split_aspect(segment[previous_end : marker.start()], first=not raw)
        if raw:
            raw[-1] = (raw[-1][0], value)
        elif value:
            warnings.append(f"ignored text before the first requirement: {value!r}")
        raw.append((aspect, ""))
        previous_end = marker.end()
    raw[-1] = (raw[-1][0], segment[previous_end:].rstrip(" \t\r\n;,"))

    requirements = []
    for aspect, value in raw:
        if not aspect:
            errors.append(f"requirement {value!r} has no aspect")
            continue
        aspect = _known(aspect, warnings)
        value = value.strip().removeprefix("{").removesuffix("}").strip()
        if not _has_content(value):
            errors.append(f"{aspect} requirement has an empty value ({value!r})")
            continue
        value, span = _locate_value(value, query)
        if span is None:
            warnings.append(f"{aspect} requirement {value!r} not found in the query")
        requirements.append(QueryRequirement(aspect=aspect, value=value, span=span))
    return requirements


def _split_aspect(pre: str, first: bool) -> tuple[str, str]:
    """Split "<previous value>, <aspect> " into (previous value, aspect as written).

    The aspect is the longest run of up to 4 trailing words (after the last comma or semicolon) that names a
    known aspect; failing that, all of those words if they follow a separator or open the segment, else the last
    word (an unknown aspect, later mapped to "other properties")."""
    cut = max(pre.rfind(","), pre.rfind(";"))
    head, tail = pre[: cut + 1], pre[cut + 1 :]
    words = list(re.finditer(r"\S+", tail))
    if not words:
        return _clean_previous(head), ""
    aspect_start = None
    for k in range(min(4, len(words)), 0, -1):
        if lookup_aspect(tail[words[-k].start() :]):
            aspect_start = words[-k].start()
            break
    if aspect_start is None:
        aspect_start = words[0].start() if (cut >= 0 or first) and len(words) <= 4 else words[-1].start()
    return _clean_previous(head + tail[:aspect_start]), tail[aspect_start:].strip().strip("{}()[]")


def _clean_previous(value: str) -> str:
    value = value.rstrip(" \t\r\n,;")
    if re.search(r"\s(?:and|&)$", value, re.IGNORECASE):
        value = value.rsplit(None, 1)[0].rstrip(" \t\r\n,;")
    return value.strip()


def _item_values(
    body: str,
    items: list[re.Match[str]],
    title: str,
    notes: list[str],
    errors: list[str],
    warnings: list[str],
) -> list[ItemValue]:
    """The item-side part: "ad in <aspect>: <value>, matches|mismatches" (also "ad in {<aspect>: <value>,
    mismatches}" and "ad in <aspect>: {<value>, matches}"). Text after a verdict up to the next "ad in" is
    kept as a note."""
    values = []
    for i, item in enumerate(items):
        chunk = body[item.end() : items[i + 1].start() if i + 1 < len(items) else len(body)]
        aspect = _known(item.group("aspect"), warnings)
        verdict = _verdict(chunk)
        if verdict is None:
            errors.append(f"'ad in {item.group('aspect').strip()}' has no matches/mismatches verdict")
            continue
        value = chunk[: verdict.start()].strip().removeprefix("{").removesuffix("}").strip()
        notes.append(_leftover(chunk[verdict.end() :]))
        if not _has_content(value):
            errors.append(f"ad in {aspect} has an empty value ({value!r})")
            continue
        value, span = _locate_value(value, title)
        if span is None:
            warnings.append(f"ad in {aspect} value {value!r} not found in the title")
        matches = _POSITIVE_VERDICTS.fullmatch(verdict.group("verdict")) is not None
        values.append(ItemValue(aspect=aspect, value=value, matches=matches, span=span))
    return values


def _verdict(chunk: str) -> re.Match[str] | None:
    """The first comma-preceded verdict with a non-empty value before it, else the first space-preceded one."""
    for pattern in (_VERDICT_COMMA_RE, _VERDICT_SPACE_RE):
        for match in pattern.finditer(chunk):
            if chunk[: match.start()].strip(" \t\r\n{"):
                return match
    return None


def _leftover(text: str) -> str:
    """Free text after a verdict (or after "ad has no attributes"), without the grammar's punctuation."""
    return text.lstrip(" \t\r\n}]).,;").strip()


def _has_content(value: str) -> bool:
    return any(c.isalnum() for c in value)


def _known(aspect: str, warnings: list[str]) -> str:
    canonical = lookup_aspect(aspect)
    if canonical is None:
        canonical = canonical_aspect(aspect)
        warnings.append(f"unknown aspect {aspect.strip()!r} mapped to {canonical!r}")
    return canonical


# ------------------------------------------------------------------------------------------------------ spans


def _locate_value(value: str, text: str) -> tuple[str, Span | None]:
    """Find ``value`` in ``text``, also trimmed of surrounding punctuation ("simpson." → "simpson"), trying both
    at each level of `find_span` before the next. Returns (the value that was found, span), or (value, None)."""
    trimmed = value.strip(VALUE_TRIM)
    candidates = [value, trimmed] if trimmed and trimmed != value else [value]
    for keep in _LEVELS:
        for candidate in candidates:
            span = _find(candidate, text, keep)
            if span is not None:
                return candidate, span
    return value, None


_LEVELS: tuple[Callable[[str], bool], ...] = (
    lambda c: True,  # case-insensitive
    lambda c: not c.isspace(),  # ... ignoring whitespace ("1/2in." ~ "1/2 in.")
    str.isalnum,  # ... ignoring all punctuation too ("strong tie" ~ "Strong-Tie")
)


def find_span(value: str, text: str) -> Span | None:
    """[start, end) of ``value`` in ``text``, case-insensitively; failing that ignoring whitespace, then ignoring
    whitespace and punctuation. Among several occurrences the first at word boundaries wins, else the first."""
    for keep in _LEVELS:
        span = _find(value, text, keep)
        if span is not None:
            return span
    return None


def _find(value: str, text: str, keep: Callable[[str], bool]) -> Span | None:
    """`find_span` at one level: compare only the characters ``keep`` keeps, lowercased."""
    needle, _ = _normalise(value, keep)
    if not needle:
        return None
    haystack, index = _normalise(text, keep)
    first = None
    position = haystack.find(needle)
    while position >= 0:
        start, end = index[position], index[position + len(needle) - 1] + 1
        if _at_word_boundaries(text, start, end):
            return start, end
        first = first or (start, end)
        position = haystack.find(needle, position + 1)
    return first


def _normalise(text: str, keep: Callable[[str], bool]) -> tuple[str, list[int]]:
    """Lowercase the kept characters of ``text`` one for one; also return each kept character's index."""
    chars, index = [], []
    for i, c in enumerate(text):
        if keep(c):
            lower = c.lower()
            chars.append(lower if len(lower) == 1 else c)
            index.append(i)
    return "".join(chars), index


def _at_word_boundaries(text: str, start: int, end: int) -> bool:
    before = start == 0 or not (text[start - 1].isalnum() and text[start].isalnum())
    after = end == len(text) or not (text[end - 1].isalnum() and text[end].isalnum())
    return before and after
