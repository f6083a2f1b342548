"""The model loader: a ``--model`` spec (``relevance evaluate``, committee members) to a `PairScorer`, one score
per pair, higher meaning more relevant: a probability of Good or any monotone score (BM25)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mkd.bm25 import BM25Index
from mkd.committee.committee import COMMITTEE_FILE
from mkd.evaluation.scorer import PairScorer
from relevance_core.data import Pair
from relevance_core.model_repository import (
    SERVING_FILE,
    ModelRepositoryError,
    ModelVersion,
    is_model_repository,
    load_version_directory,
    resolve_model,
)
from relevance_core.teacher.score import Normalisation, teacher_score


class BM25Scorer:
    """BM25 of each query against the catalogue of distinct titles in the evaluated file."""

    name = "bm25"

    def __init__(self, show_progress: bool = True) -> None:
        self.show_progress = show_progress

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        titles = sorted({pair.product_title for pair in pairs})
        position = {title: i for i, title in enumerate(titles)}
        index = BM25Index(titles)
        by_query: dict[str, list[int]] = {}
        for i, pair in enumerate(pairs):
            by_query.setdefault(pair.query, []).append(i)
        out = np.zeros(len(pairs), dtype=np.float64)
        for query, rows in tqdm(by_query.items(), desc="BM25 scoring", unit="query", disable=not self.show_progress):
            all_scores = index.scores(query)
            out[rows] = all_scores[[position[pairs[i].product_title] for i in rows]]
        return out


class RepositoryScorer:
    """An exported model version (ColBERT or cross-encoder) scored with ONNX Runtime alone: no torch import."""

    def __init__(self, version: ModelVersion, *, threads: int = 0, batch_size: int = 128,
                 show_progress: bool = True) -> None:
        from service.core.runtime import runtime_model

        self.model = runtime_model(version, threads=threads)
        self.name = f"{version.label} ({version.meta.family}, {version.meta.precision})"
        self.batch_size = batch_size
        self.show_progress = show_progress

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        queries = [p.query for p in pairs]
        titles = [p.product_title for p in pairs]
        with tqdm(desc=f"scoring {self.name}", unit="text", disable=not self.show_progress) as bar:
            return self.model.score_pairs(queries, titles, batch_size=self.batch_size, progress=bar.update)


class TeacherScorer:
    """ELLM-rele in-process (`mkd.teacher.torch_teacher.LocalTeacher`, default: the shipped adapter): eq. 4 of the
    judgement token's probabilities after the generated CoT. A pair without a readable judgement scores 0.5,
    and ``unscored`` counts them. Needs torch, transformers and peft."""

    def __init__(self, adapter: str | None = None, *, batch_size: int = 32, show_progress: bool = True) -> None:
        from mkd.teacher.torch_teacher import SHIPPED_ADAPTER, LocalTeacher

        self.teacher = LocalTeacher(adapter=adapter or SHIPPED_ADAPTER, max_new_tokens=96)
        self.name = f"teacher ({self.teacher.adapter}, {self.teacher.normalisation})"
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.unscored = 0
        self.alternatives: dict[str, np.ndarray] = {}
        """The other normalisation of eq. 4 on the same generations, reported beside the main one."""

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        out = np.full(len(pairs), 0.5, dtype=np.float64)
        other = np.full(len(pairs), 0.5, dtype=np.float64)
        with tqdm(total=len(pairs), desc="teacher scoring", unit="pair", disable=not self.show_progress) as bar:
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start : start + self.batch_size]
                for offset, judgement in enumerate(self.teacher.judge([(p.query, p.product_title) for p in chunk])):
                    if judgement.score is None or judgement.p_good is None or judgement.p_bad is None:
                        self.unscored += 1
                        continue
                    out[start + offset] = judgement.score
                    other[start + offset] = teacher_score(judgement.p_good, judgement.p_bad,
                                                          self.other_normalisation).score or 0.5
                bar.update(len(chunk))
        self.alternatives = {self.other_normalisation: other}
        return out

    @property
    def other_normalisation(self) -> Normalisation:
        return "renormalise" if self.teacher.normalisation == "softmax" else "softmax"


class RulesScorer:
    """The rule annotator that writes the local teacher's SFT CoTs (`relevance_core.annotation`), used without
    the label: the share of its four routes that judge a pair Good. The brand lexicon is read off ``catalogue``."""

    def __init__(self, catalogue: Path, *, show_progress: bool = True) -> None:
        from relevance_core.annotation import Annotator
        from relevance_core.data import PairsFileError

        try:
            self.annotator = Annotator.from_catalogue(catalogue)
        except PairsFileError as exc:
            raise UnknownModelError(f"--model rules: {exc} (the catalogue whose titles give the brand lexicon; "
                                    "run `relevance data prepare` or pass rules:CATALOGUE_TSV)") from None
        self.name = f"rules ({catalogue})"
        self.show_progress = show_progress

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        return np.array([self.annotator.good_share(p.query, p.product_title)
                         for p in tqdm(pairs, desc="rule annotator", unit="pair", disable=not self.show_progress)])


class ScoresFileScorer:
    """``scores:FILE``: the scores a compact scores file holds (`mkd.committee.scores_file`), e.g. a committee
    member's, looked up by (query, product_uid); a pair the file lacks is an error naming how many are missing."""

    def __init__(self, path: Path) -> None:
        from mkd.committee.committee import CommitteeError
        from mkd.committee.scores_file import read_scores

        try:
            self.scores = read_scores(path)
        except CommitteeError as exc:
            raise UnknownModelError(f"--model scores:{path}: {exc}") from None
        self.name = f"scores ({path})"
        self.path = path

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        found = [self.scores.get((p.query, p.product_uid)) for p in pairs]
        missing = [p for p, value in zip(pairs, found, strict=True) if value is None]
        if missing:
            raise UnknownModelError(f"{self.path}: no score for {len(missing)} of {len(pairs)} pairs (first: "
                                    f"{missing[0].query!r} / {missing[0].product_uid}); score them into the file with "
                                    "`relevance teacher committee member-scores`")
        return np.array(found, dtype=np.float64)


