from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relevance_core.data import (
    Pair,
    PairsFileError,
    Product,
    build_catalogue,
    load_catalogue,
    load_pairs,
    normalise_query,
    split_of,
    split_pairs,
    write_catalogue,
    write_pairs,
)


def test_vendored_file_loads_with_labels(vendored_pairs: Path) -> None:
    pairs = load_pairs(vendored_pairs)
    assert len(pairs) == 66_705
    first = pairs[0]
    assert (first.query, first.product_uid, first.relevance) == ("angle bracket", "100001", 3.0)
    assert first.good
    good_rate = sum(p.good for p in pairs) / len(pairs)
    assert 0.66 < good_rate < 0.70  # the data README says 68% Good


def test_good_is_strictly_above_two() -> None:
    assert not Pair("q", "t", 2.0, "1").good
    assert Pair("q", "t", 2.25, "1").good
    with pytest.raises(ValueError, match="no relevance label"):
        _ = Pair("q", "t", None, "1").good


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (["1\tangle bracket\t100001\tSimpson Angle\tabc"], None,
         r"pairs\.tsv:2: field 'relevance': 'abc' is not a number"),
        (["1\tangle bracket\t100001\tSimpson Angle\t3.0", "2\tq\t1\tt\t3.5"], None,
         r"pairs\.tsv:3: field 'relevance': '3.5' is outside \[1, 3\]"),
        (["1\tq\t1\tt\t0.5"], None, r":2: field 'relevance': '0.5' is outside"),
        (["1\tq\t1\tt\tnan"], None, r":2: field 'relevance': 'nan' is outside"),
        (["1\tq\t1\tt\t"], None, r":2: field 'relevance': empty"),
        (["1\t  \t1\tt\t2"], None, r":2: field 'query': empty"),
        (["1\tq\t1\t\t2"], None, r":2: field 'product_title': empty"),
        (["1\tq\t1\tt"], None, r":2: expected 5 tab-separated fields, got 4"),
        (["1\tq\t1\tt\t2\textra"], None, r":2: expected 5 tab-separated fields, got 6"),
        ([], None, r"pairs\.tsv: no data rows"),
        (["1\tq\tt\t2"], "id\tsearch_term\tproduct_title\trelevance\n",
         r"pairs\.tsv:1: header lacks column\(s\) query"),
        (["q\tt"], "query\tproduct_title\n", r":1: header lacks column\(s\) relevance"),
    ],
)
def test_loader_errors_name_file_line_and_field(write_tsv, rows, header, message) -> None:
    path = write_tsv(rows, **({"header": header} if header else {}))
    with pytest.raises(PairsFileError, match=message):
        load_pairs(path)


def test_loader_rejects_missing_empty_and_non_utf8_files(tmp_path: Path, write_tsv) -> None:
    with pytest.raises(PairsFileError, match="no such file"):
        load_pairs(tmp_path / "absent.tsv")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(PairsFileError, match=r"empty\.tsv: empty file"):
        load_pairs(empty)
    latin = write_tsv(["1\tcaf\u00e9 table\t1\tt\t2"], encoding="latin-1", name="latin.tsv")
    with pytest.raises(PairsFileError, match=r"latin\.tsv:\d+: not valid UTF-8"):
        load_pairs(latin)


def test_extra_columns_and_any_column_order(write_tsv) -> None:
    path = write_tsv(["3.0\tx\tSimpson Angle\tangle bracket", "", "1\ty\tDeck paint\tangle bracket"],
                     header="relevance\tnotes\tproduct_title\tquery\n")
    pairs = load_pairs(path)
    assert [(p.query, p.product_title, p.relevance) for p in pairs] == [
        ("angle bracket", "Simpson Angle", 3.0), ("angle bracket", "Deck paint", 1.0)]
    # without product_uid the id is a stable hash of the title
    assert pairs[0].product_uid == load_pairs(path)[0].product_uid != pairs[1].product_uid


def test_unlabeled_files_load_when_labels_are_not_required(write_tsv) -> None:
    path = write_tsv(["angle bracket\tSimpson Angle"], header="query\tproduct_title\n")
    assert load_pairs(path, require_label=False)[0].relevance is None
    blank = write_tsv(["1\tq\t1\tt\t"], name="blank.tsv")
    assert load_pairs(blank, require_label=False)[0].relevance is None
    bad = write_tsv(["1\tq\t1\tt\t7"], name="bad.tsv")
    with pytest.raises(PairsFileError, match="outside"):
        load_pairs(bad, require_label=False)


