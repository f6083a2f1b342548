"""The catalogue the gateway may be given (``catalog``: a TSV of product_uid, product_title): the titles of items
that requests name by id only (the item store keeps embeddings, not titles) and the brand lexicon the rule
annotator reads off those titles. Loaded once at start-up (about 1.5 s for 50k products)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from relevance_core.annotation import Annotator, Lexicons
from relevance_core.data import load_catalogue
from service.settings import Settings


@dataclass(frozen=True)
class Catalogue:
    titles: Mapping[str, str] = field(default_factory=dict)
    annotator: Annotator = field(default_factory=lambda: Annotator(Lexicons()))

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalogue:
        """The configured catalogue, or an empty one (no titles; an annotator without brands). Raises
        `relevance_core.data.PairsFileError` naming the file when it cannot be read."""
        if settings.catalog is None:
            return cls()
        products = load_catalogue(settings.catalog)
        return cls({p.product_uid: p.product_title for p in products},
                   Annotator.from_titles(p.product_title for p in products))