class UnknownModelError(ValueError):
    """The ``--model`` argument names nothing this build can score with."""


def load_scorer(model: str, *, version: int | None = None, model_name: str | None = None,
                show_progress: bool = True, calibrated: bool = True) -> PairScorer:
    """Resolve ``--model``: ``bm25``; ``rules`` or ``rules:CATALOGUE`` (the rule annotator, `RulesScorer`);
    ``teacher`` (the shipped local ELLM-rele) or ``teacher:ADAPTER_DIR``;
    ``committee:DIR`` or a folder with ``committee.json`` (the release teacher, `mkd.committee`);
    ``scores:FILE`` (the scores of a compact scores file, `ScoresFileScorer`); a
    model repository (root or model directory; ``version`` defaults to the highest, ``model_name`` to ``colbert``)
    or one exported version directory, scored with ONNX Runtime; or a student checkpoint directory
    (``student.json`` inside; needs torch). ``calibrated=False``: an exported version's own probability, without
    the calibration map it may carry (what committee members give: the combiner calibrates them together)."""
    path = Path(model)
    if (version is not None or model_name is not None) and not is_model_repository(path):
        raise UnknownModelError(f"--version/--model-name apply to a model repository; {model!r} is not one")
    if model == "bm25":
        return BM25Scorer(show_progress=show_progress)
    if model == "rules" or model.startswith("rules:"):
        from relevance_core.data import derived_dir

        return RulesScorer(Path(model.partition(":")[2] or derived_dir() / "catalogue.tsv"),
                           show_progress=show_progress)
    if model.startswith("scores:"):
        return ScoresFileScorer(Path(model.removeprefix("scores:")))
    if model == "teacher" or model.startswith("teacher:"):
        return TeacherScorer(model.partition(":")[2] or None, show_progress=show_progress)
    if model.startswith("committee:") or (path / COMMITTEE_FILE).is_file():
        from mkd.committee.committee import Committee, CommitteeError, CommitteeScorer

        try:
            committee = Committee.load(model.removeprefix("committee:"))
        except CommitteeError as exc:
            raise UnknownModelError(f"--model {model!r}: {exc}") from None
        return CommitteeScorer(committee, [load_scorer(m.resolved, show_progress=show_progress, calibrated=False).score
                                           for m in committee.members])
    try:
        exported = (resolve_model(path, model=model_name, version=version) if is_model_repository(path) else
                    load_version_directory(path) if (path / SERVING_FILE).is_file() else None)
    except ModelRepositoryError as exc:
        raise UnknownModelError(f"--model {model!r}: {exc}") from None
    if exported is not None:
        return RepositoryScorer(exported if calibrated else exported.uncalibrated(), show_progress=show_progress)
    if (path / "student.json").is_file():
        from mkd.students.scoring import CheckpointScorer  # torch is imported only on this path

        return CheckpointScorer(model, show_progress=show_progress)
    raise UnknownModelError(f"--model {model!r}: unknown model; expected 'bm25', 'rules', 'teacher', 'committee:DIR', "
                            "'scores:FILE', "
                            "a model repository (config.pbtxt), an exported version directory (serving.json) or a "
                            "student checkpoint directory (student.json)")
