from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relevance_core.teacher.score import TokenLogprob, TopLogprob, read_judgement, teacher_score

probability = st.floats(min_value=0.0, max_value=1.0)


@given(probability, probability)
def test_softmax_is_eq4_as_printed(p_good: float, p_bad: float) -> None:
    scored = teacher_score(p_good, p_bad, "softmax")
    if p_good + p_bad < 1e-3:
        assert scored.score is None and scored.reason
        return
    assert scored.score == pytest.approx(math.exp(p_good) / (math.exp(p_good) + math.exp(p_bad)))
    assert 1 / (1 + math.e) - 1e-12 <= scored.score <= math.e / (1 + math.e) + 1e-12


@given(probability, probability)
def test_renormalise_is_pg_over_pg_plus_pb(p_good: float, p_bad: float) -> None:
    scored = teacher_score(p_good, p_bad, "renormalise")
    if p_good + p_bad < 1e-3:
        assert scored.score is None
        return
    assert scored.score == pytest.approx(p_good / (p_good + p_bad))


def test_both_normalisations_order_pairs_alike() -> None:
    pairs = [(0.9, 0.05), (0.6, 0.3), (0.2, 0.7), (0.01, 0.98)]
    for normalisation in ("softmax", "renormalise"):
        scores = [teacher_score(g, b, normalisation).score for g, b in pairs]
        assert scores == sorted(scores, reverse=True)
    assert teacher_score(0.5, 0.5, "softmax").score == teacher_score(0.5, 0.5, "renormalise").score == 0.5


def test_no_judgement_mass_gives_no_score_with_a_reason() -> None:
    scored = teacher_score(0.0, 0.0)
    assert scored.score is None and "neither Good nor Bad" in (scored.reason or "")
    assert teacher_score(0.0004, 0.0004, min_mass=1e-3).score is None
    assert teacher_score(0.0004, 0.0004, min_mass=1e-4).score == 0.5


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_a_non_probability_is_an_error(bad: float) -> None:
    with pytest.raises(ValueError, match="probability"):
        teacher_score(bad, 0.5)


def tok(token: str, logprob: float = -0.01, **top: float) -> TokenLogprob:
    alternatives = [TopLogprob(token=t, logprob=lp) for t, lp in top.items()]
    return TokenLogprob(token=token, logprob=logprob, top_logprobs=alternatives)


def tokens(*texts: str) -> list[TokenLogprob]:
    return [tok(t) for t in texts]


BODY = ["Thinking", ":", " query", " has", " no", " requirements", ";", " ad", " has", " no", " attributes", "."]


def test_reads_good_and_bad_at_the_judgement_word() -> None:
    judgement = tok(" Good", -0.2, **{" Good": -0.2, " Bad": -2.0, " good": -4.0, " Great": -5.0})
    reading = read_judgement([*tokens(*BODY, " Final", " judgment", ":"), judgement, *tokens("<eos>")])
    assert reading.reason is None and reading.token == " Good" and reading.token_index == len(BODY) + 3
    assert reading.p_good == pytest.approx(math.exp(-0.2) + math.exp(-4.0))
    assert reading.p_bad == pytest.approx(math.exp(-2.0))


def test_a_word_split_into_pieces_counts_each_piece_that_starts_it() -> None:
    judgement = tok(" G", -0.5, **{" G": -0.5, " B": -1.5, " Go": -3.0, " Ba": -4.0, " A": -2.0, " Bold": -6.0})
    reading = read_judgement([*tokens(*BODY, " Final", " judgment", ":"), judgement, *tokens("ood")])
    assert reading.p_good == pytest.approx(math.exp(-0.5) + math.exp(-3.0))
    assert reading.p_bad == pytest.approx(math.exp(-1.5) + math.exp(-4.0))


def test_no_space_merged_colon_case_and_emphasis() -> None:
    top = {":Bad": -0.3, ":Good": -1.4, ":": -3.0}
    merged = read_judgement([*tokens("Final", " judgement"), tok(":Bad", -0.3, **top), *tokens("-brand")])
    assert merged.p_bad == pytest.approx(math.exp(-0.3)) and merged.p_good == pytest.approx(math.exp(-1.4))
    emphasis = read_judgement([*tokens("FINAL JUDGMENT", ":", " **"), tok("bad", -0.1, bad=-0.1, good=-2.5)])
    assert emphasis.p_bad == pytest.approx(math.exp(-0.1)) and emphasis.p_good == pytest.approx(math.exp(-2.5))


def test_the_generated_token_counts_even_when_top_logprobs_omit_it() -> None:
    reading = read_judgement([*tokens("Final judgment:"), tok(" Bad", -0.05, **{" Good": -3.0})])
    assert reading.p_bad == pytest.approx(math.exp(-0.05)) and reading.p_good == pytest.approx(math.exp(-3.0))


def test_after_a_prefill_the_first_generated_token_is_the_judgement() -> None:
    prefill = "Thinking: query has no requirements; ad has no attributes. Final judgment:"
    reading = read_judgement([tok(" Bad", -0.7, **{" Bad": -0.7, " Good": -0.8})], prefill=prefill)
    assert reading.token_index == 0 and reading.p_good == pytest.approx(math.exp(-0.8))


def test_the_first_final_judgment_is_the_one_read() -> None:
    first = tok(" Good", -0.1, **{" Good": -0.1})
    second = tok(" Bad", -0.1, **{" Bad": -0.1})
    reading = read_judgement([*tokens("Final judgment:"), first, *tokens(". Final judgment:"), second])
    assert reading.token_index == 1 and reading.p_good == pytest.approx(math.exp(-0.1)) and reading.p_bad == 0.0


def test_neither_word_in_the_top_logprobs_reads_zero_and_scores_none() -> None:
    reading = read_judgement([*tokens("Final judgment:"), tok(" maybe", -0.1, **{" maybe": -0.1, " unclear": -2.0})])
    assert (reading.p_good, reading.p_bad) == (0.0, 0.0)
    assert teacher_score(reading.p_good, reading.p_bad).score is None


@pytest.mark.parametrize(
    ("generated", "prefill", "reason"),
    [
        (["Thinking: query has no requirements."], "", "no 'Final judgment:'"),
        (["Thinking: ...", " Final judgment:"], "", "no judgement word"),
        (["Thinking: ...", " Final judgment: ", "3"], "", "no judgement word"),
        ([".<eos>"], "Thinking: ... Final judgment: Good", "part of the prefill"),
        ([], "", "no 'Final judgment:'"),
    ],
)
def test_a_missing_judgement_is_reported(generated: list[str], prefill: str, reason: str) -> None:
    reading = read_judgement(tokens(*generated), prefill=prefill)
    assert reading.p_good is None and reading.p_bad is None and reason in (reading.reason or "")
