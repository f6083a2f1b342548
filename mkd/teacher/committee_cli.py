"""``relevance teacher committee fit | label | scores | expand``: the release teacher (a committee of trained models,
`mkd.teacher.committee`) and its teacher file for MKD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from relevance_core.annotation import Annotator
from relevance_core.console import fail
from relevance_core.data import Pair, PairsFileError, derived_dir, load_pairs

committee_app = typer.Typer(no_args_is_help=True)
CATALOGUE = derived_dir() / "catalogue.tsv"
VALID_PAIRS = derived_dir() / "valid.tsv"


def _pairs(paths: list[Path], *, require_label: bool) -> list[Pair]:
    pairs: list[Pair] = []
    try:
        for path in paths:
            pairs.extend(load_pairs(path, require_label=require_label))
    except PairsFileError as exc:
        raise fail(str(exc)) from None
    return pairs


def _annotator(catalogue: Path) -> Annotator:
    if not catalogue.is_file():
        raise fail(f"--catalogue {catalogue}: no such file (run `relevance data prepare`)")
    return Annotator.from_catalogue(catalogue)


@committee_app.command("fit")
def fit(
    member: Annotated[list[str], typer.Option(
        help="A member as NAME=MODEL, MODEL any `relevance evaluate --model` spec (repeatable).")],
    out: Annotated[Path, typer.Option(help="Committee folder (committee.json is written there).")],
    valid_pairs: Annotated[Path, typer.Option(help="The validation split: the combiner is fitted on it.")]
    = VALID_PAIRS,
) -> None:
    """Fit the committee's logistic-regression combiner on the validation split. Last line: the members' and the
    combiner's (out-of-fold, 5 folds by query) validation metrics as JSON."""
    from mkd.teacher.committee import Member, fit_committee

    members = []
    for spec in member:
        name, _, model = spec.partition("=")
        if not name or not model:
            raise fail(f"--member {spec!r}: expected NAME=MODEL")
        members.append(Member(name, model))
    committee = fit_committee(members, valid_pairs, _pairs([valid_pairs], require_label=True), out)
    print(json.dumps(committee.record["valid"]))


@committee_app.command("label")
def label(
    committee: Annotated[Path, typer.Option(help="Committee folder (committee.json).")],
    pairs: Annotated[list[Path], typer.Option(help="Pairs TSV(s) to label: the train split, the unlabeled pool.")],
    out: Annotated[Path, typer.Option(help="Teacher JSONL (appended to; pairs already in it are skipped).")],
    catalogue: Annotated[Path, typer.Option(help="Catalogue TSV (the annotator's brand lexicon).")] = CATALOGUE,
    chunk: Annotated[int, typer.Option(min=1, help="Pairs scored and written at a time.")] = 4096,
) -> None:
    """Write the MKD teacher file: s_T, p_good/p_bad and a CoT consistent with the committee's verdict. Resumable.
    Last line: a JSON summary with the throughput."""
    from mkd.teacher.committee import CommitteeError, CommitteeScorer, label_with_committee

    chosen = _pairs(pairs, require_label=False)
    try:
        scorer = CommitteeScorer(committee)
    except CommitteeError as exc:
        raise fail(str(exc)) from None
    summary = label_with_committee(chosen, out, scorer, _annotator(catalogue), chunk=chunk)
    print(json.dumps(summary | {"out": str(out)}))


@committee_app.command("scores")
def scores(
    teacher: Annotated[Path, typer.Option(help="Teacher JSONL written by `committee label`.")],
    out: Annotated[Path, typer.Option(help="Compact copy: gzip TSV (query, product_uid, score).")],
) -> None:
    """Write the compact, committable copy of a teacher file (no CoTs; `expand` regenerates them)."""
    from mkd.teacher.committee import write_scores

    if not teacher.is_file():
        raise fail(f"--teacher {teacher}: no such file")
    print(json.dumps({"rows": write_scores(teacher, out), "out": str(out), "bytes": out.stat().st_size}))


@committee_app.command("expand")
def expand(
    scores_file: Annotated[Path, typer.Option("--scores", help="Compact teacher scores (gzip TSV).")],
    pairs: Annotated[list[Path], typer.Option(help="The pairs the scores key: the train split, the pool.")],
    out: Annotated[Path, typer.Option(help="Teacher JSONL to write (overwritten).")],
    catalogue: Annotated[Path, typer.Option(help="Catalogue TSV (the annotator's brand lexicon).")] = CATALOGUE,
) -> None:
    """Rebuild the teacher JSONL (scores, verdicts, verdict-consistent CoTs) from the compact scores file, so a
    fresh clone trains MKD students without running the teacher. Deterministic."""
    from mkd.teacher.committee import CommitteeError, expand_scores

    if not scores_file.is_file():
        raise fail(f"--scores {scores_file}: no such file")
    try:
        summary = expand_scores(scores_file, _pairs(pairs, require_label=False), out, _annotator(catalogue))
    except CommitteeError as exc:
        raise fail(str(exc)) from None
    print(json.dumps(summary))
