"""Late interaction in numpy: MaxSim of unit-length token embeddings and the calibrated probability."""

from __future__ import annotations

import numpy as np


def maxsim(q: np.ndarray, q_mask: np.ndarray, d: np.ndarray, d_mask: np.ndarray) -> np.ndarray:
    """Paired MaxSim, s_b = (1/n_q) Σ_i max_j q_bi·d_bj over real query tokens i and interacting item tokens j.

    ``q`` (B, Lq, dim), ``q_mask`` (B, Lq); ``d`` (B, Lt, dim), ``d_mask`` (B, Lt); a query may be broadcast
    against many items by passing B=1 on the query side. Returns (B,) float32.
    """
    sim = np.einsum("bqh,bth->bqt", q, d, optimize=True)
    sim = np.where(d_mask[:, None, :].astype(bool), sim, -np.inf)
    best = sim.max(axis=2)
    best = np.where(np.isfinite(best), best, -1.0)  # an item with no interacting token: the lowest cosine
    q_real = q_mask.astype(bool)
    best = np.where(q_real, best, 0.0)
    return (best.sum(axis=1) / np.maximum(q_real.sum(axis=1), 1)).astype(np.float32)


def calibrate(similarity: np.ndarray, scale: float, bias: float) -> np.ndarray:
    """p(Good) = sigmoid(scale · s + bias)."""
    return sigmoid(scale * similarity.astype(np.float64) + bias)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function in float64, stable for large |logits| (tanh form)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))



def maxsim_segments(q: np.ndarray, tokens: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One query against many items without padding, the items' interacting tokens concatenated.

    ``q`` (n_q, dim): the query's real tokens; ``tokens`` (T, dim): every item's interacting tokens, item k
    owning rows ``offsets[k]:offsets[k+1]`` (``offsets`` (N,) strictly ascending: every item has at least one
    token). Returns (s (N,) float32, the MaxSim score; sim (T, n_q), the cosines, for evidence).
    """
    sim = tokens @ q.T  # one BLAS call for every item
    best = np.maximum.reduceat(sim, offsets, axis=0)  # (N, n_q)
    return (best.sum(axis=1) / max(len(q), 1)).astype(np.float32), sim