def test_split_is_stable_and_uses_the_normalised_query() -> None:
    assert normalise_query("  Angle   BRACKET\t") == "angle bracket"
    assert split_of("Angle  Bracket ") == split_of("angle bracket")
    assert {split_of(f"query {i}") for i in range(200)} == {"train", "valid", "test"}


def test_split_is_disjoint_by_query_and_near_80_10_10(vendored_pairs: Path) -> None:
    pairs = load_pairs(vendored_pairs)
    splits = split_pairs(pairs)
    assert sum(len(v) for v in splits.values()) == len(pairs)
    queries = {name: {normalise_query(p.query) for p in part} for name, part in splits.items()}
    assert not queries["train"] & queries["valid"]
    assert not queries["train"] & queries["test"]
    assert not queries["valid"] & queries["test"]
    total = sum(len(q) for q in queries.values())
    shares = {name: len(q) / total for name, q in queries.items()}
    assert shares["train"] == pytest.approx(0.8, abs=0.02)
    assert shares["valid"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.1, abs=0.02)
    # deterministic: the same input gives the same partition
    assert [p.pair_id for p in split_pairs(pairs)["test"]] == [p.pair_id for p in splits["test"]]


def test_catalogue_has_distinct_products_and_round_trips(tmp_path: Path, vendored_pairs: Path) -> None:
    pairs = load_pairs(vendored_pairs)
    catalogue = build_catalogue(pairs)
    uids = [p.product_uid for p in catalogue]
    assert len(uids) == len(set(uids)) == len({p.product_uid for p in pairs})
    write_catalogue(tmp_path / "catalogue.tsv", catalogue)
    assert load_catalogue(tmp_path / "catalogue.tsv") == catalogue


def test_write_pairs_round_trips_and_keeps_tsv_framing(tmp_path: Path) -> None:
    pairs = [Pair("angle\tbracket", "Simpson\nAngle", 2.33, "100001", "7"), Pair("q", "t", None, "2", "8")]
    path = tmp_path / "out.tsv"
    write_pairs(path, pairs, extra={"score": ["0.5", "0.1"]})
    loaded = load_pairs(path, require_label=False)
    assert [(p.query, p.product_title, p.relevance, p.product_uid, p.pair_id) for p in loaded] == [
        ("angle bracket", "Simpson Angle", 2.33, "100001", "7"), ("q", "t", None, "2", "8")]
    assert Counter(len(line.split("\t")) for line in path.read_text().splitlines()) == {6: 3}


# a title or query as the loader keeps it: no tab or line break inside, no surrounding whitespace, not empty
_FIELD = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), min_size=1,
                 max_size=40).map(str.strip).filter(bool)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(_FIELD, _FIELD), min_size=1, max_size=5))
def test_any_title_round_trips_through_write_pairs_and_load_pairs(rows: list[tuple[str, str]]) -> None:
    """Quotes (the ESCI titles' `18"`), backslashes, unicode: what is written reads back unchanged."""
    pairs = [Pair(query, title, 3.0, str(i), str(i)) for i, (query, title) in enumerate(rows)]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "pairs.tsv"
        write_pairs(path, pairs, extra={"note": [f'"{q}\\' for q, _ in rows]})
        assert [(p.query, p.product_title) for p in load_pairs(path)] == rows
        write_catalogue(path, [Product(str(i), title) for i, (_, title) in enumerate(rows)])
        assert [p.product_title for p in load_catalogue(path)] == [title for _, title in rows]


def test_quotes_tabs_backslashes_and_unicode_survive(tmp_path: Path) -> None:
    pairs = [Pair('14k gold necklace 18"', 'Gold Chain Necklace for Women Girls, 18"', 3.0, "1", "1"),
             Pair("c:\\path \"quoted\"", "Ünïcödé\ttabbed \\ title 🙂", 1.0, "2", "2")]
    write_pairs(tmp_path / "p.tsv", pairs)
    assert [(p.query, p.product_title) for p in load_pairs(tmp_path / "p.tsv")] == [
        ('14k gold necklace 18"', 'Gold Chain Necklace for Women Girls, 18"'),
        ("c:\\path \"quoted\"", "Ünïcödé tabbed \\ title 🙂")]
