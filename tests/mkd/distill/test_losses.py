from __future__ import annotations

import math

import pytest
import torch

from mkd.distill.losses import attention_regulation, ce, crf_nll, default_lambdas, mkd_loss, score_kl
from mkd.students import StudentOutput
from mkd.students.crf import LinearChainCRF

NAN = math.nan


def _kl_by_hand(s: float, z: float, t: float) -> float:
    good, bad = s ** (1 / t), (1 - s) ** (1 / t)
    p_good = good / (good + bad)
    q_good = 1 / (1 + math.exp(-z / t))
    return p_good * math.log(p_good / q_good) + (1 - p_good) * math.log((1 - p_good) / (1 - q_good))


def test_score_kl_at_temperature_two_by_hand() -> None:
    # T = 2. Teacher s=0.8 softens to [2/3, 1/3] (sqrt(.8)/sqrt(.2) = 2), student z=1 to sigmoid(0.5)=0.6225:
    #   KL = 2/3 ln((2/3)/0.62246) + 1/3 ln((1/3)/0.37754) = 0.0042295
    # s=0.5 stays [1/2, 1/2], student z=-2 gives sigmoid(-1) = 0.26894: KL = 0.1201145
    # s=0.1 softens to [1/4, 3/4] (sqrt(.1)/sqrt(.9) = 1/3), student z=0 gives [1/2, 1/2]:
    #   KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.1308120
    # L = T^2 * mean = 4 * (0.0042295 + 0.1201145 + 0.1308120) / 3 = 0.3402080
    logits = torch.tensor([1.0, -2.0, 0.0])
    teacher = torch.tensor([0.8, 0.5, 0.1])
    assert math.isclose(_kl_by_hand(0.8, 1.0, 2.0), 0.0042295, abs_tol=1e-7)
    assert math.isclose(_kl_by_hand(0.1, 0.0, 2.0), 0.25 * math.log(0.5) + 0.75 * math.log(1.5), rel_tol=1e-9)
    assert math.isclose(float(score_kl(logits, teacher, 2.0)), 0.3402080339, rel_tol=1e-5)
    # T = 1: plain KL of [s, 1-s] and [sigmoid(z), 1-sigmoid(z)].
    expected = sum(_kl_by_hand(s, z, 1.0) for s, z in ((0.8, 1.0), (0.5, -2.0), (0.1, 0.0))) / 3
    assert math.isclose(float(score_kl(logits, teacher, 1.0)), expected, rel_tol=1e-5)


