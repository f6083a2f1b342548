"""``relevance teacher committee fit | member-scores | label | scores | expand``: the release teacher (a
committee of trained models, `mkd.committee`) and its teacher file for MKD. The members' scorers are built here,
with `relevance evaluate`'s model loader, and handed to the committee."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mkd.commands.args import CATALOGUE, VALID_PAIRS, read_annotator, read_pairs
from mkd.committee.committee import Committee, CommitteeError, CommitteeScorer, Member, MemberScorer
from relevance_core.console import fail

committee_app = typer.Typer(no_args_is_help=True)


def _member_scorers(members: list[Member]) -> list[MemberScorer]:
    from mkd.scorers import UnknownModelError, load_scorer

    try:
        return [load_scorer(m.resolved, calibrated=False).score for m in members]
    except UnknownModelError as exc:
        raise fail(str(exc)) from None


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
    from mkd.committee.committee import fit_committee
    from mkd.scorers import UnknownModelError

    members = []
    for spec in member:
        name, _, model = spec.partition("=")
        if not name or not model:
            raise fail(f"--member {spec!r}: expected NAME=MODEL")
        members.append(Member(name, model))
    try:
        committee = fit_committee(members, _member_scorers(members), valid_pairs,
                                  read_pairs([valid_pairs], require_label=True), out)
    except (CommitteeError, UnknownModelError) as exc:  # UnknownModelError: a member cannot score the pairs
        raise fail(str(exc)) from None
    print(json.dumps(committee.record["valid"]))


@committee_app.command("member-scores")
def member_scores(
    model: Annotated[str, typer.Option(help="The member, any `relevance evaluate --model` spec.")],
    pairs: Annotated[list[Path], typer.Option(help="Pairs TSV(s) to score: the splits and the pool, everything "
                                                  "the committee will be fitted on or label.")],
    out: Annotated[Path, typer.Option(help="Compact scores file to write (gzip TSV; resumable through its "
                                           "OUT.partial).")],
    chunk: Annotated[int, typer.Option(min=1, help="Pairs scored and written at a time.")] = 4096,
) -> None:
    """Write a member's p(Good) of every pair as a compact, committable scores file: with it the member stays one
    (``--member NAME=scores:FILE``) when its weights are not kept. Last line: a JSON summary."""
    from mkd.committee.scores_file import score_to_file
    from mkd.scorers import UnknownModelError

    scorer = _member_scorers([Member("member", model)])[0]
    chosen = read_pairs(pairs, require_label=False)
    try:
        summary = score_to_file(scorer, chosen, out, chunk=chunk)
    except (CommitteeError, UnknownModelError) as exc:  # UnknownModelError: a member cannot score the pairs
        raise fail(str(exc)) from None
    print(json.dumps(summary))


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
    from mkd.committee.labelling import label_with_committee
    from mkd.scorers import UnknownModelError

    chosen = read_pairs(pairs, require_label=False)
    try:
        loaded = Committee.load(committee)
    except CommitteeError as exc:
        raise fail(str(exc)) from None
    scorer = CommitteeScorer(loaded, _member_scorers(loaded.members))
    try:
        summary = label_with_committee(chosen, out, scorer, read_annotator(catalogue), chunk=chunk)
    except UnknownModelError as exc:  # a member cannot score the pairs (its scores file lacks them)
        raise fail(str(exc)) from None
    print(json.dumps(summary | {"out": str(out)}))


@committee_app.command("scores")
def scores(
    teacher: Annotated[Path, typer.Option(help="Teacher JSONL written by `committee label`.")],
    out: Annotated[Path, typer.Option(help="Compact copy: gzip TSV (query, product_uid, score).")],
) -> None:
    """Write the compact, committable copy of a teacher file (no CoTs; `expand` regenerates them)."""
    from mkd.committee.scores_file import write_scores

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
    from mkd.committee.scores_file import expand_scores

    if not scores_file.is_file():
        raise fail(f"--scores {scores_file}: no such file")
    try:
        summary = expand_scores(scores_file, read_pairs(pairs, require_label=False), out, read_annotator(catalogue))
    except CommitteeError as exc:
        raise fail(str(exc)) from None
    print(json.dumps(summary))
