"""Explanations of the served decision: a chain of thought that reaches the served student's verdict and says
why, from the student's own evidence (`service.explain.reading`).

The verdict is the student's (score >= ``good_threshold``: Good). The CoT names:

- for a **Good** verdict, the requirements the student found met, each with the title words that matched it
  (``ad in product: Angle Bracket, matches``); no requirement is named unmet. If no requirement reaches the
  threshold, the best-supported one is cited with the words it matched best;
- for a **Bad** verdict, the requirements the student found unmet, each with the title value it was compared with
  (``ad in product: Concrete Stain, mismatches``), beside the met ones. If every requirement reaches the
  threshold, the least-supported one is named unmet (the score is low although each requirement has a match).

The title value of an unmet requirement is, in this order, the title's own value for that aspect when the rule
annotator finds one that mismatches (its brand, colour, size…), the title's head noun for a product, or the title
words the requirement's tokens matched best. Every value is a span of the query or the title.

The edit an explanation implies (`implied_edit`) is what a catalogue team could act on and what the faithfulness
test applies: for Good, remove the cited matching title words wherever the title has them (the score should
drop); for Bad, add the unmet requirements' query values in front of the title (the score should rise).

Two writers render it: ``rules`` (`write_rules`, deterministic, well under a millisecond) and ``llm`` (the
teacher decoding under `decision_grammar`, which admits only CoTs of this shape: the fixed judgement, the
requirements and values above, at least one mismatch for Bad and none for Good).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from relevance_core.annotation import Annotator, Requirement
from relevance_core.cot import Explanation, ItemValue, Judgement, QueryRequirement, find_span
from relevance_core.cot.grounding import literal
from service.explain.reading import PairReading, RequirementReading, Span


@dataclass(frozen=True, slots=True)
class Cited:
    """What a decision explanation cites: the requirements named met (with the title spans that matched each)
    and those named unmet (with the title value each was compared with)."""

    verdict: Judgement
    met: tuple[tuple[RequirementReading, tuple[Span, ...]], ...]
    unmet: tuple[tuple[RequirementReading, Span | None], ...]


def cite(reading: PairReading, annotator: Annotator, verdict: Judgement) -> Cited:
    """What the explanation of ``verdict`` cites (see the module docstring); nothing for a query without a token
    the student reads (e.g. only control characters: the score rests on the special tokens alone)."""
    requirements = list(reading.requirements)
    if not requirements:
        return Cited(verdict, (), ())
    met = [r for r in requirements if r.met and r.matched]
    if verdict == "Good":
        if not met:
            best = max(requirements, key=lambda r: r.support)
            met = [best]
        return Cited(verdict, tuple((r, r.matched or _closest(r)) for r in met), ())
    unmet = [r for r in requirements if not r.met]
    if not unmet:
        unmet = [min(requirements, key=lambda r: r.support)]
    met = [r for r in met if r not in unmet]
    return Cited(verdict, tuple((r, r.matched) for r in met),
                 tuple((r, _compared_value(reading, annotator, r)) for r in unmet))


def _closest(requirement: RequirementReading) -> tuple[Span, ...]:
    return () if requirement.closest is None else (requirement.closest,)


def _compared_value(reading: PairReading, annotator: Annotator, requirement: RequirementReading) -> Span | None:
    """The title value an unmet requirement is compared with (see the module docstring)."""
    query, title = reading.query, reading.title
    lexical = annotator.route(query, title, "strict", [Requirement(requirement.aspect, *requirement.span)])
    value = next((v for v in lexical.item_values if not v.matches), None)
    span = find_span(value.value, title) if value is not None else None
    return span if span is not None else requirement.closest


def write_rules(reading: PairReading, cited: Cited) -> Explanation:
    """The CoT of ``cited`` in the project's grammar: every requirement of the query, then the cited title values
    (met ones as matches, unmet ones as mismatches), then the verdict."""
    title = reading.title
    requirements = [QueryRequirement(aspect=r.aspect, value=r.value, span=r.span) for r in reading.requirements]
    values = [ItemValue(aspect=r.aspect, value=title[s:e], matches=True, span=(s, e))
              for r, spans in cited.met for s, e in spans]
    values += [ItemValue(aspect=r.aspect, value=title[span[0]:span[1]], matches=False, span=span)
               for r, span in cited.unmet if span is not None]
    bad = cited.verdict == "Bad"
    return Explanation(query_requirements=requirements, item_values=values, judgement=cited.verdict,
                       reason=reason_of(cited) if bad else None, note=unmet_note(cited) if bad else None)


@dataclass(frozen=True, slots=True)
class Edit:
    """A counterfactual edit of the title: ``remove`` every occurrence of the values, or ``add`` them in front (a
    title is cut at the student's title length, so words added at its end may never be read)."""

    kind: Literal["remove", "add"]
    values: tuple[str, ...]

    def apply(self, title: str) -> str:
        """The title after the edit, whitespace collapsed."""
        if self.kind == "add":
            return " ".join([*self.values, title.strip()])
        for value in self.values:
            title = _occurrences(value).sub(" ", title)
        return " ".join(title.split())


def _occurrences(value: str) -> re.Pattern[str]:
    """``value`` as whole words, case-insensitively, with any whitespace between its words."""
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, value.split())) + r"(?!\w)", re.IGNORECASE)


