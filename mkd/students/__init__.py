"""The four student families of MKD (paper §4.2.1, §4.3.2) on a BERT-like backbone (all-MiniLM-L6-v2 by
default): the ColBERT-like late-interaction model (served online), the BERT cross-encoder with a CRF BIO
tagger, Sentence-BERT and the Poly-encoder; their collator and self-contained checkpoints."""

from __future__ import annotations

from mkd.students.base import Student, StudentOutput
from mkd.students.colbert import ColBERTStudent
from mkd.students.collate import PairExample, StudentCollator
from mkd.students.config import FAMILIES, Family, StudentConfig
from mkd.students.crf import LinearChainCRF
from mkd.students.cross import CrossEncoderStudent
from mkd.students.poly import PolyEncoderStudent
from mkd.students.registry import build_student, load_student
from mkd.students.sbert import SentenceBertStudent
from mkd.students.scoring import CheckpointScorer, predict_p_good

__all__ = [
    "FAMILIES",
    "CheckpointScorer",
    "ColBERTStudent",
    "CrossEncoderStudent",
    "Family",
    "LinearChainCRF",
    "PairExample",
    "PolyEncoderStudent",
    "SentenceBertStudent",
    "Student",
    "StudentCollator",
    "StudentConfig",
    "StudentOutput",
    "build_student",
    "load_student",
    "predict_p_good",
]
