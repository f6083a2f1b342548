"""The MKD losses (paper §3.3): score-distribution KL, CoT distillation (CRF sequence tagging for the
cross-encoder, attention-score regulation for two-tower students) and the cross-entropy with the label, and their
weighted sum. Each is a pure function of tensors.

Missing values are NaN: ``teacher_p_good`` is NaN for pairs the teacher did not score, ``labels`` for unlabeled
pairs. Attention factors are +1 / -1, and 0 for tokens without a factor. A term with nothing to average over is an
exact zero that still depends on the inputs (so ``backward`` works on any batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from mkd.students.base import StudentOutput
from mkd.students.crf import crf_log_partition, crf_path_score

EPS = 1e-6
INTERACTION_LAMBDAS = (1.0, 0.1, 0.5)
REPRESENTATION_LAMBDAS = (1.0, 0.01, 0.5)
"""(λ1 score, λ2 CoT, λ3 CE) of paper §4.3.2 for the cross-encoder and for the two-tower students."""


def default_lambdas(family: str) -> tuple[float, float, float]:
    return INTERACTION_LAMBDAS if family == "cross" else REPRESENTATION_LAMBDAS


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask``; an exact zero (keeping the graph) when the mask is empty."""
    values = torch.where(mask, values, torch.zeros_like(values))
    return values.sum() / mask.sum().clamp_min(1)


def score_kl(student_logit_good: Tensor, teacher_p_good: Tensor, temperature: float = 2.0) -> Tensor:
    """L_score (eq. 5): KL(teacher ‖ student) between two-class (Good, Bad) distributions at temperature T.

    The teacher's distribution [s_T, 1 - s_T] is softened as a distribution over logits (log s_T, log(1 - s_T))
    divided by T, i.e. p_T,T(Good) = s_T^(1/T) / (s_T^(1/T) + (1 - s_T)^(1/T)); the student's two-class logits
    (z, 0) are divided by T, i.e. p_S,T(Good) = sigmoid(z / T). Per pair
    KL = Σ_c p_T,T(c) (log p_T,T(c) - log p_S,T(c)), multiplied by T² (Hinton et al. 2015) so that the gradient
    scale does not shrink with T and λ1 keeps its meaning across temperatures. Mean over the pairs that have a
    teacher score (not NaN); s_T is clipped to [1e-6, 1 - 1e-6].
    """
    has_teacher = ~torch.isnan(teacher_p_good)
    s = torch.where(has_teacher, teacher_p_good, torch.full_like(teacher_p_good, 0.5)).clamp(EPS, 1 - EPS)
    teacher_logits = torch.stack([s.log(), (1 - s).log()], dim=-1) / temperature
    teacher_log_p = teacher_logits.log_softmax(dim=-1)
    z = student_logit_good / temperature
    student_log_p = torch.stack([F.logsigmoid(z), F.logsigmoid(-z)], dim=-1)
    kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(dim=-1)
    return _masked_mean(kl, has_teacher) * temperature**2


def crf_nll(emissions: Tensor, tags: Tensor, chain_masks: Sequence[Tensor], transitions: Tensor, start: Tensor,
            end: Tensor) -> Tensor:
    """L_cot by sequence tagging: the CRF negative log-likelihood of the BIO tags.

    Each mask of ``chain_masks`` (B, L) selects one chain per pair (the query's tokens, the title's tokens), so
    the per-pair loss is -(log P(Ĉ_Q | H_Q) + log P(Ĉ_T | H_T)), the two sums of the paper's L_cot. Mean over the
    pairs that have at least one tagged token (pairs without a CoT have empty masks).
    """
    nll = emissions.new_zeros(emissions.shape[0])
    tagged = torch.zeros(emissions.shape[0], dtype=torch.bool, device=emissions.device)
    for mask in chain_masks:
        mask = mask.bool()
        log_z = crf_log_partition(emissions, mask, transitions, start, end)
        nll = nll + log_z - crf_path_score(emissions, tags, mask, transitions, start, end)
        tagged = tagged | mask.any(dim=1)
    return _masked_mean(nll, tagged)


def _regulation_side(pooled: Tensor, factors: Tensor) -> tuple[Tensor, Tensor]:
    """(1/n) · sqrt(Σ_j (a_j - â_j)²) over the tokens with a factor, and whether there is one, per pair."""
    has_factor = factors != 0
    difference = torch.where(has_factor, pooled - factors, torch.zeros_like(pooled))
    count = has_factor.sum(dim=1)
    distance = torch.linalg.vector_norm(difference, dim=1) / count.clamp_min(1)
    return distance, count > 0


