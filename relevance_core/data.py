"""Labelled pairs: a validating TSV loader, the by-query split, and the product catalogue.

The vendored Home Depot file (``data/homedepot/pairs.tsv``) has the columns ``id, query, product_uid,
product_title, relevance``; any TSV with at least ``query``, ``product_title`` and ``relevance`` loads, extra
columns are ignored. Ratings are the raters' mean (1 irrelevant .. 3 perfect); the binary label is
``Good = relevance > 2.0``.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relevance_core.paths import REPO_ROOT

GOOD_THRESHOLD = 2.0
RATING_MIN, RATING_MAX = 1.0, 3.0

Split = Literal["train", "valid", "test"]
SPLITS: tuple[Split, ...] = ("train", "valid", "test")
# Buckets of the stable query hash (0..99): [0, 80) train, [80, 90) valid, [90, 100) test.
_SPLIT_BOUNDS: tuple[tuple[int, Split], ...] = ((80, "train"), (90, "valid"), (100, "test"))


def data_dir() -> Path:
    """Root of the vendored data; ``RELEVANCE_DATA_DIR`` overrides the repository's ``data/``."""
    return Path(os.environ.get("RELEVANCE_DATA_DIR", REPO_ROOT / "data"))


def default_pairs_path() -> Path:
    return data_dir() / "homedepot" / "pairs.tsv"


def derived_dir() -> Path:
    """Where ``relevance data prepare`` writes splits, catalogue and pool (not committed)."""
    return data_dir() / "derived"


class PairsFileError(ValueError):
    """A pairs file that cannot be used; the message names the file, the line and the field."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One (query, product) pair. ``relevance`` is None for unlabeled pairs (the BM25 pool)."""

    query: str
    product_title: str
    relevance: float | None
    product_uid: str
    pair_id: str = ""

    @property
    def good(self) -> bool:
        """The binary label (Good = relevance > 2.0); only defined for labelled pairs."""
        if self.relevance is None:
            raise ValueError(f"pair {self.pair_id or self.query!r} has no relevance label")
        return self.relevance > GOOD_THRESHOLD


_WS = re.compile(r"\s+")


def normalise_query(query: str) -> str:
    """Lower-case, trim and collapse whitespace; the split is computed on this form."""
    return _WS.sub(" ", query.strip().lower())


def split_of(query: str) -> Split:
    """Deterministic 80/10/10 split by a stable hash (sha1) of the normalised query."""
    bucket = int.from_bytes(hashlib.sha1(normalise_query(query).encode("utf-8")).digest()[:8], "big") % 100
    return next(name for bound, name in _SPLIT_BOUNDS if bucket < bound)


def title_uid(title: str) -> str:
    """A stable product id for files without ``product_uid``: a hash of the normalised title."""
    return "t" + hashlib.sha1(normalise_query(title).encode("utf-8")).hexdigest()[:16]


def _parse_relevance(raw: str, where: str, *, required: bool) -> float | None:
    if raw.strip() == "":
        if required:
            raise PairsFileError(f"{where}: field 'relevance': empty, expected a rating in [1, 3]")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise PairsFileError(f"{where}: field 'relevance': {raw!r} is not a number") from None
    if not math.isfinite(value) or not RATING_MIN <= value <= RATING_MAX:
        raise PairsFileError(f"{where}: field 'relevance': {raw!r} is outside [1, 3]")
    return value


