"""The explanation-quality metrics of `relevance teacher evaluate-explanations` on hand-made outcomes (the
evaluator against a real teacher server is in test_llama_teacher.py)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from mkd.evaluation.explanations import Outcome, _Counts, compare_aspects, grounding, summarise
from relevance_core.cot import Explanation, parse

QUERY, TITLE = "behr white deck stain", "BEHR Premium 1 gal. Cedar Semi-Transparent Deck Stain"
REFERENCE = ("Thinking: query has brand requirement: behr, color requirement: white, product requirement: deck stain; "
             "ad in brand: BEHR, matches; ad in color: Cedar, mismatches; ad in product: Deck Stain, matches. "
             "Final judgment: Bad-color mismatch")


def _parsed(cot: str) -> Explanation:
    explanation = parse(cot, QUERY, TITLE).explanation
    assert explanation is not None
    return explanation


def test_grounding_names_values_found_in_neither_text() -> None:
    cot = ("Thinking: query has brand requirement: Ryobi, product requirement: deck stain; ad in product: "
           "bracket dowels, matches. Final judgment: Good")
    assert grounding(_parsed(cot)) == [{"side": "query", "aspect": "brand", "value": "Ryobi"},
                                       {"side": "title", "aspect": "product", "value": "bracket dowels"}]
    assert grounding(_parsed(REFERENCE)) == []


def test_aspects_count_overlapping_spans_of_the_same_aspect_and_verdict() -> None:
    # the teacher misses the colour, says the brand matches, writes the product as the whole query's tail
    mine = ("Thinking: query has brand requirement: behr, product requirement: white deck stain; ad in brand: "
            "BEHR, matches; ad in product: Deck Stain, mismatches. Final judgment: Bad-product mismatch")
    requirements: dict[str, _Counts] = defaultdict(_Counts)
    values: dict[str, _Counts] = defaultdict(_Counts)
    compare_aspects(_parsed(mine), _parsed(REFERENCE), requirements, values)
    assert requirements["brand"].as_dict() == {"predicted": 1, "reference": 1, "precision": 1.0, "recall": 1.0}
    assert requirements["product"].as_dict()["precision"] == 1.0  # "white deck stain" overlaps "deck stain"
    assert requirements["color"].as_dict() == {"predicted": 0, "reference": 1, "precision": None, "recall": 0.0}
    assert values["brand"].as_dict()["precision"] == 1.0
    # same span, other verdict: wrong both ways
    assert values["product"].as_dict() == {"predicted": 1, "reference": 1, "precision": 0.0, "recall": 0.0}
    assert values["color"].as_dict()["recall"] == 0.0


def _outcome(cot: str | None, score: float | None, good: bool, student: float | None, **extra: object) -> Outcome:
    explanation = parse(cot, QUERY, TITLE) if cot else None
    judgement = explanation.explanation.judgement if explanation and explanation.explanation else None
    missing = grounding(explanation.explanation) if explanation and explanation.explanation else []
    return Outcome(endpoint="t", query=QUERY, title=TITLE, relevance=3.0 if good else 1.0, good=good, cot=cot,
                   judgement=judgement, score=score, parse_ok=bool(explanation and explanation.ok),
                   located=bool(explanation and explanation.ok and not missing), hallucinated=missing,
                   latency_ms=100.0 if cot else None, student_score=student, reference=REFERENCE, **extra)


def test_summary_of_judgements_grounding_student_and_latency() -> None:
    good_cot = REFERENCE.replace("mismatches", "matches").replace("Bad-color mismatch", "Good")
    invented = good_cot.replace("ad in brand: BEHR", "ad in brand: Ryobi")
    outcomes = [
        _outcome(REFERENCE, 0.2, False, 0.1),  # right, located, agrees with the student
        _outcome(good_cot, 0.9, True, 0.8),  # right, located, agrees
        _outcome(invented, 0.6, False, 0.3),  # wrong, one hallucinated value, disagrees with the student
        _outcome(None, None, True, 0.7, error="TeacherUnavailable: down"),  # no answer: scores 0.5, counts wrong
    ]
    summary = summarise(outcomes)
    assert summary["pairs"] == 4 and summary["answered"] == 3 and summary["scored"] == 3
    assert summary["errors"] == [("TeacherUnavailable", 1)]
    assert summary["judgement"]["accuracy"] == pytest.approx(0.5)
    assert summary["judgement"]["judged_good"] == pytest.approx(0.5)
    # Good pairs scored 0.9 and 0.5 (unanswered), Bad ones 0.2 and 0.6: 3 of 4 orderings right
    assert summary["judgement"]["roc_auc"] == pytest.approx(0.75)
    grounded = summary["grounding"]
    assert grounded["fully_located"] == pytest.approx(0.5) and grounded["parse_ok"] == pytest.approx(0.75)
    assert grounded["hallucinated_values"] == 1 and grounded["hallucinated_by_aspect"] == {"title: brand": 1}
    assert summary["student"]["pairs"] == 3 and summary["student"]["agreement"] == pytest.approx(2 / 3)
    assert summary["student"]["spearman"] == pytest.approx(1.0)
    assert summary["aspects"]["pairs_compared"] == 3
    assert summary["aspects"]["requirements_all"]["precision"] == 1.0
    assert summary["latency_ms"]["p50"] == pytest.approx(100.0)
