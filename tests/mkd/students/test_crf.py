from __future__ import annotations

import itertools
import math

import torch

from mkd.students.crf import LinearChainCRF, crf_log_partition, crf_path_score, viterbi_decode


def _brute_force(emissions: torch.Tensor, transitions: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                 ) -> dict[tuple[int, ...], float]:
    """Score of every tag path of one chain (L, T), by enumeration."""
    length, num_tags = emissions.shape
    scores = {}
    for path in itertools.product(range(num_tags), repeat=length):
        score = start[path[0]] + end[path[-1]] + sum(emissions[i, tag] for i, tag in enumerate(path))
        score += sum(transitions[a, b] for a, b in itertools.pairwise(path))
        scores[path] = float(score)
    return scores


def test_hand_computed_two_token_chain() -> None:
    # Paths (0,0): 1, (0,1): 1 + trans[0,1]=1 + 2 = 4, (1,0): 0, (1,1): 2.
    # log Z = log(e + e^4 + 1 + e^2) = 4.185182..., NLL of (0,1) = log Z - 4 = 0.185182...
    emissions = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    transitions = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    start, end = torch.zeros(2), torch.zeros(2)
    mask = torch.ones(1, 2, dtype=torch.bool)
    log_z = crf_log_partition(emissions, mask, transitions, start, end)
    assert math.isclose(float(log_z), math.log(math.e + math.e**4 + 1 + math.e**2), rel_tol=1e-6)
    gold = torch.tensor([[0, 1]])
    assert math.isclose(float(crf_path_score(emissions, gold, mask, transitions, start, end)), 4.0, rel_tol=1e-6)
    assert math.isclose(float(log_z - 4.0), 0.1851824526, rel_tol=1e-6)
    assert viterbi_decode(emissions, mask, transitions, start, end).tolist() == [[0, 1]]


def test_forward_algorithm_and_viterbi_match_enumeration() -> None:
    generator = torch.Generator().manual_seed(0)
    for num_tags in (2, 3):
        emissions = torch.randn(4, 3, num_tags, generator=generator)
        transitions = torch.randn(num_tags, num_tags, generator=generator)
        start, end = torch.randn(num_tags, generator=generator), torch.randn(num_tags, generator=generator)
        mask = torch.ones(4, 3, dtype=torch.bool)
        tags = torch.randint(0, num_tags, (4, 3), generator=generator)
        log_z = crf_log_partition(emissions, mask, transitions, start, end)
        gold = crf_path_score(emissions, tags, mask, transitions, start, end)
        best = viterbi_decode(emissions, mask, transitions, start, end)
        for b in range(4):
            scores = _brute_force(emissions[b], transitions, start, end)
            expected_log_z = math.log(sum(math.exp(s) for s in scores.values()))
            assert math.isclose(float(log_z[b]), expected_log_z, rel_tol=1e-5)
            assert math.isclose(float(gold[b]), scores[tuple(tags[b].tolist())], rel_tol=1e-5, abs_tol=1e-5)
            assert tuple(best[b].tolist()) == max(scores, key=scores.__getitem__)


def test_non_prefix_mask_skips_positions_and_empty_chain_is_zero() -> None:
    generator = torch.Generator().manual_seed(1)
    emissions = torch.randn(2, 5, 3, generator=generator)
    crf = LinearChainCRF(3)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    mask = torch.tensor([[False, True, False, True, True], [False] * 5])
    tags = torch.tensor([[9, 2, 9, 0, 1], [9] * 5]) % 3
    compact = emissions[0, [1, 3, 4]].unsqueeze(0)
    full_mask = torch.ones(1, 3, dtype=torch.bool)
    expected = crf.log_likelihood(compact, tags[0, [1, 3, 4]].unsqueeze(0), full_mask).detach()
    got = crf.log_likelihood(emissions, tags, mask).detach()
    assert torch.allclose(got[0], expected[0])
    assert float(got[1]) == 0.0
    decoded = crf.decode(emissions, mask)
    assert decoded[0, [0, 2]].tolist() == [-1, -1]
    assert decoded[0, [1, 3, 4]].tolist() == crf.decode(compact, full_mask)[0].tolist()
    assert decoded[1].tolist() == [-1] * 5
