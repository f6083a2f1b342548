from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from relevance_core.cot.aspects import ASPECTS
from relevance_core.cot.grammar import Explanation, ItemValue, ParseResult, QueryRequirement, find_span, parse, render

FIG3_TEXT = (
    "Thinking: query has category requirement:pajamas, material requirement: modal, gender requirement: female; "
    "ad in category: pajamas, matches, ad in {material: cotton, mismatches}; ad in gender: female, matches. "
    "material requirement in query is not met. Final judgment: Bad-material Mismatch"
)
FIG3_QUERY = "female modal pajamas"
FIG3_TITLE = "Cotton Pajamas Set for Female, Long Sleeve Sleepwear"

ANGLE_TEXT = (
    "Thinking: query has product requirement: angle bracket, brand requirement: simpson; ad in product: angle, "
    "matches; ad in brand: Simpson Strong-Tie, matches. Final judgment: Good"
)
ANGLE_QUERY = "angle bracket simpson"
ANGLE_TITLE = "Simpson Strong-Tie 12-Gauge Angle"


def _summary(explanation: Explanation) -> tuple:
    """Everything but the spans."""
    return (
        [(r.aspect, r.value) for r in explanation.query_requirements],
        [(v.aspect, v.value, v.matches) for v in explanation.item_values],
        explanation.judgement,
        explanation.reason,
        explanation.note,
    )


def _check_spans(result: ParseResult, query: str, title: str) -> None:
    assert result.explanation is not None
    for requirement in result.explanation.query_requirements:
        assert requirement.span is not None
        start, end = requirement.span
        assert query[start:end].lower() == requirement.value.lower()
    for value in result.explanation.item_values:
        assert value.span is not None
        start, end = value.span
        assert title[start:end].lower() == value.value.lower()


# ------------------------------------------------------------------------------------------ the paper's cases


def test_fig3_pajamas_case() -> None:
    result = parse(FIG3_TEXT, FIG3_QUERY, FIG3_TITLE)
    assert result.ok, result.errors
    assert result.warnings == []
    assert result.explanation is not None
    assert _summary(result.explanation) == (
        [("category", "pajamas"), ("material", "modal"), ("gender", "female")],
        [("category", "pajamas", True), ("material", "cotton", False), ("gender", "female", True)],
        "Bad",
        "material Mismatch",
        "material requirement in query is not met.",
    )
    assert [r.span for r in result.explanation.query_requirements] == [(13, 20), (7, 12), (0, 6)]
    assert [v.span for v in result.explanation.item_values] == [(7, 14), (0, 6), (23, 29)]


def test_fig3_second_case_braces_around_the_value() -> None:
    text = (
        "Thinking: query has category requirement:Toiletries, product requirement: make curly hair straight; "
        "ad in category: Toiletries, matches, ad in product: {hair straightening cream, matches}; "
        "Final judgment: Good"
    )
    result = parse(text, "toiletries to make curly hair straight", "Toiletries Hair Straightening Cream 200 ml")
    assert result.ok, result.errors
    assert result.explanation is not None
    assert _summary(result.explanation)[1] == [
        ("category", "Toiletries", True),
        ("product", "hair straightening cream", True),
    ]
    _check_spans(result, "toiletries to make curly hair straight", "Toiletries Hair Straightening Cream 200 ml")


def test_architecture_angle_bracket_case() -> None:
    result = parse(ANGLE_TEXT, ANGLE_QUERY, ANGLE_TITLE)
    assert result.ok and result.warnings == []
    assert result.explanation == Explanation(
        query_requirements=[
            QueryRequirement(aspect="product", value="angle bracket", span=(0, 13)),
            QueryRequirement(aspect="brand", value="simpson", span=(14, 21)),
        ],
        item_values=[
            ItemValue(aspect="product", value="angle", matches=True, span=(28, 33)),
            ItemValue(aspect="brand", value="Simpson Strong-Tie", matches=True, span=(0, 18)),
        ],
        judgement="Good",
    )
    assert render(result.explanation) == ANGLE_TEXT


# ------------------------------------------------------------------------------------------------- rendering


def test_render_bad_with_reason_and_note() -> None:
    explanation = Explanation(
        query_requirements=[QueryRequirement(aspect="brand", value="simpson")],
        item_values=[ItemValue(aspect="brand", value="USP", matches=False)],
        judgement="Bad",
        reason="brand mismatch",
        note="brand requirement in query is not met",
    )
    assert render(explanation) == (
        "Thinking: query has brand requirement: simpson; ad in brand: USP, mismatches. "
        "brand requirement in query is not met. Final judgment: Bad-brand mismatch"
    )


def test_render_and_parse_empty_sides() -> None:
    explanation = Explanation(judgement="Bad")
    text = render(explanation)
    assert text == "Thinking: query has no requirements; ad has no attributes. Final judgment: Bad"
    result = parse(text, "q", "t")
    assert result.ok and result.warnings == [] and result.explanation == explanation


