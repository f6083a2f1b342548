"""The programmatic stand-in for the annotating L-LLM: brand lexicon, requirement extraction, routes, label
consistency, and that whatever it writes is in the grammar with every value a span of its text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from relevance_core.annotation import ROUTES, Annotator, Lexicons
from relevance_core.cot import parse
from relevance_core.data import load_pairs

TITLES = [
    *(f"Simpson Strong-Tie {n}-Gauge Angle" for n in (12, 14, 16, 18)),
    *(f"Simpson Strong-Tie {w} Joist Hanger {n}" for w in ("Double", "Single", "Face-Mount") for n in "ABCDEFG"),
    *(f"DEWALT 20-Volt Max {t}" for t in ("Drill", "Impact Driver", "Circular Saw", "Combo Kit")),
    "White Vinyl Fence Panel", "White Shaker Cabinet Door", "White Paint Primer",
    *(f"Hampton Bay {t} Ceiling Fan in White" for t in ("Glendale", "Hugger", "Carrolton", "Mercer")),
    *(f"Ariens Deluxe {n} in. Two-Stage Gas Snow Blower" for n in (24, 28, 30)),
    *(f"Glacier Bay {x}" for x in ("Toilet", "Faucet in Chrome", "Vanity in White")),
    *(f"Toro {m} 21 in. Gas Snow Blower" for m in ("Power Clear", "SnowMaster", "Recycler")),
    "Leaktite 5-gal. Homer Leakproof Lid", "Leaktite 5-gal. Bucket Lid", "Leaktite 5-gal. Orange Bucket",
    "Leaktite 2-gal. Bucket",
]


@pytest.fixture(scope="module")
def annotator() -> Annotator:
    return Annotator(Lexicons.from_titles(TITLES))


def test_brands_come_from_title_prefixes_and_skip_vocabulary() -> None:
    lexicons = Lexicons.from_titles(TITLES)
    assert lexicons.brand_of_title("Simpson Strong-Tie 12-Gauge Angle") == "Simpson Strong-Tie"
    assert lexicons.brand_of_title("Hampton Bay Glendale Ceiling Fan in White") == "Hampton Bay"
    assert lexicons.brand_of_title("DEWALT 20-Volt Max Drill") == "DEWALT"
    # "White" begins three titles but is a colour, and "12-Gauge" is not part of the brand
    assert lexicons.brand_of_title("White Vinyl Fence Panel") is None
    assert lexicons.canonical_brand("simpson") == "Simpson Strong-Tie"  # a first word that nearly always begins it
    assert lexicons.canonical_brand("strong tie") is None and lexicons.canonical_brand("hampton bay") == "Hampton Bay"


def test_requirements_are_spans_of_the_query(annotator: Annotator) -> None:
    query = "dewalt 20v cordless drill 1/2 in white"
    found = {(r.aspect, query[r.start : r.end]) for r in annotator.requirements(query)}
    assert ("brand", "dewalt") in found and ("color", "white") in found
    assert ("other properties", "1/2 in") in found
    assert ("product", "cordless drill") in found


@pytest.mark.parametrize(("query", "title", "good", "judgement", "aspect"), [
    ("simpson angle bracket", "Simpson Strong-Tie 12-Gauge Angle", True, "Good", None),
    ("toro snow blowers gas", "Ariens Deluxe 28 in. Two-Stage Gas Snow Blower", False, "Bad", "brand"),
    ("5 gal buckets", "Leaktite 5-gal. Homer Leakproof Lid", False, "Bad", "product"),
    ("5 gal bucket", "Leaktite 5-gal. Bucket Lid", False, "Bad", "main parts"),
    ("hampton bay ceiling fan white", "Hampton Bay Glendale Ceiling Fan in White", True, "Good", None),
])
def test_a_label_consistent_route_is_kept(annotator: Annotator, query: str, title: str, good: bool,
                                          judgement: str, aspect: str | None) -> None:
    annotated = annotator.annotate(query, title, good)
    assert annotated is not None
    route, explanation = annotated
    assert route in ROUTES and explanation.judgement == judgement
    if aspect is not None:
        assert explanation.reason == f"{aspect} mismatch"
        assert any(v.aspect == aspect and not v.matches for v in explanation.item_values)


def test_no_annotation_when_no_route_agrees(annotator: Annotator) -> None:
    # Every requirement is met word for word, so no route can say Bad, whatever the raters said.
    assert annotator.annotate("glacier bay toilet", "Glacier Bay Toilet", good=False) is None
    assert annotator.annotate("glacier bay toilet", "Glacier Bay Toilet", good=True) is not None


def test_without_a_label_the_routes_vote(annotator: Annotator) -> None:
    annotated = annotator.annotate("dewalt drill", "DEWALT 20-Volt Max Drill", good=None)
    assert annotated is not None and annotated[1].judgement == "Good"


def test_what_it_writes_on_real_pairs_parses_with_every_span_found(vendored_pairs: Path) -> None:
    pairs = load_pairs(vendored_pairs)
    annotator = Annotator(Lexicons.from_titles(p.product_title for p in pairs))
    sample = random.Random(7).sample(pairs, 400)
    kept = 0
    for pair in sample:
        cot = annotator.cot(pair.query, pair.product_title, pair.good)
        if cot is None:
            continue
        kept += 1
        result = parse(cot[1], pair.query, pair.product_title)
        assert result.ok, (cot, result.errors)
        explanation = result.explanation
        assert explanation is not None and explanation.judgement == ("Good" if pair.good else "Bad")
        assert all(r.span is not None for r in explanation.query_requirements), cot
        assert all(v.span is not None for v in explanation.item_values), cot
    assert kept >= 0.6 * len(sample)  # coverage well above half on real pairs (reported by `annotate --local`)


def test_as_a_scorer_it_ranks_by_the_share_of_routes_that_say_good(annotator: Annotator, tmp_path: Path) -> None:
    from mkd.scorers import UnknownModelError, load_scorer
    from relevance_core.data import Pair

    assert annotator.good_share("dewalt drill", "DEWALT 20-Volt Max Drill") == 1.0
    # "bracket" is not in the title: the strict routes say Bad, the lenient product match Good
    assert annotator.good_share("simpson angle bracket", "Simpson Strong-Tie 12-Gauge Angle") == 0.5
    # a brand mismatch: only the product-only route, which drops the brand, says Good
    brand = annotator.good_share("toro snow blowers gas", "Ariens Deluxe 28 in. Two-Stage Gas Snow Blower")
    assert brand == 0.25
    assert annotator.good_share("5 gal buckets", "Glacier Bay Toilet") == 0.0

    catalogue = tmp_path / "catalogue.tsv"
    catalogue.write_text("product_uid\tproduct_title\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(TITLES)))
    pairs = [Pair("dewalt drill", "DEWALT 20-Volt Max Drill", 3.0, "1"),
             Pair("toro snow blowers gas", "Ariens Deluxe 28 in. Two-Stage Gas Snow Blower", 1.0, "2")]
    scores = load_scorer(f"rules:{catalogue}", show_progress=False).score(pairs)
    assert list(scores) == [1.0, brand]
    with pytest.raises(UnknownModelError, match="rules"):
        load_scorer(f"rules:{tmp_path / 'missing.tsv'}")
