"""The release teacher (a committee combined on the validation split), its teacher file and the compact scores copy,
on the tiny exported students and real vendored pairs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from mkd.committee.combiner import fit_combiner, out_of_fold
from mkd.committee.committee import Committee, CommitteeScorer, Member, fit_committee
from mkd.committee.labelling import label_with_committee
from mkd.committee.scores_file import expand_scores, write_scores
from mkd.scorers import UnknownModelError, load_scorer
from relevance_core.annotation import Annotator
from relevance_core.cot import parse
from relevance_core.data import Pair, load_pairs, write_pairs


def test_combiner_is_the_logistic_regression_on_standardised_logits() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400).astype(float)
    features = np.stack([labels * 1.5 + rng.normal(size=400), rng.normal(size=400) * 3 + 1], axis=1)
    combiner = fit_combiner(features, labels)
    standardised = (features - features.mean(axis=0)) / features.std(axis=0)
    reference = LogisticRegression(max_iter=1000).fit(standardised, labels).predict_proba(standardised)[:, 1]
    assert np.allclose(combiner(features), reference, atol=1e-6)
    # the informative member carries the weight; out-of-fold scores rank as well as it does, not better than chance
    assert abs(combiner.coef[0]) > 5 * abs(combiner.coef[1])
    groups = [f"q{i // 4}" for i in range(400)]
    assert roc_auc_score(labels, out_of_fold(features, labels, groups)) > 0.75


@pytest.fixture(scope="module")
def pairs(vendored_pairs: Path) -> list[Pair]:
    return load_pairs(vendored_pairs)[:120]


@pytest.fixture(scope="module")
def annotator(pairs: list[Pair]) -> Annotator:
    return Annotator.from_titles(p.product_title for p in pairs)


@pytest.fixture(scope="module")
def committee_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_repository: Path,
                  pairs: list[Pair]) -> Path:
    root = tmp_path_factory.mktemp("committee")
    valid = root / "valid.tsv"
    write_pairs(valid, pairs[:80])
    members = [Member("colbert", str(tiny_model_repository / "colbert" / "1")),
               Member("cross", str(tiny_model_repository / "cross" / "1"))]
    scorers = [load_scorer(m.model, show_progress=False).score for m in members]
    fit_committee(members, scorers, valid, load_pairs(valid), root / "teacher")
    return root / "teacher"


def test_fit_writes_a_committee_that_evaluate_loads(committee_dir: Path, pairs: list[Pair],
                                                    tiny_model_repository: Path) -> None:
    committee = Committee.load(committee_dir)
    assert [m.name for m in committee.members] == ["colbert", "cross"]
    record = committee.record
    assert record["fitted_on"]["rows"] == 80 and len(record["fitted_on"]["sha256"]) == 64
    assert set(record["valid"]["members"]) == {"colbert", "cross"} and record["valid"]["folds"] == 5
    for spec in (f"committee:{committee_dir}", str(committee_dir)):
        scorer = load_scorer(spec, show_progress=False)
        assert isinstance(scorer, CommitteeScorer)
    held_out = pairs[80:]
    scores = scorer.score(held_out)
    assert scores.shape == (40,) and np.all((scores > 0) & (scores < 1))
    members = np.stack([load_scorer(str(tiny_model_repository / n / "1"), show_progress=False).score(held_out)
                        for n in ("colbert", "cross")], axis=1)
    logits = np.log(members) - np.log1p(-members)
    expected = committee.combiner(logits)
    assert np.allclose(scores, expected, atol=1e-9)


def test_a_broken_committee_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match=r"no committee\.json"):
        load_scorer(f"committee:{tmp_path}", show_progress=False)
    (tmp_path / "committee.json").write_text('{"members": [{"name": "a", "model": "x"}], "combiner": {"mean": [],'
                                             ' "scale": [], "coef": [], "intercept": 0}}')
    with pytest.raises(UnknownModelError, match="1 members but a combiner of 0 inputs"):
        load_scorer(str(tmp_path), show_progress=False)


def test_teacher_file_has_verdict_consistent_cots_and_resumes(committee_dir: Path, pairs: list[Pair],
                                                              annotator: Annotator, tmp_path: Path) -> None:
    scorer = load_scorer(str(committee_dir), show_progress=False)
    assert isinstance(scorer, CommitteeScorer)
    unlabeled = [Pair(p.query, p.product_title, None, p.product_uid) for p in pairs[80:100]]
    todo = [*pairs[:20], *unlabeled]
    out = tmp_path / "teacher.jsonl"
    first = label_with_committee(todo[:16], out, scorer, annotator, chunk=8, show_progress=False)
    assert first["labelled"] == 16
    second = label_with_committee(todo, out, scorer, annotator, chunk=8, show_progress=False)
    assert second["already_done"] == 16 and second["labelled"] == 24
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["query"], r["product_title"]) for r in rows] == [(p.query, p.product_title) for p in todo]
    with_cot = 0
    for row, pair in zip(rows, todo, strict=True):
        assert row["p_good"] == row["score"] and row["p_bad"] == pytest.approx(1 - row["score"])
        assert row["judgement"] == ("Good" if row["score"] > 0.5 else "Bad")
        assert set(row["members"]) == {"colbert", "cross"}
        assert ("relevance" in row) == (pair.relevance is not None)
        if row["cot"] is None:
            assert row["cot_reason"]
            continue
        with_cot += 1
        parsed = parse(row["cot"], pair.query, pair.product_title)
        assert parsed.ok and parsed.explanation is not None
        assert parsed.explanation.judgement == row["judgement"]
    assert with_cot >= len(rows) // 2
    assert second["with_cot"] + first["with_cot"] == with_cot


def test_compact_scores_expand_to_the_same_teacher_file(committee_dir: Path, pairs: list[Pair],
                                                        annotator: Annotator, tmp_path: Path) -> None:
    scorer = load_scorer(str(committee_dir), show_progress=False)
    assert isinstance(scorer, CommitteeScorer)
    out = tmp_path / "teacher.jsonl"
    label_with_committee(pairs[:30], out, scorer, annotator, show_progress=False)
    compact = tmp_path / "scores.tsv.gz"
    assert write_scores(out, compact) == 30
    first_bytes = compact.read_bytes()
    write_scores(out, compact)
    assert compact.read_bytes() == first_bytes  # deterministic bytes: a rerun commits no change
    with gzip.open(compact, "rt") as handle:
        assert handle.readline() == "query\tproduct_uid\tscore\n"
    rebuilt = tmp_path / "rebuilt.jsonl"
    summary = expand_scores(compact, pairs, rebuilt, annotator, show_progress=False)
    assert summary["rows"] == 30 and summary["not_in_pairs"] == 0
    original = {(r["query"], r["product_uid"]): r for r in map(json.loads, out.read_text().splitlines())}
    for row in map(json.loads, rebuilt.read_text().splitlines()):
        source = original[(row["query"], row["product_uid"])]
        for field in ("score", "judgement", "cot", "product_title", "relevance"):
            assert row.get(field) == source.get(field), field


def test_cli_fit_label_scores_expand(tiny_model_repository: Path, pairs: list[Pair], tmp_path: Path) -> None:
    from relevance.cli import app

    valid, train, catalogue = tmp_path / "valid.tsv", tmp_path / "train.tsv", tmp_path / "catalogue.tsv"
    write_pairs(valid, pairs[:60])
    write_pairs(train, pairs[60:90])
    catalogue.write_text("product_uid\tproduct_title\n" + "".join(
        f"{p.product_uid}\t{p.product_title}\n" for p in {p.product_uid: p for p in pairs}.values()))
    runner = CliRunner()
    result = runner.invoke(app, ["teacher", "committee", "fit", "--member",
                                         f"colbert={tiny_model_repository / 'colbert' / '1'}",
                                         "--out", str(tmp_path / "c"), "--valid-pairs", str(valid)])
    assert result.exit_code == 0, result.output
    assert "committee_out_of_fold" in json.loads(result.stdout.strip().splitlines()[-1])
    result = runner.invoke(app, ["teacher", "committee", "label", "--committee", str(tmp_path / "c"), "--pairs",
                                         str(train), "--out", str(tmp_path / "t.jsonl"), "--catalogue",
                                         str(catalogue)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["labelled"] == 30
    result = runner.invoke(app, ["teacher", "committee", "scores", "--teacher", str(tmp_path / "t.jsonl"), "--out",
                                         str(tmp_path / "s.tsv.gz")])
    assert result.exit_code == 0 and json.loads(result.stdout)["rows"] == 30
    result = runner.invoke(app, ["teacher", "committee", "expand", "--scores", str(tmp_path / "s.tsv.gz"), "--pairs",
                                         str(train), "--out", str(tmp_path / "e.jsonl"), "--catalogue",
                                         str(catalogue)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 30
    result = runner.invoke(app, ["teacher", "committee", "label", "--committee", str(tmp_path), "--pairs", str(train),
                                         "--out", str(tmp_path / "x.jsonl"), "--catalogue", str(catalogue)])
    assert result.exit_code != 0 and "no committee.json" in result.output


def test_a_member_scores_file_stands_in_for_the_member(tiny_model_repository: Path, pairs: list[Pair],
                                                       tmp_path: Path) -> None:
    from mkd.committee.scores_file import score_to_file

    member = load_scorer(str(tiny_model_repository / "cross" / "1"), show_progress=False)
    out = tmp_path / "cross.tsv.gz"
    calls: list[int] = []

    def counted(batch: list[Pair]) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt  # a stop after two whole chunks
        return member.score(batch)

    with pytest.raises(KeyboardInterrupt):
        score_to_file(counted, pairs[:60], out, chunk=16, show_progress=False)
    assert not out.exists() and len((tmp_path / "cross.tsv.gz.partial").read_text().splitlines()) == 32
    summary = score_to_file(member.score, [*pairs[:60], pairs[0]], out, chunk=16, show_progress=False)
    assert summary["already_done"] == 32 and summary["scored"] == 28 and summary["rows"] == 60
    assert not (tmp_path / "cross.tsv.gz.partial").exists()
    stand_in = load_scorer(f"scores:{out}", show_progress=False)
    assert np.allclose(stand_in.score(pairs[:60]), member.score(pairs[:60]), atol=1e-6)
    with pytest.raises(UnknownModelError, match="no score for 1 of 2 pairs"):
        stand_in.score([pairs[0], Pair("a query never scored", "t", None, "x")])


def test_cli_member_scores_then_a_committee_of_score_files(tiny_model_repository: Path, pairs: list[Pair],
                                                           tmp_path: Path) -> None:
    from relevance.cli import app

    valid = tmp_path / "valid.tsv"
    write_pairs(valid, pairs[:60])
    runner = CliRunner()
    files = {}
    for name in ("colbert", "cross"):
        files[name] = tmp_path / f"{name}.tsv.gz"
        result = runner.invoke(app, ["teacher", "committee", "member-scores", "--model",
                                     str(tiny_model_repository / name / "1"), "--pairs", str(valid), "--out",
                                     str(files[name])])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.strip().splitlines()[-1])["rows"] == 60
    result = runner.invoke(app, ["teacher", "committee", "fit", "--member", f"colbert=scores:{files['colbert']}",
                                 "--member", f"cross=scores:{files['cross']}", "--out", str(tmp_path / "c"),
                                 "--valid-pairs", str(valid)])
    assert result.exit_code == 0, result.output
    direct = tmp_path / "direct"
    fit_committee([Member(n, str(tiny_model_repository / n / "1")) for n in ("colbert", "cross")],
                  [load_scorer(str(tiny_model_repository / n / "1"), show_progress=False).score
                   for n in ("colbert", "cross")], valid, load_pairs(valid), direct)
    from_files, from_models = Committee.load(tmp_path / "c"), Committee.load(direct)
    assert np.allclose(from_files.combiner.coef, from_models.combiner.coef, atol=1e-3)
    # a pair outside the files is a clear error, not a traceback
    other = tmp_path / "other.tsv"
    write_pairs(other, pairs[60:70])
    result = runner.invoke(app, ["teacher", "committee", "label", "--committee", str(tmp_path / "c"), "--pairs",
                                 str(other), "--out", str(tmp_path / "t.jsonl"), "--catalogue", str(other)])
    assert result.exit_code != 0 and "no score for 10 of 10 pairs" in result.output
