"""Build a student of a family on a backbone, or load one from a checkpoint directory."""

from __future__ import annotations

import os
from typing import Any

from transformers import PretrainedConfig

from mkd.students.base import Student, load_backbone
from mkd.students.colbert import ColBERTStudent
from mkd.students.config import DEFAULT_BACKBONE, Family, StudentConfig, family_defaults, punctuation_token_ids
from mkd.students.cross import CrossEncoderStudent
from mkd.students.poly import PolyEncoderStudent
from mkd.students.sbert import SentenceBertStudent

STUDENT_CLASSES: dict[str, type[Student]] = {
    cls.family: cls for cls in (ColBERTStudent, CrossEncoderStudent, SentenceBertStudent, PolyEncoderStudent)
}


def build_student(family: Family, backbone: str | os.PathLike[str] | PretrainedConfig = DEFAULT_BACKBONE, *,
                  tokenizer: Any = None, mask_punctuation: bool = True, layers: int | None = None,
                  **options: Any) -> Student:
    """A new student of ``family`` on ``backbone``: a model name or folder (pretrained weights and tokenizer) or
    an architecture config (random initialisation; ``tokenizer`` then required). ``options`` override
    :class:`StudentConfig` fields (lengths, dim, n_codes, markers...). ``mask_punctuation`` puts the tokenizer's
    punctuation tokens on ColBERT's item-side skip-list. ``layers``: keep the backbone's first N layers only."""
    encoder, backbone_tokenizer = load_backbone(backbone, layers)
    tokenizer = tokenizer if tokenizer is not None else backbone_tokenizer
    if tokenizer is None:
        raise ValueError("a randomly initialised backbone needs an explicit tokenizer")
    name = f"random-init {backbone.model_type}" if isinstance(backbone, PretrainedConfig) else str(backbone)
    settings: dict[str, Any] = {**family_defaults(family), **options}
    if family == "colbert" and mask_punctuation and "skip_token_ids" not in options:
        settings["skip_token_ids"] = punctuation_token_ids(tokenizer.get_vocab())
    config = StudentConfig(family=family, backbone=name, **settings)
    return STUDENT_CLASSES[family](config, encoder, tokenizer)


def load_student(directory: str | os.PathLike[str]) -> Student:
    """Load a checkpoint written by :meth:`Student.save_pretrained` (any family)."""
    return Student.load(directory)
