"""Scoring with a student: batched p(Good) for (query, title) pairs, and the checkpoint scorer behind
``relevance evaluate --model CHECKPOINT_DIR`` (the :class:`mkd.scorers.PairScorer` protocol)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mkd.students.base import Student
from mkd.students.collate import PairExample, StudentCollator
from mkd.students.registry import load_student
from relevance_core.data import Pair


def predict_p_good(student: Student, pairs: Sequence[tuple[str, str]], *, batch_size: int = 256,
                   show_progress: bool = False) -> np.ndarray:
    """p(Good) for each (query, title), in order, in eval mode without gradients (the mode is restored)."""
    collate = StudentCollator(student.tokenizer, student.config)
    was_training = student.training
    student.eval()
    scores = np.empty(len(pairs), dtype=np.float64)
    try:
        with torch.inference_mode():
            for begin in tqdm(range(0, len(pairs), batch_size), desc=f"scoring ({student.config.family})",
                              unit="batch", disable=not show_progress):
                chunk = pairs[begin : begin + batch_size]
                batch = collate([PairExample(query, title) for query, title in chunk])
                scores[begin : begin + len(chunk)] = student(batch).p_good.double().numpy()
    finally:
        student.train(was_training)
    return scores


class CheckpointScorer:
    """A student checkpoint directory as a pair scorer; scores are calibrated probabilities of Good."""

    def __init__(self, directory: str | os.PathLike[str], *, batch_size: int = 256, show_progress: bool = True,
                 ) -> None:
        self.directory = Path(directory)
        self.student = load_student(self.directory)
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.name = f"{self.student.config.family}:{self.directory.name}"

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        return predict_p_good(self.student, [(p.query, p.product_title) for p in pairs],
                              batch_size=self.batch_size, show_progress=self.show_progress)