def test_score_kl_is_zero_when_student_matches_softened_teacher() -> None:
    # sigmoid(z/T) = s^(1/T) / (s^(1/T) + (1-s)^(1/T))  <=>  z = log(s / (1-s))
    teacher = torch.tensor([0.9, 0.3])
    logits = torch.log(teacher / (1 - teacher))
    assert float(score_kl(logits, teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)


def test_score_kl_masks_pairs_without_teacher_score() -> None:
    logits = torch.tensor([1.0, 5.0, -2.0], requires_grad=True)
    loss = score_kl(logits, torch.tensor([0.8, NAN, 0.5]))
    expected = 4 * (_kl_by_hand(0.8, 1.0, 2.0) + _kl_by_hand(0.5, -2.0, 2.0)) / 2
    assert math.isclose(float(loss.detach()), expected, rel_tol=1e-5)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and float(logits.grad[1]) == 0.0
    nothing = score_kl(logits, torch.full((3,), NAN))
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad


def test_ce_with_labels_and_teacher_hard_labels() -> None:
    # Pair 0: human label Good, BCE(0, 1) = ln 2. Pair 1: no label, teacher 0.3 -> hard label Bad,
    # BCE(2, 0) = ln(1 + e^2) = 2.1269280. Pair 2: neither -> masked. Mean = 1.4100376.
    logits = torch.tensor([0.0, 2.0, -1.0])
    labels = torch.tensor([1.0, NAN, NAN])
    teacher = torch.tensor([0.1, 0.3, NAN])  # pair 0's human label wins over its teacher score
    assert math.isclose(float(ce(logits, labels, teacher)), 1.4100375958, rel_tol=1e-6)
    assert math.isclose(float(ce(logits, labels, teacher, hard_label_from_teacher=False)), math.log(2), rel_tol=1e-6)
    assert math.isclose(float(ce(logits, labels)), math.log(2), rel_tol=1e-6)
    assert float(ce(logits, torch.full((3,), NAN))) == 0.0


def test_crf_nll_sums_the_query_and_title_chains_and_skips_untagged_pairs() -> None:
    # Pair 0: query chain = positions 1, 2; title chain = position 4. Pair 1 has no CoT (empty masks).
    # With zero transitions/start/end the CRF factorises: NLL = sum over tagged tokens of -log softmax(e)[tag].
    emissions = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0], [0.0, 3.0]],
                              [[1.0, 1.0]] * 5])
    tags = torch.tensor([[0, 0, 1, 0, 0], [0] * 5])
    q_mask = torch.tensor([[False, True, True, False, False], [False] * 5])
    t_mask = torch.tensor([[False, False, False, False, True], [False] * 5])
    zeros2, zeros = torch.zeros(2, 2), torch.zeros(2)
    expected = -(math.log(math.e / (math.e + 1)) + math.log(math.e**2 / (1 + math.e**2))
                 + math.log(1 / (1 + math.e**3)))
    assert math.isclose(float(crf_nll(emissions, tags, (q_mask, t_mask), zeros2, zeros, zeros)), expected,
                        rel_tol=1e-6)
    # With transitions the chains stay separate: no transition is scored from the query's last tag to the title's.
    crf = LinearChainCRF(2)
    with torch.no_grad():
        crf.transitions.copy_(torch.tensor([[0.5, -1.0], [2.0, 0.0]]))
    separate = -(crf.log_likelihood(emissions, tags, q_mask) + crf.log_likelihood(emissions, tags, t_mask))[0]
    assert torch.allclose(crf_nll(emissions, tags, (q_mask, t_mask), *crf.parameters_tuple()), separate)


