"""A programmatic stand-in for the larger annotating LLM (L-LLM, paper §3.2.1).

No model larger than 135M parameters can be had here, so CoT annotations for the teacher's SFT are built by rules
from spans of the query and the title, in exactly the grammar an L-LLM is asked to write (`relevance_core.cot.render`):

- brand: a lexicon of brands read off the catalogue's title prefixes (`Lexicons.from_titles`);
- model number: query tokens mixing letters and digits, or long digit runs (SKUs);
- other properties: dimensions and sizes (numbers with units, fractions, "2x4");
- color, material, style, season, gender, age, sets and singles: word lists of this catalogue;
- product: the remaining content words of the query, matched in the title by stem or a one-letter typo;
- main parts: an accessory or spare-part word in the title that the query does not ask for.

Each aspect becomes a requirement (a span of the query) and, where the title says something about it, an item
value (a span of the title) that matches or mismatches. Several *routes* (strict, with the main-parts check,
lenient product matching, product only) play the part of the L-LLM's samples under self-consistency: a pair keeps
the first route whose judgement agrees with its human label, and has no annotation when none does. Coverage and
per-aspect counts are reported by ``relevance teacher annotate --local``.

This is a stand-in: it reads words, not intent. Its value is to give the SFT a label-consistent, grammar-valid
CoT for as many training pairs as possible, with evidence spans the distillation can align to tokens.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from relevance_core.cot import Explanation, ItemValue, Judgement, QueryRequirement, render
from relevance_core.data import load_catalogue

ROUTES: tuple[str, ...] = ("strict", "main-parts", "lenient", "product-only")
"""The annotator's routes, tried in this order."""

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)?")
_STOPWORDS = frozenset(re.findall(r"\w+", (
    "a an and the of for to in on with without by at from or x is it its my your that this these those as into up "
    "down out over under all any each per no not"
)))
_UNITS = (
    r"in|inch|inches|ft|foot|feet|gal|gallon|gallons|v|volt|volts|w|watt|watts|amp|amps|a|btu|mm|cm|m|oz|lb|lbs|"
    r"qt|quart|sq|psi|gpm|hp|cu|pc|pcs|piece|pieces|pack|count|ct|gauge|ga|ton|cfm|mah|ah|lumen|lumens|k|kw|yd|"
    r"grit|tpi|rpm|watt-equivalent"
)
_NUMBER = r"\d+(?:\.\d+)?(?:[ -]\d+/\d+|/\d+)?"
_MEASURE = re.compile(
    rf"(?<![\w.])(?:{_NUMBER}\s*-?\s*(?:(?:{_UNITS})\b\.?|\"|')?\s*(?:x|\u00d7|by)\s*)*{_NUMBER}\s*-?\s*(?:(?:{_UNITS})\b\.?|\"|'|(?=\s|$|\)|,))",
    re.IGNORECASE,
)
_NUMBER_ONLY = re.compile(r"\d+(?:\.\d+)?(?:/\d+)?")
COLORS: tuple[str, ...] = (
    "oil rubbed bronze", "oil-rubbed bronze", "brushed nickel", "satin nickel", "polished nickel", "polished chrome",
    "polished brass", "antique brass", "antique bronze", "stainless steel", "matte black", "flat black", "white",
    "black", "brown", "bronze", "nickel", "chrome", "gray", "grey", "red", "blue", "green", "yellow", "orange",
    "purple", "pink", "beige", "almond", "biscuit", "bisque", "ivory", "tan", "silver", "gold", "brass", "copper",
    "clear", "espresso", "cherry", "walnut", "mahogany", "pewter", "charcoal", "cream", "navy", "teal", "khaki",
    "sand", "taupe", "slate",
)
MATERIALS: tuple[str, ...] = (
    "stainless steel", "cast iron", "galvanized steel", "pressure treated", "wood", "cedar", "pine", "oak", "maple",
    "birch", "hickory", "teak", "redwood", "steel", "galvanized", "aluminum", "aluminium", "copper", "brass", "pvc",
    "cpvc", "pex", "abs", "vinyl", "plastic", "fiberglass", "concrete", "cement", "ceramic", "porcelain", "glass",
    "granite", "marble", "quartz", "rubber", "iron", "composite", "resin", "wicker", "leather", "cotton",
    "polyester", "nylon", "asphalt", "bamboo", "cork", "laminate", "travertine", "stone", "brick", "metal", "mdf",
    "plywood", "drywall", "gypsum", "foam", "acrylic", "polycarbonate", "polypropylene", "wool", "jute", "zinc",
    "titanium", "carbide", "cobalt", "tile", "hardwood", "vinyl plank",
)
STYLES: tuple[str, ...] = (
    "farmhouse", "modern", "contemporary", "traditional", "rustic", "vintage", "victorian", "industrial", "heavy duty",
    "heavy-duty", "decorative", "transitional", "craftsman", "mission", "colonial", "coastal",
)
SEASONS: tuple[str, ...] = ("christmas", "halloween", "winter", "summer", "holiday", "thanksgiving", "easter")
GENDERS: tuple[str, ...] = ("men's", "mens", "women's", "womens", "men", "women", "ladies")
AGES: tuple[str, ...] = ("kids", "kid's", "children", "child", "baby", "toddler", "youth", "adult")
SETS: tuple[str, ...] = ("pack", "set", "sets", "pair", "pairs", "kit", "kits", "bundle", "combo", "single", "case")
ACCESSORIES: tuple[str, ...] = (
    "cover", "covers", "lid", "lids", "blade", "blades", "filter", "filters", "replacement", "part", "parts",
    "bracket", "brackets", "mount", "adapter", "adaptor", "cartridge", "cartridges", "bag", "bags", "hose", "knob",
    "knobs", "accessory", "accessories", "attachment", "bit", "bits", "battery", "charger", "remote", "trim", "wrench",
    "extension", "guard", "mat", "spout", "handle", "handles", "gasket", "nozzle", "refill", "sleeve", "tray",
    "stand", "liner",
)