def load_pairs(path: str | os.PathLike[str], *, require_label: bool = True) -> list[Pair]:
    """Read and validate a pairs TSV.

    ``require_label=False`` accepts files without a ``relevance`` column or with empty ratings (unlabeled
    pools); a present rating is still validated. Every problem raises :class:`PairsFileError` naming the file,
    the 1-based line number and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise PairsFileError(f"{path}: no such file")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise PairsFileError(f"{path}: empty file, expected a header line") from None
        except UnicodeDecodeError as exc:
            raise PairsFileError(f"{path}:1: not valid UTF-8 ({exc.reason})") from None
        columns = {name.strip(): i for i, name in enumerate(header)}
        required = ["query", "product_title"] + (["relevance"] if require_label else [])
        missing = [name for name in required if name not in columns]
        if missing:
            raise PairsFileError(
                f"{path}:1: header lacks column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'})"
            )
        pairs: list[Pair] = []
        line = 1
        try:
            for line, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                where = f"{path}:{line}"
                if len(row) != len(header):
                    raise PairsFileError(f"{where}: expected {len(header)} tab-separated fields, got {len(row)}")
                query = row[columns["query"]].strip()
                title = row[columns["product_title"]].strip()
                if not query:
                    raise PairsFileError(f"{where}: field 'query': empty")
                if not title:
                    raise PairsFileError(f"{where}: field 'product_title': empty")
                relevance = (
                    _parse_relevance(row[columns["relevance"]], where, required=require_label)
                    if "relevance" in columns
                    else None
                )
                uid = row[columns["product_uid"]].strip() if "product_uid" in columns else ""
                pair_id = row[columns["id"]].strip() if "id" in columns else str(line)
                pairs.append(Pair(query, title, relevance, uid or title_uid(title), pair_id))
        except UnicodeDecodeError as exc:
            raise PairsFileError(f"{path}:{line + 1}: not valid UTF-8 ({exc.reason})") from None
    if not pairs:
        raise PairsFileError(f"{path}: no data rows after the header")
    return pairs


def split_pairs(pairs: Iterable[Pair]) -> dict[Split, list[Pair]]:
    """Partition pairs by :func:`split_of` their query; no query lands in two splits."""
    out: dict[Split, list[Pair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        out[split_of(pair.query)].append(pair)
    return out


@dataclass(frozen=True, slots=True)
class Product:
    product_uid: str
    product_title: str


def build_catalogue(pairs: Iterable[Pair]) -> list[Product]:
    """Distinct products (first title seen per ``product_uid``), sorted by uid for stable output."""
    seen: dict[str, str] = {}
    for pair in pairs:
        seen.setdefault(pair.product_uid, pair.product_title)
    return [Product(uid, title) for uid, title in sorted(seen.items())]


_FRAMING = re.compile(r"[\t\r\n]+")


def _clean(field: str) -> str:
    """Tabs and newlines would break the TSV framing; they never carry meaning in a title or query."""
    return _FRAMING.sub(" ", field).strip()


def _tsv_line(fields: Iterable[object]) -> str:
    """One line of the project's TSV: fields as they are (quotes, backslashes and any unicode kept; the readers
    take every character literally, ``QUOTE_NONE``), tabs and newlines inside a field turned into spaces."""
    return "\t".join(_clean(str(field)) for field in fields) + "\n"


def write_pairs(path: str | os.PathLike[str], pairs: Sequence[Pair], extra: dict[str, Sequence[object]] | None = None,
                ) -> None:
    """Write pairs as TSV with the columns of the vendored file, plus optional extra columns."""
    extra = extra or {}
    for name, values in extra.items():
        if len(values) != len(pairs):
            raise ValueError(f"extra column {name!r} has {len(values)} values for {len(pairs)} pairs")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(_tsv_line(["id", "query", "product_uid", "product_title", "relevance", *extra]))
        for i, pair in enumerate(pairs):
            relevance = "" if pair.relevance is None else f"{pair.relevance:g}"
            handle.write(_tsv_line([pair.pair_id, pair.query, pair.product_uid, pair.product_title, relevance,
                                    *(values[i] for values in extra.values())]))


def write_catalogue(path: str | os.PathLike[str], catalogue: Sequence[Product]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(_tsv_line(["product_uid", "product_title"]))
        for product in catalogue:
            handle.write(_tsv_line([product.product_uid, product.product_title]))


def load_catalogue(path: str | os.PathLike[str]) -> list[Product]:
    """Read a catalogue TSV (``product_uid``, ``product_title``), validating like :func:`load_pairs`."""
    path = Path(path)
    if not path.is_file():
        raise PairsFileError(f"{path}: no such file")
    products: list[Product] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or "product_title" not in header:
            raise PairsFileError(f"{path}:1: header lacks column product_title")
        title_col = header.index("product_title")
        uid_col = header.index("product_uid") if "product_uid" in header else None
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise PairsFileError(f"{path}:{line}: expected {len(header)} tab-separated fields, got {len(row)}")
            title = row[title_col].strip()
            if not title:
                raise PairsFileError(f"{path}:{line}: field 'product_title': empty")
            uid = row[uid_col].strip() if uid_col is not None else ""
            products.append(Product(uid or title_uid(title), title))
    return products


