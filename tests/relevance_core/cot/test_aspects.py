from __future__ import annotations

import pytest

from relevance_core.cot.aspects import ASPECTS, canonical_aspect, lookup_aspect

TABLE_5 = [
    "category",
    "product",
    "brand",
    "model number",
    "store",
    "color",
    "material",
    "main parts",
    "style",
    "season",
    "sets and singles",
    "gender",
    "age",
    "other properties",
]


def test_the_14_aspects_of_table_5_in_order_with_one_line_definitions() -> None:
    assert list(ASPECTS) == TABLE_5
    for definition in ASPECTS.values():
        assert definition.strip() and "\n" not in definition


@pytest.mark.parametrize("aspect", TABLE_5)
def test_canonical_names_map_to_themselves(aspect: str) -> None:
    assert canonical_aspect(aspect) == aspect
    assert canonical_aspect(f"  {aspect.upper()} ") == aspect


@pytest.mark.parametrize(
    ("name", "aspect"),
    [
        ("elegance", "style"),
        ("Elegance", "style"),
        ("colour", "color"),
        ("Color/Finish", "color"),
        ("model", "model number"),
        ("model no", "model number"),
        ("Model No.", "model number"),
        ("model #", "model number"),
        ("model-number", "model number"),
        ("sets/singles", "sets and singles"),
        ("Sets & Singles", "sets and singles"),
        ("sets  and\tsingles", "sets and singles"),
        ("main Parts", "main parts"),
        ("Main-Parts", "main parts"),
        ("categories", "category"),
        ("other property", "other properties"),
    ],
)
def test_aliases_and_variants(name: str, aspect: str) -> None:
    assert canonical_aspect(name) == aspect
    assert lookup_aspect(name) == aspect


@pytest.mark.parametrize("name", ["wattage", "voltage", "", "   ", "???", "brand new"])
def test_unknown_aspects_are_other_properties(name: str) -> None:
    assert lookup_aspect(name) is None
    assert canonical_aspect(name) == "other properties"