def _key(text: str) -> str:
    """Lower-case alphanumerics only: "Strong-Tie" and "strong tie" share the key "strongtie"."""
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def _stem(word: str) -> str:
    word = word.lower().replace("\u2019", "'").removesuffix("'s")
    for suffix in ("ies", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _near(a: str, b: str) -> bool:
    """Same stem, or one edit apart for words of 5+ letters (the searcher's typos: "kombo", "paoer")."""
    a, b = _stem(a), _stem(b)
    if a == b:
        return True
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[Token]:
    return [Token(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


@dataclass(frozen=True)
class Lexicons:
    """Brands read off the catalogue: ``brands`` maps a brand key (`_key`) to the brand as titles write it;
    ``aliases`` maps the key of a first word that nearly always begins the same brand ("simpson") to that brand."""

    brands: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_titles(cls, titles: Iterable[str], *, min_titles: int = 3, keep_ratio: float = 0.3) -> Lexicons:
        """A title's brand is its longest prefix (up to 4 words, no numbers) that begins at least ``min_titles``
        distinct titles, extended word by word while the longer prefix keeps ``keep_ratio`` of the shorter's
        titles ("American Standard" but not "Simpson Strong-Tie 12-Gauge")."""
        distinct = sorted(set(titles))
        counts: Counter[tuple[str, ...]] = Counter()
        for title in distinct:
            words = title.split()[:4]
            for k in range(1, len(words) + 1):
                counts[tuple(words[:k])] += 1
        # A word that titles use inside more often than as their first word is vocabulary ("White", "Light").
        inside: Counter[str] = Counter(_key(w) for title in distinct for w in title.split()[1:])
        vocabulary = {_key(w) for w in (*COLORS, *MATERIALS, *STYLES, *SEASONS, *SETS, *ACCESSORIES)}
        brands: dict[str, str] = {}
        firsts: dict[str, Counter[str]] = defaultdict(Counter)
        for title in distinct:
            brand = cls._prefix(title.split()[:4], counts, min_titles, keep_ratio)
            key = _key(brand)
            if not brand or key in vocabulary or key in _STOPWORDS \
                    or (len(brand.split()) == 1 and inside[key] > counts[(brand,)]):
                continue
            brands.setdefault(key, brand)
            firsts[_key(brand.split()[0])][brand] += 1
        aliases = {}
        for first, by_brand in firsts.items():
            brand, n = by_brand.most_common(1)[0]
            if len(brand.split()) > 1 and n >= 20 and n >= 0.8 * sum(by_brand.values()) and first not in brands \
                    and first not in vocabulary and inside[first] <= n:
                aliases[first] = brand
        return cls(brands=brands, aliases=aliases)

    @staticmethod
    def _prefix(words: Sequence[str], counts: Counter[tuple[str, ...]], min_titles: int, keep_ratio: float) -> str:
        chosen = 0
        for k in range(1, len(words) + 1):
            if any(c.isdigit() for c in words[k - 1]) or counts[tuple(words[:k])] < min_titles:
                break
            if k > 1 and counts[tuple(words[:k])] < keep_ratio * counts[tuple(words[: k - 1])]:
                break
            chosen = k
        return " ".join(words[:chosen])

    def brand_of_title(self, title: str) -> str | None:
        """The brand the title begins with, as written in the title, or None."""
        words = title.split()
        for k in range(min(4, len(words)), 0, -1):
            prefix = " ".join(words[:k])
            if _key(prefix) in self.brands:
                return prefix
        return None

    def canonical_brand(self, text: str) -> str | None:
        key = _key(text)
        return self.brands.get(key) or self.aliases.get(key)


# ------------------------------------------------------------------------------------------------ extraction


@dataclass(frozen=True, slots=True)
class Requirement:
    """What the query asks for: an aspect and the [start, end) character span of the query that says it."""

    aspect: str
    start: int
    end: int


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _phrase_spans(text: str, phrases: tuple[str, ...], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Whole-word occurrences of ``phrases`` (the longest at each position) that overlap nothing in ``taken``."""
    pattern = _PATTERNS.get(phrases)
    if pattern is None:
        alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w'\u2019-])(?:{alternatives})(?![\w'\u2019-])", re.IGNORECASE)
        _PATTERNS[phrases] = pattern
    return [(m.start(), m.end()) for m in pattern.finditer(text)
            if not any(s < m.end() and m.start() < e for s, e in taken)]


def _is_model_number(word: str) -> bool:
    has_alpha, has_digit = any(c.isalpha() for c in word), any(c.isdigit() for c in word)
    if has_alpha and has_digit:
        return len(word) >= 4 and not re.fullmatch(rf"\d+(?:{_UNITS})", word, re.IGNORECASE) \
            and not re.fullmatch(r"\d+x\d+", word, re.IGNORECASE)
    return has_digit and len(word) >= 5


class Annotator:
    """Builds label-consistent CoTs by rules (see the module docstring)."""

    def __init__(self, lexicons: Lexicons) -> None:
        self.lexicons = lexicons

    @classmethod
    def from_titles(cls, titles: Iterable[str]) -> Annotator:
        """An annotator whose brand lexicon is read off ``titles`` (`Lexicons.from_titles`)."""
        return cls(Lexicons.from_titles(titles))

    @classmethod
    def from_catalogue(cls, path: str | os.PathLike[str]) -> Annotator:
        """An annotator whose brand lexicon is read off a catalogue TSV's titles; raises
        `relevance_core.data.PairsFileError` naming the file when it cannot be read."""
        return cls.from_titles(p.product_title for p in load_catalogue(path))

    def requirements(self, query: str, *, complete: bool = False) -> list[Requirement]:
        """What the query asks for: aspect and [start, end) span of the query, in query order. The product is the
        last run of content words no other aspect claims; with ``complete``, the earlier runs are product
        requirements too, so that every content word of the query belongs to one requirement (what an
        explanation of a score needs: the student reads every word)."""
        taken: list[tuple[int, int]] = []
        found: list[Requirement] = []

        def add(aspect: str, spans: Iterable[tuple[int, int]]) -> None:
            for start, end in spans:
                taken.append((start, end))
                found.append(Requirement(aspect, start, end))

        tokens = _tokens(query)
        for k in range(min(4, len(tokens)), 0, -1):  # brand: the longest n-gram that is a known brand
            for i in range(len(tokens) - k + 1):
                span = (tokens[i].start, tokens[i + k - 1].end)
                if self.lexicons.canonical_brand(query[span[0] : span[1]]) and \
                        not any(s < span[1] and span[0] < e for s, e in taken):
                    add("brand", [span])
        add("model number", [(t.start, t.end) for t in tokens if _is_model_number(t.text)
                             and not any(s < t.end and t.start < e for s, e in taken)])
        measures = [(m.start(), m.end()) for m in _MEASURE.finditer(query) if m.group().strip()]
        add("other properties", [(s, e) for s, e in measures if not any(a < e and s < b for a, b in taken)])
        for aspect, words in (("color", COLORS), ("material", MATERIALS), ("style", STYLES), ("season", SEASONS),
                              ("gender", GENDERS), ("age", AGES), ("sets and singles", SETS)):
            add(aspect, _phrase_spans(query, words, taken))
        rest = [t for t in tokens if t.text.lower() not in _STOPWORDS and not t.text.isdigit()
                and not any(s < t.end and t.start < e for s, e in taken)]
        runs: list[list[Token]] = []  # runs of remaining content words, the last one first
        for token in reversed(rest):
            between = query[token.end : runs[-1][0].start] if runs else ""
            if runs and not any(w.lower() not in _STOPWORDS for w in _WORD.findall(between)):
                runs[-1].insert(0, token)
            else:
                runs.append([token])
        for run in runs[: None if complete else 1]:  # product: the last run (with ``complete``, every run)
            add("product", [(run[0].start, run[-1].end)])
        return sorted(found, key=lambda r: r.start)

    # -------------------------------------------------------------------------------------- item side

    def _brand_value(self, value: str, title: str) -> tuple[str, bool] | None:
        if _key(value) in _key(title):
            return _title_span_text(title, value) or value, True
        brand = self.lexicons.brand_of_title(title)
        if brand is None:
            return None
        canonical = self.lexicons.canonical_brand(value)
        same = canonical is not None and _key(canonical) == _key(brand)
        return brand, same

    @staticmethod
    def _phrase_value(value: str, title: str, vocabulary: tuple[str, ...]) -> tuple[str, bool] | None:
        text = _title_span_text(title, value)
        if text is not None:
            return text, True
        others = _phrase_spans(title, vocabulary, [])
        if not others:
            return None
        start, end = min(others)
        return title[start:end], False

    @staticmethod
    def _measure_value(value: str, title: str) -> tuple[str, bool] | None:
        numbers = [_number(n) for n in _NUMBER_ONLY.findall(value)]
        title_measures = list(_MEASURE.finditer(title))
        for m in title_measures:
            if numbers and all(n in {_number(x) for x in _NUMBER_ONLY.findall(m.group())} for n in numbers):
                return m.group().strip(), True
        unit = _unit(value)
        for m in title_measures:
            if unit and _unit(m.group()) == unit:
                return m.group().strip(), False
        return None

    @staticmethod
    def _product_value(value: str, title: str, lenient: bool) -> tuple[str, bool] | None:
        words = [w for w in _tokens(value) if w.text.lower() not in _STOPWORDS]
        title_tokens = _tokens(title)
        hits = [next((t for t in title_tokens if _near(w.text, t.text)), None) for w in words]
        head_hit = hits[-1] if hits else None
        matched = [h for h in hits if h is not None]
        if head_hit is not None or (lenient and matched):
            start, end = min(h.start for h in matched), max(h.end for h in matched)
            if len(_tokens(title[start:end])) > len(words) + 2:  # scattered hits: cite the head (or last) word
                best = head_hit or matched[-1]
                start, end = best.start, best.end
            return title[start:end], True
        head = _title_head(title)
        return (head, False) if head else None

    def route(self, query: str, title: str, route: str, requirements: list[Requirement] | None = None,
              ) -> Explanation:
        """The explanation that ``route`` gives for the pair (its judgement may disagree with the label);
        ``requirements`` are `requirements(query)`, passed when several routes are tried."""
        requirements = self.requirements(query) if requirements is None else requirements
        if route == "product-only":
            requirements = [r for r in requirements if r.aspect in ("product", "brand")][-1:] or requirements[-1:]
        elif route == "lenient":
            requirements = [r for r in requirements if r.aspect in ("product", "brand")]
        query_reqs, values = [], []
        for r in requirements:
            value = query[r.start : r.end]
            query_reqs.append(QueryRequirement(aspect=r.aspect, value=value, span=(r.start, r.end)))
            if r.aspect == "brand":
                item = self._brand_value(value, title)
            elif r.aspect == "other properties":
                item = self._measure_value(value, title)
            elif r.aspect == "product":
                item = self._product_value(value, title, lenient=route in ("lenient", "product-only"))
            elif r.aspect == "model number":
                text = _title_span_text(title, value)
                item = (text, True) if text else None
            else:
                vocabulary = {"color": COLORS, "material": MATERIALS, "style": STYLES, "season": SEASONS,
                              "gender": GENDERS, "age": AGES, "sets and singles": SETS}[r.aspect]
                item = self._phrase_value(value, title, vocabulary)
            if item is not None and _title_span_text(title, item[0]) is not None:
                values.append(ItemValue(aspect=r.aspect, value=item[0], matches=item[1]))
        if route == "main-parts":
            asked = {_stem(w) for w in _WORD.findall(query)}
            for start, end in _phrase_spans(title, ACCESSORIES, []):
                if _stem(title[start:end]) not in asked:
                    values.append(ItemValue(aspect="main parts", value=title[start:end], matches=False))
                    break
        mismatched = next((v for v in values if not v.matches), None)
        judgement: Judgement = "Good" if values and mismatched is None else "Bad"
        reason = None
        if judgement == "Bad":
            reason = f"{mismatched.aspect} mismatch" if mismatched else "requirements not met"
        return Explanation(query_requirements=query_reqs, item_values=values, judgement=judgement, reason=reason)

    def annotate(self, query: str, title: str, good: bool | None) -> tuple[str, Explanation] | None:
        """(route, explanation) of the first route whose judgement agrees with the label, or None. Without a
        label (``good`` None) the majority judgement over the routes wins, the first route giving it."""
        requirements = self.requirements(query)
        if good is not None:
            wanted = "Good" if good else "Bad"
            for route in ROUTES:
                explanation = self.route(query, title, route, requirements)
                if explanation.judgement == wanted:
                    return route, explanation
            return None
        explanations = [(route, self.route(query, title, route, requirements)) for route in ROUTES]
        majority = Counter(e.judgement for _, e in explanations).most_common(1)[0][0]
        return next((route, e) for route, e in explanations if e.judgement == majority)

    def good_share(self, query: str, title: str) -> float:
        """The share of the routes that judge the pair Good: the annotator as a scorer, without the label (what a
        teacher that imitates its CoTs, whose judgements follow from them, can at best learn to rank)."""
        requirements = self.requirements(query)
        return sum(self.route(query, title, r, requirements).judgement == "Good" for r in ROUTES) / len(ROUTES)

    def cot(self, query: str, title: str, good: bool | None) -> tuple[str, str] | None:
        """(route, rendered CoT) or None; see `annotate`."""
        annotated = self.annotate(query, title, good)
        return None if annotated is None else (annotated[0], render(annotated[1]))


def _number(text: str) -> float:
    if "/" in text:
        numerator, denominator = text.split("/", 1)
        return round(float(numerator) / float(denominator), 4) if float(denominator) else float(numerator)
    return round(float(text), 4)


def _unit(text: str) -> str | None:
    m = re.search(rf"({_UNITS}|\"|')\.?\s*$", text.strip(), re.IGNORECASE)
    if m is None:
        return None
    unit = m.group(1).lower()
    return {"inch": "in", "inches": "in", '"': "in", "feet": "ft", "foot": "ft", "'": "ft", "gallon": "gal",
            "gallons": "gal", "volt": "v", "volts": "v", "watt": "w", "watts": "w", "lbs": "lb"}.get(unit, unit)


def _title_span_text(title: str, value: str) -> str | None:
    """The title's own text for ``value`` (found case-, space- and punctuation-insensitively), or None."""
    from relevance_core.cot import find_span

    span = find_span(value, title) if value.strip() else None
    return None if span is None else title[span[0] : span[1]]


def _title_head(title: str) -> str | None:
    """The product the title names: the last one or two words before " in ", " with ", " for ", "(" or " - "."""
    cut = re.split(r"\s(?:in|with|for|-)\s|\(|,", title, maxsplit=1)[0]
    words = [t for t in _tokens(cut) if not any(c.isdigit() for c in t.text) and t.text.lower() not in _STOPWORDS]
    if not words:
        return None
    start = words[-2].start if len(words) >= 2 else words[-1].start
    return cut[start : words[-1].end]