def test_explanation_validation() -> None:
    assert QueryRequirement(aspect="Elegance", value=" modern ").aspect == "style"
    assert QueryRequirement(aspect="wattage", value="60W").aspect == "other properties"
    with pytest.raises(ValidationError):
        QueryRequirement(aspect="brand", value="  ")
    with pytest.raises(ValidationError):
        Explanation(judgement="Good", reason="all good")
    with pytest.raises(ValidationError):
        Explanation(judgement="Fair")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- tolerance


@pytest.mark.parametrize(
    "text",
    [
        # case, spelling and spacing
        "thinking:QUERY HAS brand requirement:simpson;ad in Brand:Simpson Strong-Tie,Matches.final Judgement:GOOD",
        "Thinking:  query has  brand requirement :  simpson ;\n ad in brand : Simpson Strong-Tie ,  matches .\n"
        "\nFinal judgment:good",
        # verdict variants
        "Thinking: query has brand requirement: simpson; ad in brand: Simpson Strong-Tie, matched. "
        "Final judgment: Good",
        "Thinking: query has brand requirement: simpson; ad in brand: Simpson Strong-Tie, match. Final judgment: Good",
        # braces
        "Thinking: query has brand requirement: simpson; ad in {brand: Simpson Strong-Tie, matches}. "
        "Final judgment: Good",
        # full-width punctuation, "item in", verdict in parentheses
        "Thinking\uff1aquery has brand requirement\uff1asimpson\uff1bitem in brand\uff1aSimpson Strong-Tie (matches)"
        "\u3002Final judgment\uff1aGood",
        # markdown emphasis around the judgement
        "Thinking: query has brand requirement: simpson; ad in brand: Simpson Strong-Tie, matches. "
        "Final judgment: **Good**",
    ],
)
def test_tolerated_deviations_good(text: str) -> None:
    result = parse(text, "simpson", "Simpson Strong-Tie")
    assert result.ok, result.errors
    assert result.explanation is not None
    assert _summary(result.explanation) == (
        [("brand", "simpson")],
        [("brand", "Simpson Strong-Tie", True)],
        "Good",
        None,
        None,
    )
    _check_spans(result, "simpson", "Simpson Strong-Tie")


@pytest.mark.parametrize(
    ("verdict", "judgement", "reason"),
    [
        ("mismatches", "Bad-brand mismatch", "brand mismatch"),
        ("mismatch", "Bad - Brand mis-match", "Brand mis-match"),
        ("mismatched", "BAD-brand mismatch.", "brand mismatch"),
        ("does not match", "Bad: brand mismatch", "brand mismatch"),
        ("doesn't match", "Bad", None),
        ("mis-match", "bad- brand mismatch", "brand mismatch"),
    ],
)
def test_tolerated_deviations_bad(verdict: str, judgement: str, reason: str | None) -> None:
    text = f"Thinking: query has brand requirement: simpson; ad in brand: USP, {verdict}. Final judgment: {judgement}"
    result = parse(text, "simpson", "USP 12-Gauge Angle")
    assert result.ok, result.errors
    assert result.explanation is not None
    assert _summary(result.explanation) == ([("brand", "simpson")], [("brand", "USP", False)], "Bad", reason, None)


def test_values_with_commas_hyphens_slashes_dots_and_digits() -> None:
    query = "1/2 in. x 4 ft. galvanized steel, 12-gauge"
    title = "Simpson Strong-Tie 1/2 in. x 4 ft. 12-Gauge Galvanized Steel Angle, 10-Pack"
    text = (
        "Thinking: query has other properties requirement: 1/2 in. x 4 ft., material requirement: galvanized "
        "steel, 12-gauge; ad in other properties: 1/2 in. x 4 ft., matches; ad in material: 12-Gauge Galvanized "
        "Steel, matches; ad in sets and singles: Angle, 10-Pack, matches. Final judgment: Good"
    )
    result = parse(text, query, title)
    assert result.ok and result.warnings == [], (result.errors, result.warnings)
    assert result.explanation is not None
    assert _summary(result.explanation)[:2] == (
        [("other properties", "1/2 in. x 4 ft."), ("material", "galvanized steel, 12-gauge")],
        [
            ("other properties", "1/2 in. x 4 ft.", True),
            ("material", "12-Gauge Galvanized Steel", True),
            ("sets and singles", "Angle, 10-Pack", True),
        ],
    )
    _check_spans(result, query, title)