def attention_regulation(sim: Tensor, q_mask: Tensor, t_mask: Tensor, q_factors: Tensor, t_factors: Tensor,
                         ) -> Tensor:
    """L_cot by attention-score regulation (paper §3.3.2) on the token cosine matrix ``sim`` (B, Lq, Lt).

    a_q,i = max over title tokens k (``t_mask``) of sim[i, k]; a_t,j = max over query tokens k (``q_mask``) of
    sim[k, j]. Per pair: (1/n_q) · sqrt(Σ_j (a_q,j - â_q,j)²) + (1/n_t) · sqrt(Σ_j (a_t,j - â_t,j)²), the sums
    and counts n_q, n_t over the tokens with a factor â ∈ {+1, -1} (a side without factors contributes 0); mean
    over the pairs with at least one factor.

    Sign: the paper prints a leading minus before the average, which, minimised, would push the attention scores
    *away* from the factors, against its own text ("relevant evidence tokens should receive higher attention
    scores and irrelevant ones lower"). This is the distance itself, positive, to be minimised.
    """
    q_mask, t_mask = q_mask.bool(), t_mask.bool()
    a_q = sim.masked_fill(~t_mask.unsqueeze(1), float("-inf")).amax(dim=2)
    a_t = sim.masked_fill(~q_mask.unsqueeze(2), float("-inf")).amax(dim=1)
    # Factors only count on tokens that take part in the interaction (a padded token's max is -inf).
    q_factors = torch.where(q_mask, q_factors.to(sim.dtype), torch.zeros_like(a_q))
    t_factors = torch.where(t_mask, t_factors.to(sim.dtype), torch.zeros_like(a_t))
    q_term, q_has = _regulation_side(torch.where(q_mask, a_q, torch.zeros_like(a_q)), q_factors)
    t_term, t_has = _regulation_side(torch.where(t_mask, a_t, torch.zeros_like(a_t)), t_factors)
    return _masked_mean(q_term + t_term, q_has | t_has)


def ce(student_logit_good: Tensor, labels: Tensor, teacher_p_good: Tensor | None = None, *,
       hard_label_from_teacher: bool = True) -> Tensor:
    """CE: binary cross-entropy of p(Good) with the label (1.0 Good, 0.0 Bad), mean over the pairs that have one.

    With ``hard_label_from_teacher`` (and ``teacher_p_good`` given), an unlabeled pair the teacher scored takes
    the teacher's judgement as its label (Good iff s_T > 0.5): the paper's hard-label distillation, which is what
    remains of the teacher on the unlabeled pool when λ1 = 0 (Table 4, "w/o score distillation"). Human labels
    always take precedence.
    """
    targets = labels
    if hard_label_from_teacher and teacher_p_good is not None:
        teacher_hard = torch.where(torch.isnan(teacher_p_good), teacher_p_good, (teacher_p_good > 0.5).to(labels))
        targets = torch.where(torch.isnan(labels), teacher_hard, labels)
    present = ~torch.isnan(targets)
    targets = torch.where(present, targets, torch.zeros_like(targets))
    losses = F.binary_cross_entropy_with_logits(student_logit_good, targets, reduction="none")
    return _masked_mean(losses, present)


def mkd_loss(outputs: StudentOutput, batch: Mapping[str, Tensor],
             lambdas: tuple[float, float, float] = REPRESENTATION_LAMBDAS, temperature: float = 2.0, *,
             hard_label_from_teacher: bool = True) -> tuple[Tensor, dict[str, float]]:
    """L = λ1·L_score + λ2·L_cot + λ3·CE (paper §3.3, final loss); a term whose λ is 0 is not computed.

    L_cot is the CRF NLL when the student has a CRF tagger (``outputs.emissions``), otherwise the attention
    regulation of ``outputs.token_sim``. Returns (total, {"score", "cot", "ce", "total"} as floats; skipped
    terms are absent). The defaults are the representation students' λ; see :func:`default_lambdas`.
    """
    lambda_score, lambda_cot, lambda_ce = lambdas
    logits = outputs.logits_good
    total = logits.new_zeros(())
    parts: dict[str, float] = {}
    terms: list[tuple[str, float, Tensor]] = []
    if lambda_score:
        terms.append(("score", lambda_score, score_kl(logits, batch["teacher_p_good"], temperature)))
    if lambda_cot:
        if outputs.emissions is not None and outputs.crf is not None:
            cot = crf_nll(outputs.emissions, batch["tags"], (batch["q_tag_mask"], batch["t_tag_mask"]),
                          *outputs.crf.parameters_tuple())
        elif outputs.token_sim is not None and outputs.q_mask is not None and outputs.t_mask is not None:
            cot = attention_regulation(outputs.token_sim, outputs.q_mask, outputs.t_mask, batch["q_factors"],
                                       batch["t_factors"])
        else:
            raise ValueError("λ_cot > 0 but the student output has neither CRF emissions nor a token cosine matrix")
        terms.append(("cot", lambda_cot, cot))
    if lambda_ce:
        terms.append(("ce", lambda_ce, ce(logits, batch["label"], batch.get("teacher_p_good"),
                                          hard_label_from_teacher=hard_label_from_teacher)))
    for name, weight, value in terms:
        total = total + weight * value
        parts[name] = float(value.detach())
    parts["total"] = float(total.detach())
    return total, parts
