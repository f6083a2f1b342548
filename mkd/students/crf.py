"""A linear-chain CRF in plain torch: log-partition (forward algorithm), gold-path score and Viterbi decoding.

Conventions (all functions):

- ``emissions`` (B, L, T): unary scores of each tag at each position;
- ``transitions`` (T, T): ``transitions[i, j]`` scores moving from tag ``i`` to tag ``j``;
- ``start`` / ``end`` (T,): scores of the first / last tag of a chain;
- ``mask`` (B, L) bool: the positions that belong to the chain. The mask need not be a prefix: unmasked positions
  are skipped (the chain runs over the masked positions in order), so one (query, title) pair encoding can hold
  two chains, one per text, each selected by its own mask. A row with an empty mask is an empty chain
  (log-partition and path score 0).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def crf_log_partition(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """log Z per chain, (B,), by the forward algorithm."""
    batch, length, num_tags = emissions.shape
    alpha = emissions.new_zeros(batch, num_tags)
    started = torch.zeros(batch, dtype=torch.bool, device=emissions.device)
    for t in range(length):
        step = mask[:, t]
        first = start + emissions[:, t]
        following = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
        new = torch.where(started.unsqueeze(1), following, first)
        alpha = torch.where(step.unsqueeze(1), new, alpha)
        started = started | step
    return torch.where(started, torch.logsumexp(alpha + end, dim=1), alpha.new_zeros(batch))


def crf_path_score(emissions: Tensor, tags: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor,
                   ) -> Tensor:
    """Score of the tag path ``tags`` (B, L) over the masked positions, (B,). Unmasked tags are ignored."""
    batch, length, _ = emissions.shape
    tags = torch.where(mask, tags, torch.zeros_like(tags))
    score = emissions.new_zeros(batch)
    previous = torch.zeros(batch, dtype=torch.long, device=emissions.device)
    started = torch.zeros(batch, dtype=torch.bool, device=emissions.device)
    for t in range(length):
        step = mask[:, t]
        tag = tags[:, t]
        unary = emissions[:, t].gather(1, tag.unsqueeze(1)).squeeze(1)
        entry = torch.where(started, transitions[previous, tag], start[tag])
        score = score + torch.where(step, unary + entry, torch.zeros_like(unary))
        previous = torch.where(step, tag, previous)
        started = started | step
    return score + torch.where(started, end[previous], torch.zeros_like(score))


def viterbi_decode(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """The best tag path per chain, (B, L) long, with -1 at unmasked positions."""
    batch, length, num_tags = emissions.shape
    score = emissions.new_zeros(batch, num_tags)
    started = torch.zeros(batch, dtype=torch.bool, device=emissions.device)
    identity = torch.arange(num_tags, device=emissions.device).expand(batch, num_tags)
    backpointers = []
    for t in range(length):
        step = mask[:, t]
        best, argbest = (score.unsqueeze(2) + transitions).max(dim=1)  # over the previous tag
        following = best + emissions[:, t]
        first = start + emissions[:, t]
        new = torch.where(started.unsqueeze(1), following, first)
        score = torch.where(step.unsqueeze(1), new, score)
        # At unmasked positions and at a chain's first position the pointer is the identity (no move).
        backpointers.append(torch.where((step & started).unsqueeze(1), argbest, identity))
        started = started | step
    current = (score + end).argmax(dim=1)
    path = torch.full((batch, length), -1, dtype=torch.long, device=emissions.device)
    for t in range(length - 1, -1, -1):
        path[:, t] = torch.where(mask[:, t], current, path[:, t])
        current = backpointers[t].gather(1, current.unsqueeze(1)).squeeze(1)
    return path


class LinearChainCRF(nn.Module):
    """CRF parameters (transitions, start and end scores) with the functions above as methods."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def parameters_tuple(self) -> tuple[Tensor, Tensor, Tensor]:
        """(transitions, start, end), the argument order of the functional API."""
        return self.transitions, self.start, self.end

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """log P(tags | emissions) per chain, (B,); 0 for empty chains."""
        params = self.parameters_tuple()
        return crf_path_score(emissions, tags, mask, *params) - crf_log_partition(emissions, mask, *params)

    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Viterbi paths, (B, L) with -1 at unmasked positions."""
        return viterbi_decode(emissions, mask, *self.parameters_tuple())