def test_unknown_aspects_and_aliases() -> None:
    text = (
        "Thinking: query has wattage requirement: 60W, elegance requirement: modern, colour requirement: white; "
        "ad in wattage: 60W, matches; ad in Elegance: Modern, matches; ad in colour: White, matches. "
        "Final judgment: Good"
    )
    result = parse(text, "60W modern white bulb", "Modern 60W White LED Bulb")
    assert result.ok
    assert result.explanation is not None
    assert [r.aspect for r in result.explanation.query_requirements] == ["other properties", "style", "color"]
    assert [v.aspect for v in result.explanation.item_values] == ["other properties", "style", "color"]
    assert sum("unknown aspect 'wattage'" in w for w in result.warnings) == 2


def test_requirements_without_separators_and_with_and() -> None:
    text = (
        "Thinking: query has product requirement: cordless drill brand requirement: dewalt and color requirement: "
        "yellow; ad in product: Cordless Drill, matches. Final judgment: Good"
    )
    result = parse(text, "dewalt yellow cordless drill", "DEWALT 20V Cordless Drill")
    assert result.explanation is not None
    assert _summary(result.explanation)[0] == [
        ("product", "cordless drill"),
        ("brand", "dewalt"),
        ("color", "yellow"),
    ]


def test_values_not_in_the_text_are_warnings_not_errors() -> None:
    text = (
        "Thinking: query has product requirement: make curly hair straight; ad in product: hair cream, matches. "
        "Final judgment: Good"
    )
    result = parse(text, "straightener for curly hair", "Hair Straightening Cream")
    assert result.ok
    assert result.explanation is not None
    assert result.explanation.query_requirements[0].span is None
    assert result.explanation.item_values[0].span is None
    assert len(result.warnings) == 2
    assert "not found in the query" in result.warnings[0]
    assert "not found in the title" in result.warnings[1]


def test_span_fallbacks() -> None:
    assert find_span("ANGLE", "Simpson Strong-Tie 12-Gauge Angle") == (28, 33)
    assert find_span("1/2in.", "pipe 1/2 in. copper") == (5, 12)  # whitespace-insensitive
    assert find_span("strong tie", "Simpson Strong-Tie") == (8, 18)  # punctuation-insensitive
    assert find_span("tie", "Tiered Strong-Tie") == (14, 17)  # a whole-word occurrence first
    assert find_span("tie", "Tiered shelf") == (0, 3)
    assert find_span("bracket", "angle") is None
    assert find_span("--", "a b") is None


def test_trailing_punctuation_is_trimmed_when_needed() -> None:
    text = "Thinking: query has brand requirement: simpson. Final judgment: Bad-no item values"
    result = parse(text, "simpson angle", "USP angle")
    assert result.ok
    assert result.explanation is not None
    assert result.explanation.query_requirements == [QueryRequirement(aspect="brand", value="simpson", span=(0, 7))]


# ---------------------------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty text"),
        ("   \n ", "empty text"),
        ("Thinking: query has brand requirement: simpson; ad in brand: Simpson, matches.", "no 'Final judgment:'"),
        ("Thinking: whatever. Final judgment: Fair", "'Fair' is not Good or Bad"),
        ("Final judgment: 42", "no judgement word"),
        ("Final judgment:", "no judgement word"),
        ("asdf qwer zxcv", "no 'Final judgment:'"),
        ("Thinking: query has brand requirement: simpson; ad in brand: Simpson. Final judgment: Good", "verdict"),
        ("Thinking: query has brand requirement: ; ad in brand: Simpson, matches. Final judgment: Good", "empty"),
        ("Thinking: query has brand requirement: simpson; ad in brand: , matches. Final judgment: Good", "empty"),
    ],
)
def test_malformed_text_gives_errors(text: str, error: str) -> None:
    result = parse(text, "simpson", "Simpson Strong-Tie")
    assert not result.ok
    assert any(error in e for e in result.errors), result.errors


def test_best_effort_explanation_when_an_item_is_malformed() -> None:
    text = (
        "Thinking: query has brand requirement: simpson; ad in brand: Simpson, matches; ad in color: red. "
        "Final judgment: Good"
    )
    result = parse(text, "simpson", "Simpson Strong-Tie")
    assert not result.ok
    assert result.explanation is not None
    assert _summary(result.explanation)[1] == [("brand", "Simpson", True)]


def test_good_with_mismatch_and_extra_judgements_warn() -> None:
    text = (
        "Thinking: query has brand requirement: simpson; ad in brand: USP, mismatches. Final judgment: Good-ok. "
        "Final judgment: Bad"
    )
    result = parse(text, "simpson", "USP Angle")
    assert result.ok
    assert result.explanation is not None and result.explanation.judgement == "Good"
    assert len(result.warnings) == 3


def test_parse_result_is_json_friendly() -> None:
    result = parse(FIG3_TEXT, FIG3_QUERY, FIG3_TITLE)
    as_dict = result.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["explanation"]["item_values"][1] == {
        "aspect": "material",
        "value": "cotton",
        "matches": False,
        "span": [0, 6],
    }
    assert ParseResult.model_validate(as_dict) == result


