"""The student configuration: everything besides the weights that a checkpoint needs to rebuild and feed a
student (family, backbone, sequence lengths, dimensions, marker tokens). Stored as ``student.json``."""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from relevance_core.versioned import load_versioned

Family = Literal["colbert", "cross", "sbert", "poly"]
FAMILIES: tuple[Family, ...] = ("colbert", "cross", "sbert", "poly")
INTERACTION_FAMILIES: frozenset[str] = frozenset({"cross"})
"""Families that encode the pair jointly (CoT distilled by CRF sequence tagging); the others are two-tower
(representation) students whose CoT is distilled by attention regulation."""

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
CONFIG_FILE = "student.json"
FORMAT_VERSION = 1


@dataclass
class StudentConfig:
    """Settings of one student. Lengths count every token, special and marker tokens included.

    ``query_marker`` / ``item_marker`` are vocabulary entries placed right after [CLS] on each side of a
    two-tower student (ColBERT's [Q] / [D]); the BERT vocabulary's ``[unusedN]`` entries serve, so the tokenizer
    needs no new tokens. Empty strings mean no marker. ``skip_token_ids`` are item-side tokens left out of the
    late interaction (ColBERT's punctuation skip-list); they are still encoded.
    """

    family: Family
    backbone: str = DEFAULT_BACKBONE
    query_len: int = 16
    title_len: int = 32
    pair_len: int = 48
    dim: int = 128
    n_codes: int = 16
    num_tags: int = 5
    query_marker: str = ""
    item_marker: str = ""
    skip_token_ids: list[int] = field(default_factory=list)
    init_scale: float = 10.0
    init_bias: float = -5.0
    format_version: int = FORMAT_VERSION

    @property
    def interaction(self) -> bool:
        return self.family in INTERACTION_FAMILIES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: Path) -> None:
        (directory / CONFIG_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> StudentConfig:
        return load_versioned(cls, directory / CONFIG_FILE, FORMAT_VERSION)


def family_defaults(family: Family) -> dict[str, Any]:
    """Per-family defaults: ColBERT gets [Q]/[D]-style markers ([unused0]/[unused1]); the other two-tower
    students encode both sides plainly."""
    if family not in FAMILIES:
        raise ValueError(f"unknown student family {family!r}; expected one of {', '.join(FAMILIES)}")
    if family == "colbert":
        return {"query_marker": "[unused0]", "item_marker": "[unused1]"}
    return {}


def punctuation_token_ids(vocab: dict[str, int]) -> list[int]:
    """Ids of the single-character ASCII punctuation tokens of a vocabulary (ColBERT's skip-list)."""
    return sorted(vocab[c] for c in string.punctuation if c in vocab)