def _regulation_batch() -> tuple[torch.Tensor, ...]:
    sim = torch.zeros(3, 2, 3)
    sim[0] = torch.tensor([[0.5, -0.2, 0.9], [0.1, 0.3, -0.4]])
    sim[1] = torch.tensor([[0.7, 0.7, 0.7], [0.7, 0.7, 0.7]])
    sim[2] = torch.tensor([[0.2, 0.0, 0.0], [0.6, 0.0, 0.0]])
    q_mask = torch.ones(3, 2, dtype=torch.bool)
    t_mask = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])
    q_factors = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    t_factors = torch.tensor([[-1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    return sim, q_mask, t_mask, q_factors, t_factors


def test_attention_regulation_by_hand() -> None:
    # Pair 0: title token 2 is padding. a_q = [max(0.5, -0.2), max(0.1, 0.3)] = [0.5, 0.3];
    #   a_t = [max(0.5, 0.1), max(-0.2, 0.3)] = [0.5, 0.3]. Query factors [+1, none]: (1/1)·sqrt((0.5-1)^2) = 0.5.
    #   Title factors [-1, +1, (+1 on padding: ignored)]: (1/2)·sqrt((0.5+1)^2 + (0.3-1)^2) = sqrt(2.74)/2
    #   = 0.8276473. Pair total 1.3276473.
    # Pair 1: no factors -> left out of the average.
    # Pair 2: title factor [+1] only: a_t0 = max(0.2, 0.6) = 0.6 -> sqrt(0.16) = 0.4; no query factors -> 0.
    # L_cot = (1.3276473 + 0.4) / 2 = 0.8638236 (positive: a distance to minimise).
    loss = attention_regulation(*_regulation_batch())
    assert math.isclose(float(loss), 0.8638236339, rel_tol=1e-6)


def test_attention_regulation_gradient_pulls_towards_factors_and_ignores_unfactored_tokens() -> None:
    sim, q_mask, t_mask, q_factors, t_factors = _regulation_batch()
    sim.requires_grad_(True)
    attention_regulation(sim, q_mask, t_mask, q_factors, t_factors).backward()
    assert sim.grad is not None and torch.isfinite(sim.grad).all()
    assert float(sim.grad[0, 0, 0]) < 0  # a_q0 = sim[0,0,0] = 0.5 should rise towards +1
    assert float(sim.grad[1].abs().sum()) == 0.0  # pair without factors
    assert float(sim.grad[0, :, 2].abs().sum()) == 0.0  # padded title token
    empty = attention_regulation(sim, q_mask, t_mask, torch.zeros(3, 2), torch.zeros(3, 3))
    assert float(empty.detach()) == 0.0


def _two_tower_output_and_batch() -> tuple[StudentOutput, dict[str, torch.Tensor]]:
    sim, q_mask, t_mask, q_factors, t_factors = _regulation_batch()
    output = StudentOutput(torch.tensor([1.0, -2.0, 0.5]), token_sim=sim, q_mask=q_mask, t_mask=t_mask)
    batch = {"teacher_p_good": torch.tensor([0.8, 0.5, NAN]), "label": torch.tensor([NAN, 0.0, 1.0]),
             "q_factors": q_factors, "t_factors": t_factors}
    return output, batch


def test_mkd_loss_weighted_sum_and_lambda_zero_removes_a_term_exactly() -> None:
    output, batch = _two_tower_output_and_batch()
    s = score_kl(output.logits_good, batch["teacher_p_good"], 2.0)
    c = attention_regulation(output.token_sim, output.q_mask, output.t_mask, batch["q_factors"], batch["t_factors"])
    e = ce(output.logits_good, batch["label"], batch["teacher_p_good"])
    total, parts = mkd_loss(output, batch, (1.0, 0.01, 0.5), temperature=2.0)
    assert torch.allclose(total, 1.0 * s + 0.01 * c + 0.5 * e)
    assert parts.keys() == {"score", "cot", "ce", "total"}
    assert parts["cot"] == pytest.approx(0.8638236, rel=1e-5)

    without_cot, parts = mkd_loss(output, batch, (1.0, 0.0, 0.5))
    assert "cot" not in parts and torch.equal(without_cot, 1.0 * s + 0.5 * e)
    without_score, parts = mkd_loss(output, batch, (0.0, 0.01, 0.5))
    assert "score" not in parts and torch.equal(without_score, 0.01 * c + 0.5 * e)
    only_ce, parts = mkd_loss(output, batch, (0.0, 0.0, 0.5))
    assert parts.keys() == {"ce", "total"} and torch.equal(only_ce, 0.5 * e)


def test_mkd_loss_uses_the_crf_for_a_tagging_student() -> None:
    emissions = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    crf = LinearChainCRF(5)
    output = StudentOutput(torch.tensor([0.3, -0.3]), emissions=emissions, crf=crf)
    q_mask = torch.tensor([[False, True, False, False], [False] * 4])
    t_mask = torch.tensor([[False, False, True, True], [False] * 4])
    batch = {"teacher_p_good": torch.tensor([0.9, 0.2]), "label": torch.tensor([1.0, NAN]),
             "tags": torch.tensor([[4, 0, 2, 3], [4] * 4]), "q_tag_mask": q_mask, "t_tag_mask": t_mask}
    _, parts = mkd_loss(output, batch, default_lambdas("cross"))
    expected = crf_nll(emissions, batch["tags"], (q_mask, t_mask), *crf.parameters_tuple())
    assert parts["cot"] == pytest.approx(float(expected.detach()))
    with pytest.raises(ValueError, match="neither"):
        mkd_loss(StudentOutput(torch.zeros(2)), batch, (1.0, 0.1, 0.5))


def test_default_lambdas_follow_the_paper() -> None:
    assert default_lambdas("cross") == (1.0, 0.1, 0.5)
    assert default_lambdas("colbert") == default_lambdas("sbert") == default_lambdas("poly") == (1.0, 0.01, 0.5)