# ------------------------------------------------------------------------------------------------ properties

_VOCAB = [
    "Simpson",
    "Strong-Tie",
    "12-Gauge",
    "Angle",
    "1/2",
    "in.",
    "x",
    "4",
    "ft.",
    "Galvanized",
    "Steel",
    "2x4",
    "No.",
    "Made",
    "in",
    "USA",
    "3-Pack",
    "18-Volt",
    "R-13",
    "Gal.",
    "#10",
    "(2-Pack)",
    "A19",
    "2.5",
    "cu.",
    "Brand",
    "Color",
    "Sets",
]
_KEYWORDS = ("match", "requirement", "judg", "thinking", "query")
_STOPWORDS = {"ad", "item", "has", "no", "and"}

_words = st.lists(
    st.one_of(
        st.sampled_from(_VOCAB),
        st.from_regex(r"[A-Za-z][a-z]{1,8}", fullmatch=True).filter(
            lambda w: w.lower() not in _STOPWORDS and not any(k in w.lower() for k in _KEYWORDS)
        ),
    ),
    min_size=1,
    max_size=10,
)


@st.composite
def _text_and_values(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A text of words joined by various separators, and some of its substrings that span whole words."""
    words = draw(_words)
    bounds, text = [], ""
    for i, word in enumerate(words):
        if i:
            text += draw(st.sampled_from([" ", " ", ", ", " - ", " / "]))
        bounds.append((len(text), len(text) + len(word)))
        text += word
    values = []
    for _ in range(draw(st.integers(0, 4))):
        first = draw(st.integers(0, len(words) - 1))
        last = draw(st.integers(first, min(first + 3, len(words) - 1)))
        values.append(text[bounds[first][0] : bounds[last][1]])
    return text, values


@st.composite
def _explanations(draw: st.DrawFn) -> tuple[Explanation, str, str]:
    query, query_values = draw(_text_and_values())
    title, title_values = draw(_text_and_values())
    aspects = st.sampled_from(list(ASPECTS))
    judgement = draw(st.sampled_from(["Good", "Bad"]))
    explanation = Explanation(
        query_requirements=[QueryRequirement(aspect=draw(aspects), value=v) for v in query_values],
        item_values=[  # a Good judgement with a mismatch is legal but warned about
            ItemValue(aspect=draw(aspects), value=v, matches=judgement == "Good" or draw(st.booleans()))
            for v in title_values
        ],
        judgement=judgement,
        reason=draw(st.sampled_from([None, "material mismatch", "brand Mismatch", "not relevant"]))
        if judgement == "Bad"
        else None,
        note=draw(st.sampled_from([None, "material requirement in query is not met.", "All requirements are met"])),
    )
    return explanation, query, title


@settings(max_examples=200, deadline=None)
@given(_explanations())
def test_render_parse_round_trip(case: tuple[Explanation, str, str]) -> None:
    explanation, query, title = case
    result = parse(render(explanation), query, title)
    assert result.ok and result.warnings == [], (render(explanation), result.errors, result.warnings)
    assert result.explanation is not None
    assert _summary(result.explanation) == _summary(explanation)
    _check_spans(result, query, title)
    assert render(result.explanation) == render(explanation)


def _check_invariants(result: ParseResult, query: str, title: str) -> None:
    assert result.ok == (not result.errors)
    assert not result.ok or result.explanation is not None
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()
    if result.explanation is not None:
        for requirement in result.explanation.query_requirements:
            assert requirement.span is None or 0 <= requirement.span[0] < requirement.span[1] <= len(query)
        for value in result.explanation.item_values:
            assert value.span is None or 0 <= value.span[0] < value.span[1] <= len(title)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(max_size=30), st.text(max_size=30))
def test_parse_never_raises_on_arbitrary_text(text: str, query: str, title: str) -> None:
    _check_invariants(parse(text, query, title), query, title)


_FRAGMENTS = [
    "Thinking:",
    "query has ",
    "no ",
    "brand requirement:",
    "requirement:",
    " requirement: ",
    "ad in ",
    "ad has no attributes",
    "{",
    "}",
    ",",
    ";",
    ".",
    " ",
    "\n",
    "color:",
    ": ",
    "matches",
    "mismatches",
    "does not match",
    "Final judgment:",
    "final judgement: ",
    "Good",
    "Bad-",
    "Bad",
    "simpson",
    "Strong-Tie",
    "1/2 in.",
    "\u0130",
    "-",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join))
def test_parse_never_raises_on_grammar_like_text(text: str) -> None:
    query, title = "simpson 1/2 in. \u0130", "Simpson Strong-Tie 1/2 in."
    _check_invariants(parse(text, query, title), query, title)
