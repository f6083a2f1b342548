"""What the explain API returns (both transports; gRPC carries it whole as ``result_json``): one `ExplainResult`
per pair, in either mode, and `ExplainPage` for a result page."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from relevance_core.cot import Explanation, Judgement
from relevance_core.teacher.score import Normalisation

Mode = Literal["decision", "teacher"]
Writer = Literal["rules", "llm"]


class AspectEvidence(BaseModel):
    """One aspect of the CoT: what the query asks for and what the item has, with character spans."""

    aspect: str
    query_value: str | None = Field(description="The query's requirement; None if the CoT states none.")
    query_span: tuple[int, int] | None = Field(description="[start, end) of query_value in the query.")
    item_value: str | None = Field(description="The item's value; None if the CoT does not check the item.")
    item_span: tuple[int, int] | None = Field(description="[start, end) of item_value in the title.")
    matches: bool | None = Field(description="Whether the item's value matches; None if not checked.")


def aspects_of(explanation: Explanation | None) -> list[AspectEvidence]:
    """Pair each query requirement with the first unpaired item value of the same aspect, in the query's order;
    item values for aspects the query does not mention follow."""
    if explanation is None:
        return []
    items = list(explanation.item_values)
    aspects = []
    for requirement in explanation.query_requirements:
        item = next((v for v in items if v.aspect == requirement.aspect), None)
        if item is not None:
            items.remove(item)
        aspects.append(AspectEvidence(aspect=requirement.aspect, query_value=requirement.value,
                                      query_span=requirement.span, item_value=item.value if item else None,
                                      item_span=item.span if item else None, matches=item.matches if item else None))
    aspects.extend(AspectEvidence(aspect=v.aspect, query_value=None, query_span=None, item_value=v.value,
                                  item_span=v.span, matches=v.matches) for v in items)
    return aspects


class TokenEvidence(BaseModel):
    query_token: str
    title_token: str
    similarity: float = Field(description="Cosine of the two token embeddings (the MaxSim term).")
    query_span: tuple[int, int] | None = Field(None, description="[start, end) of the query token in the query.")
    title_span: tuple[int, int] | None = Field(None, description="[start, end) of the matched title token in the "
                                                                 "title; None for a special token.")


class StudentView(BaseModel):
    """The served student's view of the pair: its score and its token evidence (MaxSim alignment)."""

    model_version: str
    score: float = Field(description="Calibrated probability that the item is relevant (Good): the number "
                                     "/v1/score gives for the same item.")
    label: Judgement = Field(description="Good when score >= the gateway's good_threshold.")
    source: Literal["store", "title"] | None = Field(None, description="Where the item's embeddings came from.")
    evidence: list[TokenEvidence] = Field(description="Per query token, the title token it matched best.")


class RequirementView(BaseModel):
    """A query requirement as the student read it (decision mode)."""

    aspect: str
    value: str = Field(description="The query's words for it.")
    span: tuple[int, int] = Field(description="[start, end) of value in the query.")
    support: float = Field(description="Mean MaxSim term of its query tokens (their best cosine in the title).")
    status: Literal["met", "unmet", "weak"] = Field(
        description="unmet: the explanation names it unmet (a Bad verdict: support below explain_threshold, or the "
                    "least supported requirement when all reach it); met: support >= explain_threshold; weak: below "
                    "it but not what the verdict rests on (a Good verdict names no requirement unmet).")
    title_spans: list[tuple[int, int]] = Field(description="The title words its tokens matched at or above the "
                                                           "threshold.")


class EditView(BaseModel):
    """A counterfactual edit of the title and the student's score after it."""

    edit: Literal["remove", "add"] = Field(description="remove: the values cut out of the title; add: appended.")
    values: list[str]
    title: str = Field(description="The edited title.")
    score: float = Field(description="The student's score of the edited title.")
    delta: float = Field(description="score minus the pair's score.")


class Counterfactual(BaseModel):
    """What the explanation implies a catalogue team could change: ``implied`` applies every cited value at once
    (the edit the faithfulness test checks), ``each`` one value at a time."""

    implied: EditView
    each: list[EditView] = Field(default_factory=list)


class ExplainResult(BaseModel):
    """The explanation of one (query, title) pair. ``mode`` decision: the CoT explains the served student's
    verdict (``verdict``/``score`` are the student's, as /v1/score gives them); teacher: the teacher's own
    judgement, with the student's beside it."""

    mode: Mode
    query: str
    title: str
    item_id: str | None = Field(None, description="The item explained, when it was named by id.")
    verdict: Judgement | None = Field(description="The decision explained: the student's label (decision) or the "
                                                  "teacher's written judgement (teacher).")
    writer: str = Field(description="Who wrote the CoT: rules, llm (the teacher under the decision grammar) or "
                                    "teacher.")
    cot: str = Field(description="The chain of thought as written.")
    judgement: Judgement | None = Field(description="Good or Bad as written in the CoT; None if it has none.")
    reason: str | None = Field(description='The reason of a Bad judgement, e.g. "brand mismatch".')
    aspects: list[AspectEvidence]
    note: str | None = Field(description="Free text of the CoT before the judgement.")
    score: float | None = Field(description="decision: the student's score; teacher: the teacher's relevance score "
                                            "(eq. 4), None if it could not be read.")
    p_good: float | None = Field(None, description="teacher: p(Good) at the judgement token.")
    p_bad: float | None = Field(None, description="teacher: p(Bad) at the judgement token.")
    normalisation: Normalisation | None = Field(None, description="teacher: how eq. 4 was normalised.")
    score_reason: str | None = Field(None, description="Why there is no score.")
    parse_ok: bool = Field(description="Whether the CoT followed the grammar.")
    parse_errors: list[str]
    parse_warnings: list[str]
    model: str = Field(description="The model that wrote the CoT (rules, or the teacher model).")
    latency_ms: float
    student: StudentView | None = Field(None, description="The served student's score and evidence for the pair; "
                                                          "None when it could not score it (see student_error).")
    student_error: str | None = None
    disagreement: bool | None = Field(None, description="teacher: the teacher's judgement (or its score at 0.5 "
                                                        "when it wrote none) differs from the student's label. None "
                                                        "when either is missing; always false in decision mode.")
    requirements: list[RequirementView] = Field(default_factory=list, description="decision: each query "
                                                "requirement with the student's support for it.")
    counterfactual: Counterfactual | None = Field(None, description="With counterfactual=true (decision): the "
                                                  "edit the explanation implies and the student's score after it.")


class PageEntry(BaseModel):
    """One item of a result page: its explanation, or why it has none."""

    id: str
    result: ExplainResult | None = None
    error: str | None = None


class ExplainPage(BaseModel):
    """Explanations of a result page, in request order."""

    query: str
    model_version: str
    items: list[PageEntry]
    n_explained: int
    n_errors: int
    latency_ms: float