def implied_edit(explanation: Explanation) -> Edit | None:
    """The edit an explanation implies, read off the explanation alone (whoever wrote it): for Good, remove the
    title values it says match; for Bad, add the values of the query requirements it says are unmet (an aspect
    with a mismatching title value, or a requirement its note names). None when it cites nothing."""
    if explanation.judgement == "Good":
        values = [v.value for v in explanation.item_values if v.matches]
        return Edit("remove", tuple(dict.fromkeys(values))) if values else None
    unmet = {v.aspect for v in explanation.item_values if not v.matches}
    note = explanation.note or ""
    values = [r.value for r in explanation.query_requirements
              if r.aspect in unmet or f"requirement {r.value} is not met" in note]
    return Edit("add", tuple(dict.fromkeys(values))) if values else None


def single_edits(edit: Edit) -> list[Edit]:
    """``edit`` one value at a time (what each cited value does alone); none for a one-value edit."""
    return [Edit(edit.kind, (v,)) for v in edit.values] if len(edit.values) > 1 else []


def decision_grammar(reading: PairReading, cited: Cited) -> str:
    """The GBNF grammar of the CoTs that explain ``cited.verdict`` from the student's evidence: the query's
    requirements as the rules writer lists them, then some of the cited item values (met ones as matches; for Bad at
    least one unmet one as a mismatch), unmet requirements without a title value said in the note, and the judgement
    fixed (for Bad, the reason names an unmet aspect). The teacher chooses which evidence to cite and in which order,
    not what the decision was; every repetition is bounded, so a model cannot loop to its token limit."""
    title = reading.title
    requirements = ", ".join(f"{r.aspect} requirement: {r.value}" for r in reading.requirements) or "no requirements"
    matches = list(dict.fromkeys(f"ad in {r.aspect}: {title[s:e]}, matches" for r, spans in cited.met
                                 for s, e in spans))
    mismatches = list(dict.fromkeys(f"ad in {r.aspect}: {title[span[0]:span[1]]}, mismatches"
                                    for r, span in cited.unmet if span is not None))
    m, n = len(matches), len(mismatches)
    plain = f'match ("; " match){{0,{m - 1}}}' if matches else '"ad has no attributes"'
    items, judgement = plain, '"Good"'
    if cited.verdict == "Bad":
        judgement = '"Bad-" reason'
        if mismatches:
            items = (f'(match "; "){{0,{m}}} mismatch ("; " (match | mismatch)){{0,{m + n - 1}}}' if matches
                     else f'mismatch ("; " mismatch){{0,{n - 1}}}')
    note = unmet_note(cited)
    rules = [f'root ::= "Thinking: query has " requirements "; " items "."{" " + literal(" " + note) if note else ""}'
             f' " Final judgment: " judgement',
             f"requirements ::= {literal(requirements)}",
             f"items ::= {items}",
             f"judgement ::= {judgement}"]
    if cited.verdict == "Bad":
        reasons = [f"{r.aspect} mismatch" for r, _ in cited.unmet] or [reason_of(cited)]
        rules.append(f"reason ::= {_alternatives(reasons)}")
    if matches:
        rules.append(f"match ::= {_alternatives(matches)}")
    if mismatches:
        rules.append(f"mismatch ::= {_alternatives(mismatches)}")
    return "\n".join(rules) + "\n"


def reason_of(cited: Cited) -> str:
    """The rules writer's reason after ``Bad-``: the first unmet requirement's aspect (the llm writer picks any
    unmet one)."""
    return f"{cited.unmet[0][0].aspect} mismatch" if cited.unmet else "requirements not met"


def unmet_note(cited: Cited) -> str | None:
    """The sentence naming the unmet requirements that have no title value to cite as a mismatch."""
    unplaced = [r for r, span in cited.unmet if span is None]
    return " ".join(f"{r.aspect} requirement {r.value} is not met." for r in unplaced) or None


def _alternatives(options: list[str]) -> str:
    return " | ".join(literal(o) for o in dict.fromkeys(options))
