"""The 14 aspects of relevance discrimination (paper, Appendix A, Table 5), adapted to a home-improvement
catalogue, and the mapping of the names a teacher may write onto them.

Canonical names are lowercase. The paper's table calls the style aspect "elegance"; it is accepted as an alias
of "style". Any name that is not an aspect or a known alias maps to "other properties".
"""

from __future__ import annotations

import re
from types import MappingProxyType

OTHER = "other properties"

ASPECTS: MappingProxyType[str, str] = MappingProxyType(
    {
        "category": "The primary department of the item, such as lumber, lighting, plumbing or paint.",
        "product": "The specific product, such as angle bracket, ceiling fan or circular saw.",
        "brand": "The brand or manufacturer of the item, such as Simpson Strong-Tie or DEWALT.",
        "model number": "A specific model or part number, such as A21 or DCD771C2.",
        "store": "The store, seller or retail line that sells the item.",
        "color": "The colour or finish of the item, such as white, oil-rubbed bronze or brushed nickel.",
        "material": "The component material of the item, such as galvanized steel, cedar or PVC.",
        "main parts": "Whether the item is the main product or a part or accessory of it (a fan vs. a fan blade).",
        "style": "The style or design of the item, such as farmhouse, modern or heavy-duty.",
        "season": "The season the item is used in, such as summer patio furniture or winter ice melt.",
        "sets and singles": "Whether the item is a set or pack or a single piece (2-pack vs. single).",
        "gender": "The gender the item is meant for, such as men's work boots.",
        "age": "The age group the item is meant for, such as kids' tool sets.",
        OTHER: "Other important attributes: size, dimensions, gauge, wattage, voltage, capacity, condition.",
    }
)
"""Canonical aspect name → one-line definition, in the order of Table 5."""

_ALIASES: dict[str, str] = {
    "categories": "category",
    "product category": "category",
    "department": "category",
    "product type": "product",
    "product name": "product",
    "brand name": "brand",
    "manufacturer": "brand",
    "model": "model number",
    "model no": "model number",
    "model num": "model number",
    "modelnumber": "model number",
    "model code": "model number",
    "part number": "model number",
    "shop": "store",
    "seller": "store",
    "retailer": "store",
    "colour": "color",
    "color finish": "color",
    "colour finish": "color",
    "finish": "color",
    "materials": "material",
    "main part": "main parts",
    "mainparts": "main parts",
    "main item or accessory": "main parts",
    "accessory": "main parts",
    "elegance": "style",
    "design": "style",
    "seasons": "season",
    "sets singles": "sets and singles",
    "set single": "sets and singles",
    "sets or singles": "sets and singles",
    "set or single": "sets and singles",
    "set and single": "sets and singles",
    "pack size": "sets and singles",
    "quantity": "sets and singles",
    "sex": "gender",
    "age group": "age",
    "age range": "age",
    "other property": OTHER,
    "other": OTHER,
    "others": OTHER,
    "other attributes": OTHER,
    "properties": OTHER,
    "attributes": OTHER,
}


def _key(name: str) -> str:
    """Lowercase, with every run of non-alphanumeric characters (spaces, hyphens, slashes, '&', '#', '.')
    collapsed to one space: "Sets/Singles" → "sets singles", "model-No." → "model no"."""
    return re.sub(r"[^0-9a-z]+", " ", name.lower()).strip()


_LOOKUP: dict[str, str] = {_key(a): a for a in ASPECTS} | {_key(a): c for a, c in _ALIASES.items()}


def lookup_aspect(name: str) -> str | None:
    """The canonical aspect for ``name`` (an aspect or alias, any case or spacing), or None if unknown."""
    key = _key(name)
    return _LOOKUP.get(key)


def canonical_aspect(name: str) -> str:
    """The canonical aspect for ``name``; unknown names map to "other properties"."""
    return lookup_aspect(name) or OTHER
